//! Many datagrams, few system calls: the engine collects what its connections want to send
//! during one pass and hands it to [`send_all`], which uses `sendmmsg(2)` on Linux (up to
//! [`BATCH`] datagrams per call) and one `send_to` per datagram elsewhere.
//!
//! Forwarding one publisher packet to a hundred subscribers used to cost a hundred `sendto`
//! calls; the per-call overhead (entry, socket lock, route lookup setup) is what batching
//! saves. The loopback delivery itself stays in the kernel either way.
#![allow(unsafe_code)]

use std::io;
use std::net::SocketAddr;

use bytes::BytesMut;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Most datagrams per `sendmmsg` call.
pub(crate) const BATCH: usize = 64;

/// Sends every datagram of `batch`, waiting for writability when the send buffer is full.
/// Datagrams the kernel refuses for another reason (an unreachable address) are skipped and
/// counted; the return value is that count.
pub(crate) async fn send_all(socket: &UdpSocket, batch: &[(BytesMut, SocketAddr)]) -> usize {
    let mut done = 0;
    let mut failed = 0;
    while done < batch.len() {
        let chunk = &batch[done..(done + BATCH).min(batch.len())];
        match socket.try_io(Interest::WRITABLE, || send_chunk(socket, chunk)) {
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if socket.writable().await.is_err() {
                    return failed + batch.len() - done;
                }
            }
            Err(e) => {
                // The first datagram of the chunk was refused; the rest may be fine.
                tracing::debug!("udp send to {}: {e}", chunk[0].1);
                failed += 1;
                done += 1;
            }
        }
    }
    failed
}

/// Sends a prefix of `chunk` (at least one datagram) or fails on the first one.
#[cfg(target_os = "linux")]
fn send_chunk(socket: &UdpSocket, chunk: &[(BytesMut, SocketAddr)]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;

    let n = chunk.len().min(BATCH);
    // SAFETY: all-zero bytes are valid values of these plain C structs.
    let mut addrs: [libc::sockaddr_storage; BATCH] = unsafe { std::mem::zeroed() };
    let mut iovs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for (i, (data, addr)) in chunk.iter().take(n).enumerate() {
        let name_len = write_sockaddr(*addr, &mut addrs[i]);
        iovs[i] = libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        };
        msgs[i].msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
        msgs[i].msg_hdr.msg_namelen = name_len;
        msgs[i].msg_hdr.msg_iov = &mut iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: `msgs[..n]` point into `addrs`, `iovs` and the datagrams' buffers, all alive
    // and unmoved for the duration of the call; the kernel only reads them (and writes
    // `msg_len`).
    let sent = unsafe {
        libc::sendmmsg(
            socket.as_raw_fd(),
            msgs.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if sent < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(sent as usize)
    }
}

/// Sets the Don't Fragment bit on what an IPv4 socket sends, without path MTU discovery
/// (`IP_PMTUDISC_PROBE`: media datagrams are kept under 1,200 bytes anyway). For a datagram
/// with DF and no connected peer the kernel writes IP ID 0 instead of drawing one from its
/// shared, locked ID generator: measured with `madang bench sfu` at 520 subscribers, that
/// draw (`__ip_select_ident`) was 2.5 % of the server's CPU. IPv6 has no such field; there
/// and on other systems this does nothing.
pub(crate) fn dont_fragment(socket: &std::net::UdpSocket) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    if socket.local_addr()?.is_ipv4() {
        set_int_option(
            socket,
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_PROBE,
        )?;
    }
    #[cfg(not(target_os = "linux"))]
    let _ = socket;
    Ok(())
}

