//! Keeps a DTLS handshake's retransmission timer alive through a peer's repeated flight.
//!
//! RFC 6347 §4.2.4: a side waiting for the peer's next flight that receives a repeat of the
//! peer's *previous* flight (or part of a flight) keeps waiting with its retransmission timer
//! running, and retransmits its own flight when the timer fires. The pinned `rtc-dtls`
//! (0.21.1) clears that timer when any handshake record arrives while it waits, and re-arms it
//! only when a whole flight has been parsed — so a repeat of the previous flight leaves it
//! waiting with no timer, for good. That is the common case on a lossy link: when our flight
//! is lost, the peer's retransmission timer (started a half round trip before ours) fires
//! first, its repeat arrives at about the moment ours would fire, and whichever comes first
//! decides whether the handshake finishes. Measured on simulated `lte,loss=10%` (four
//! participants, seeds 1–16, 8 s each): 6 publishing and 10 receiving connections not up 4 s
//! after their answers and replaced (`room::session`'s remedy); with this guard 1 and 2, slow
//! ones (a ClientHello lost twice), none stalled. A Chromium failure on `lte` looked the same
//! (once in five runs here): ICE connected, and for 24 s the browser's camera never sent a
//! picture — the server is the browser's DTLS client, and a browser has no such remedy.
//!
//! [`HandshakeGuard`] sits between the socket and the connection: it notes which handshake
//! messages the local side has sent, and drops an incoming datagram that carries nothing but
//! repeats of a flight the local side has already answered. The local timer then fires and
//! retransmits the answer — what the RFC asks — and the peer, given it, moves on.

/// DTLS record content type of handshake records.
const HANDSHAKE: u8 = 22;
/// DTLS record header: type, version, epoch, sequence number, length.
const RECORD_HEADER: usize = 13;
/// Handshake message header: type, length, message sequence, fragment offset and length.
const MESSAGE_HEADER: usize = 12;

/// Handshake message types (RFC 5246 §7.4, RFC 6347 §4.3.2).
mod message {
    pub const CLIENT_HELLO: u8 = 1;
    pub const SERVER_HELLO: u8 = 2;
    pub const HELLO_VERIFY_REQUEST: u8 = 3;
    pub const CERTIFICATE: u8 = 11;
    pub const SERVER_KEY_EXCHANGE: u8 = 12;
    pub const CERTIFICATE_REQUEST: u8 = 13;
    pub const SERVER_HELLO_DONE: u8 = 14;
    pub const CLIENT_KEY_EXCHANGE: u8 = 16;
}

/// One connection's view of its DTLS handshake: which flights it has answered. See the
/// [module documentation](self).
#[derive(Debug, Default, Clone)]
pub struct HandshakeGuard {
    /// The local side sent its ServerHello: a ClientHello now is a repeat.
    answered_client_hello: bool,
    /// The local side sent its ClientKeyExchange: the server's flight up to ServerHelloDone
    /// now is a repeat.
    answered_server_flight: bool,
}

impl HandshakeGuard {
    /// A guard for a new connection.
    pub fn new() -> HandshakeGuard {
        HandshakeGuard::default()
    }

    /// The local side sends `datagram`.
    pub fn on_sent(&mut self, datagram: &[u8]) {
        if !is_dtls(datagram) {
            return;
        }
        let handshake = records(datagram).take_while(|(typ, _, _)| *typ == HANDSHAKE);
        for (_, _, body) in handshake.filter(|(_, epoch, _)| *epoch == 0) {
            for typ in message_types(body) {
                match typ {
                    message::SERVER_HELLO => self.answered_client_hello = true,
                    message::CLIENT_KEY_EXCHANGE => self.answered_server_flight = true,
                    _ => {}
                }
            }
        }
    }