/// `setsockopt(2)` with an `int` value.
#[cfg(unix)]
fn set_int_option(
    socket: &std::net::UdpSocket,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid socket and a pointer to an int that lives across the call.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The receive buffer the server asks for: 4 MiB, a quarter second of what 520 viewers'
/// feedback and a publisher's 720p simulcast bring in (the kernel caps it at
/// `net.core.rmem_max`: 208 KiB on a stock Linux, where raising that limit is the
/// operator's choice — see `docs/limits.md`). The engine takes datagrams between passes of up to a few milliseconds at full
/// load; what arrives meanwhile waits here, and a full buffer drops it — one publisher
/// packet dropped here is a packet lost for every viewer.
pub(crate) const RECEIVE_BUFFER: usize = 4 << 20;

/// Asks for [`RECEIVE_BUFFER`] bytes of receive buffer (the kernel gives what its limit
/// allows; failure is not an error: the default still works at smaller scale).
pub(crate) fn large_receive_buffer(socket: &std::net::UdpSocket) {
    #[cfg(unix)]
    if let Err(e) = set_int_option(
        socket,
        libc::SOL_SOCKET,
        libc::SO_RCVBUF,
        RECEIVE_BUFFER as libc::c_int,
    ) {
        tracing::debug!("SO_RCVBUF {RECEIVE_BUFFER}: {e}");
    }
    #[cfg(not(unix))]
    let _ = socket;
}

/// Fills `storage` with `addr`; returns the length to pass as the address size.
#[cfg(target_os = "linux")]
fn write_sockaddr(addr: SocketAddr, storage: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any socket address.
            let sin = unsafe {
                &mut *(storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from_ne_bytes(a.ip().octets()),
            };
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above.
            let sin6 = unsafe {
                &mut *(storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            sin6.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// One datagram per call where `sendmmsg` is not available.
#[cfg(not(target_os = "linux"))]
fn send_chunk(socket: &UdpSocket, chunk: &[(BytesMut, SocketAddr)]) -> io::Result<usize> {
    let (data, addr) = &chunk[0];
    socket.try_send_to(data, *addr).map(|_| 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket set as the server sets its own: with Don't Fragment (on Linux).
    fn server_like_socket() -> UdpSocket {
        let std = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        std.set_nonblocking(true).unwrap();
        dont_fragment(&std).unwrap();
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let mut value: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: a valid socket, an int and its length, alive across the call.
            let r = unsafe {
                libc::getsockopt(
                    std.as_raw_fd(),
                    libc::IPPROTO_IP,
                    libc::IP_MTU_DISCOVER,
                    (&mut value as *mut libc::c_int).cast(),
                    &mut len,
                )
            };
            assert_eq!((r, value), (0, libc::IP_PMTUDISC_PROBE));
        }
        UdpSocket::from_std(std).unwrap()
    }

    /// More datagrams than one call takes, to two receivers on loopback (v4 and v6 when
    /// available): every one arrives, intact and in order.
    #[tokio::test]
    async fn batches_arrive_whole_and_in_order() {
        let sender = server_like_socket();
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let batch: Vec<(BytesMut, SocketAddr)> = (0..150u32)
            .map(|i| {
                let to = if i % 3 == 0 { b_addr } else { a_addr };
                (BytesMut::from(&i.to_be_bytes()[..]), to)
            })
            .collect();
        assert_eq!(send_all(&sender, &batch).await, 0);
        let mut buf = [0u8; 16];
        let mut got_a = Vec::new();
        for _ in 0..100 {
            let (n, _) = a.recv_from(&mut buf).await.unwrap();
            got_a.push(u32::from_be_bytes(buf[..n].try_into().unwrap()));
        }
        let want_a: Vec<u32> = (0..150).filter(|i| i % 3 != 0).collect();
        assert_eq!(got_a, want_a);
        let (n, _) = b.recv_from(&mut buf).await.unwrap();
        assert_eq!(u32::from_be_bytes(buf[..n].try_into().unwrap()), 0);

        if let (Ok(s6), Ok(r6)) = (
            UdpSocket::bind("[::1]:0").await,
            UdpSocket::bind("[::1]:0").await,
        ) {
            let to = r6.local_addr().unwrap();
            assert_eq!(send_all(&s6, &[(BytesMut::from(&b"v6"[..]), to)]).await, 0);
            let (n, _) = r6.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"v6");
        }
    }
}