    /// Whether `datagram`, which came from the peer, goes on to the connection: `false` when
    /// it is whole unencrypted handshake records carrying only repeats of a flight the local
    /// side has answered already.
    pub fn admit(&self, datagram: &[u8]) -> bool {
        if !(self.answered_client_hello || self.answered_server_flight) || !is_dtls(datagram) {
            return true;
        }
        let (mut any, mut covered) = (false, 0);
        for (typ, epoch, body) in records(datagram) {
            if typ != HANDSHAKE || epoch != 0 {
                return true;
            }
            for typ in message_types(body) {
                any = true;
                if !self.is_repeat(typ) {
                    return true;
                }
            }
            covered += RECORD_HEADER + body.len();
        }
        // Trailing bytes or a truncated record: not a repeat to drop.
        !(any && covered == datagram.len())
    }

    fn is_repeat(&self, typ: u8) -> bool {
        match typ {
            message::CLIENT_HELLO => self.answered_client_hello,
            message::SERVER_HELLO
            | message::HELLO_VERIFY_REQUEST
            | message::CERTIFICATE
            | message::SERVER_KEY_EXCHANGE
            | message::CERTIFICATE_REQUEST
            | message::SERVER_HELLO_DONE => self.answered_server_flight,
            _ => false,
        }
    }
}

/// A DTLS datagram starts with a record content type in 20..=63 (RFC 7983 demultiplexing).
fn is_dtls(datagram: &[u8]) -> bool {
    datagram.first().is_some_and(|b| (20..=63).contains(b))
}

/// The records of `datagram`, as (content type, epoch, body); stops at the first truncated
/// one.
fn records(datagram: &[u8]) -> impl Iterator<Item = (u8, u16, &[u8])> {
    let mut rest = datagram;
    std::iter::from_fn(move || {
        if rest.len() < RECORD_HEADER {
            return None;
        }
        let typ = rest[0];
        let epoch = u16::from_be_bytes([rest[3], rest[4]]);
        let len = usize::from(u16::from_be_bytes([rest[11], rest[12]]));
        let body = rest.get(RECORD_HEADER..RECORD_HEADER + len)?;
        rest = &rest[RECORD_HEADER + len..];
        Some((typ, epoch, body))
    })
}

/// The message types in an unencrypted handshake record's body (a record may carry several
/// messages).
fn message_types(body: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let mut rest = body;
    std::iter::from_fn(move || {
        if rest.len() < MESSAGE_HEADER {
            return None;
        }
        let typ = rest[0];
        let fragment = u32::from_be_bytes([0, rest[9], rest[10], rest[11]]) as usize;
        rest = rest.get(MESSAGE_HEADER + fragment..).unwrap_or(&[]);
        Some(typ)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DTLS 1.2 record of `typ` at `epoch` around `body`.
    fn record(typ: u8, epoch: u16, body: &[u8]) -> Vec<u8> {
        let mut r = vec![typ, 0xfe, 0xfd];
        r.extend_from_slice(&epoch.to_be_bytes());
        r.extend_from_slice(&[0, 0, 0, 0, 0, 1]);
        r.extend_from_slice(&(body.len() as u16).to_be_bytes());
        r.extend_from_slice(body);
        r
    }

    /// A whole handshake message of `typ` with `len` bytes of body.
    fn message(typ: u8, len: usize) -> Vec<u8> {
        let l = (len as u32).to_be_bytes();
        let mut m = vec![typ, l[1], l[2], l[3], 0, 0, 0, 0, 0, l[1], l[2], l[3]];
        m.resize(MESSAGE_HEADER + len, 0xaa);
        m
    }

    fn handshake(types: &[u8]) -> Vec<u8> {
        types
            .iter()
            .flat_map(|t| record(HANDSHAKE, 0, &message(*t, 40)))
            .collect()
    }

    const SERVER_FLIGHT: [u8; 5] = [
        message::SERVER_HELLO,
        message::CERTIFICATE,
        message::SERVER_KEY_EXCHANGE,
        message::CERTIFICATE_REQUEST,
        message::SERVER_HELLO_DONE,
    ];

    #[test]
    fn a_client_drops_the_servers_repeated_flight_once_it_answered_it() {
        let mut guard = HandshakeGuard::new();
        guard.on_sent(&handshake(&[message::CLIENT_HELLO]));
        // The server's flight, before the client answered it: the connection needs it.
        assert!(guard.admit(&handshake(&SERVER_FLIGHT)));
        assert!(guard.admit(&handshake(&SERVER_FLIGHT[..2])));
        // The client's flight 5: Certificate, ClientKeyExchange, CertificateVerify, then the
        // change of cipher spec and the encrypted Finished.
        let mut flight5 = handshake(&[message::CERTIFICATE, message::CLIENT_KEY_EXCHANGE, 15]);
        flight5.extend(record(20, 0, &[1]));
        flight5.extend(record(HANDSHAKE, 1, &[0x55; 48]));
        guard.on_sent(&flight5);
        // Now the server's flight again, whole or in part: a repeat, dropped.
        assert!(!guard.admit(&handshake(&SERVER_FLIGHT)));
        assert!(!guard.admit(&handshake(&SERVER_FLIGHT[3..])));
        // The server's flight 6 (change of cipher spec, encrypted Finished) goes through.
        let mut flight6 = record(20, 0, &[1]);
        flight6.extend(record(HANDSHAKE, 1, &[0x55; 48]));
        assert!(guard.admit(&flight6));
        assert!(guard.admit(&record(HANDSHAKE, 1, &[0x55; 48])));
        // So do application data, SRTP and STUN.
        assert!(guard.admit(&record(23, 1, &[0; 30])));
        assert!(guard.admit(&[0x80, 0x66, 0, 1]));
        assert!(guard.admit(&[0, 1, 0, 0]));
    }

    #[test]
    fn a_server_drops_a_repeated_client_hello_once_it_answered_it() {
        let mut guard = HandshakeGuard::new();
        // A ClientHello before the server answered: needed (the first, or the one after a
        // HelloVerifyRequest, which is not an answer that ends the client's flight).
        assert!(guard.admit(&handshake(&[message::CLIENT_HELLO])));
        guard.on_sent(&handshake(&[message::HELLO_VERIFY_REQUEST]));
        assert!(guard.admit(&handshake(&[message::CLIENT_HELLO])));
        guard.on_sent(&handshake(&SERVER_FLIGHT));
        assert!(!guard.admit(&handshake(&[message::CLIENT_HELLO])));
        // The client's flight 5, whole or in part, goes through: the server needs it (and,
        // after the handshake, answers its repeat with its last flight).
        assert!(guard.admit(&handshake(&[
            message::CERTIFICATE,
            message::CLIENT_KEY_EXCHANGE
        ])));
        assert!(guard.admit(&handshake(&[message::CERTIFICATE])));
    }

    #[test]
    fn several_messages_in_one_record_and_odd_datagrams_are_read_safely() {
        let mut guard = HandshakeGuard::new();
        guard.on_sent(&handshake(&[message::CLIENT_KEY_EXCHANGE]));
        // One record carrying ServerHello and Certificate: a repeat.
        let mut two = message(message::SERVER_HELLO, 10);
        two.extend(message(message::CERTIFICATE, 20));
        assert!(!guard.admit(&record(HANDSHAKE, 0, &two)));
        // A record carrying ServerHello and something not in the server's first flight.
        let mut mixed = message(message::SERVER_HELLO, 10);
        mixed.extend(message(20, 12));
        assert!(guard.admit(&record(HANDSHAKE, 0, &mixed)));
        // A repeat followed by an alert, or by trailing bytes, or truncated: not dropped.
        let mut with_alert = handshake(&[message::SERVER_HELLO]);
        with_alert.extend(record(21, 0, &[2, 40]));
        assert!(guard.admit(&with_alert));
        let mut trailing = handshake(&[message::SERVER_HELLO]);
        trailing.extend([22, 0xfe]);
        assert!(guard.admit(&trailing));
        let whole = handshake(&[message::SERVER_HELLO]);
        assert!(guard.admit(&whole[..whole.len() - 1]));
        assert!(guard.admit(&[]));
        assert!(guard.admit(&[22]));
    }
}
