//! The tokio driver around the server core: it owns the UDP socket, the clock and the
//! channels to the signal sessions, and nothing else. Every decision is the
//! [`Engine`](super::engine::Engine)'s.
//!
//! With a network profile, datagrams cross a [`Network`] in both directions on their way
//! between the socket and the engine, so that real clients (browsers included) meet loss,
//! delay, jitter and rate caps as they would in the field.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use bytes::BytesMut;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use super::engine::{Command, Engine, EngineStats, Event, SessionId};
use crate::netsim::{Direction, Network, Profile};
use crate::signal::{DataMessage, ErrorCode, ServerMessage, encode};

/// What the HTTP side tells the driver.
#[derive(Debug)]
pub(crate) enum Signal {
    /// A WebSocket opened: messages for it go to `tx`.
    Open {
        session: SessionId,
        room: Option<String>,
        tx: mpsc::Sender<Outbound>,
    },
    /// Anything else a session says.
    Input(Command),
}

/// What the driver sends to a signal session.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// Send this message. Boxed: a session's queue allocates its slots in blocks of 32, and
    /// with the message inline (~130 bytes) two blocks took 8.6 KB a viewer (massif).
    Message(Box<ServerMessage>),
    /// Send this text frame, encoded once and shared by every recipient (a data message).
    Text(Utf8Bytes),
    /// Close the WebSocket: normally, or after this fatal error (its close code).
    Close(Option<ErrorCode>),
}

/// Messages waiting for one signal session before it is closed as too slow
/// ([`ErrorCode::TooSlow`]): a client that stops reading must not make the server buffer
/// without limit. Far above what a live client has queued: a join into a room of 520 brings
/// one `joined`, then a handful of messages per event.
pub(crate) const OUTBOUND_LIMIT: usize = 256;

/// Signal commands waiting for the driver; a session whose command does not fit waits (its
/// WebSocket is not read meanwhile).
pub(crate) const COMMAND_LIMIT: usize = 1024;

/// Most datagrams taken from the socket before the engine's output is drained and the batch
/// of sends goes out. Every media arrival fans out to each subscriber's queue until the
/// drain, so a deep batch shows up as memory; but a pass of 520 viewers takes a few
/// milliseconds ([`GATHER`] at least), and their feedback alone brings ~6,000 datagrams a
/// second: at 16 a pass the socket's buffer overflowed (measured: 2.7 % of the publisher's
/// packets lost for every viewer).
const RECEIVE_BATCH: usize = 64;

/// The shortest time from one pass of the engine to the next. Woken for every datagram, the
/// engine ran a pass for each of them — at 520 viewers mostly their congestion feedback,
/// ~6,000 a second, each with a thread wake-up and a sweep of the connection it touched —
/// and context switches alone took 12 % of the server's CPU (`madang bench sfu`). Gathered
/// over a millisecond, several arrivals share one pass; a forwarded packet waits at most
/// that long.
const GATHER: Duration = Duration::from_millis(1);

/// How often the counters are published.
const STATS_INTERVAL: Duration = Duration::from_millis(100);

/// When to hand freed memory back to the system. glibc's allocator keeps what the server's
/// threads freed in their arenas: after 100 WebRTC participants left, the process held
/// 52 MB where it had 8 MB before they came and 18.5 MB after a trim (`core/tests/soak.rs`);
/// a city's server that hosted the morning's disaster-room call should not keep its peak
/// for the rest of the day. A trim follows a wave of leaves — sessions fell by
/// [`TRIM_AFTER_LEAVES`] from their peak since the last trim, or to none — at most every
/// [`TRIM_INTERVAL`].
#[derive(Debug)]
struct TrimPolicy {
    /// Most sessions seen since the last trim.
    peak: usize,
    last: Option<Instant>,
}

/// Sessions gone since their peak that call for a trim.
const TRIM_AFTER_LEAVES: usize = 16;

/// Least time between two trims.
const TRIM_INTERVAL: Duration = Duration::from_secs(2);

impl TrimPolicy {
    fn new() -> Self {
        Self {
            peak: 0,
            last: None,
        }
    }

    /// The session count at `now`; whether to trim now.
    fn update(&mut self, now: Instant, sessions: usize) -> bool {
        self.peak = self.peak.max(sessions);
        let wave = self.peak - sessions >= TRIM_AFTER_LEAVES || (sessions == 0 && self.peak > 0);
        let rested = self.last.is_none_or(|t| now >= t + TRIM_INTERVAL);
        if wave && rested {
            self.peak = sessions;
            self.last = Some(now);
            true
        } else {
            false
        }
    }
}

/// Hands the allocator's free memory back to the system, off the driver's thread.
#[allow(unsafe_code)]
fn trim_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tokio::task::spawn_blocking(|| {
        let start = Instant::now();
        // SAFETY: malloc_trim only releases free memory; callable from any thread.
        unsafe { libc::malloc_trim(0) };
        tracing::debug!("memory handed back to the system in {:?}", start.elapsed());
    });
}

pub(crate) struct Driver {
    engine: Engine,
    socket: Arc<UdpSocket>,
    sessions: BTreeMap<SessionId, mpsc::Sender<Outbound>>,
    /// Sessions closed because their queue filled.
    slow_closed: u64,
    /// Datagrams the socket refused (see [`super::udp::send_all`]).
    send_failures: u64,
    /// The data message last encoded, by its shared payload, and its frame.
    encoded: Option<(Arc<str>, Utf8Bytes)>,
    /// The fatal error last sent to a session, until its close.
    fatal: BTreeMap<SessionId, ErrorCode>,
    network: Option<Network<SocketAddr, BytesMut>>,
    /// Datagrams to send at the end of this pass.
    outbox: Vec<(BytesMut, SocketAddr)>,
    stats_tx: watch::Sender<EngineStats>,
    next_stats: Instant,
    trim: TrimPolicy,
    /// Writes the recordings' files, when the server records.
    recording: Option<super::record::WriterThread>,
}

impl Driver {
    pub(crate) fn new(
        engine: Engine,
        socket: Arc<UdpSocket>,
        profile: Option<Profile>,
        stats_tx: watch::Sender<EngineStats>,
        recording: Option<super::record::WriterThread>,
    ) -> Self {
        let now = Instant::now();
        Self {
            engine,
            socket,
            sessions: BTreeMap::new(),
            slow_closed: 0,
            send_failures: 0,
            encoded: None,
            fatal: BTreeMap::new(),
            network: profile
                .filter(|p| !p.link.is_perfect())
                .map(|p| Network::new(p, now)),
            outbox: Vec::new(),
            stats_tx,
            next_stats: now,
            trim: TrimPolicy::new(),
            recording,
        }
    }

    /// Runs until `signals` closes or `shutdown` fires.
    pub(crate) async fn run(
        mut self,
        mut signals: mpsc::Receiver<Signal>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut buf = vec![0u8; 2048];
        let mut last_pass = Instant::now();
        loop {
            self.flush(Instant::now()).await;
            // Passes at most every GATHER: what arrives meanwhile shares one.
            let gathered = last_pass + GATHER;
            let now = Instant::now();
            if now < gathered {
                // This thread runs the engine alone: blocking it is waiting, with the
                // precision of a thread sleep (a runtime timer rounds up to whole ms).
                std::thread::sleep(gathered - now);
            }
            last_pass = Instant::now();
            let mut next = self.engine.poll_timeout();
            if let Some(t) = self.network.as_ref().and_then(|n| n.poll_timeout()) {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
            let deadline = next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((n, from)) => {
                        let now = Instant::now();
                        self.arrived(now, from, &buf[..n]);
                        // Take what else is already waiting before the next drain, so one
                        // pass (and one batch of sends) serves several arrivals.
                        for _ in 1..RECEIVE_BATCH {
                            match self.socket.try_recv_from(&mut buf) {
                                Ok((n, from)) => self.arrived(now, from, &buf[..n]),
                                Err(_) => break,
                            }
                        }
                    }
                    Err(e) => tracing::debug!("udp receive: {e}"),
                },
                signal = signals.recv() => match signal {
                    Some(Signal::Open { session, room, tx }) => {
                        self.sessions.insert(session, tx);
                        self.engine.handle_command(Instant::now(), Command::Open { session, room });
                    }
                    Some(Signal::Input(command)) => {
                        self.engine.handle_command(Instant::now(), command);
                    }
                    None => break,
                },
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {
                    self.engine.handle_timeout(Instant::now());
                }
                _ = shutdown.changed() => break,
            }
        }
        self.engine.shutdown(Instant::now());
        self.flush(Instant::now()).await;
        // The recordings' last fragments and durations written before the server is gone.
        if let Some(writer) = self.recording.take() {
            writer.finish();
        }
    }

    /// Queues `message` for session `id`; a session whose queue is full but for the last
    /// slot gets its close there ([`ErrorCode::TooSlow`]) and leaves the engine.
    fn deliver(&mut self, now: Instant, id: SessionId, message: ServerMessage) {
        let Some(tx) = self.sessions.get(&id) else {
            return;
        };
        if tx.capacity() > 1 {
            let out = match message {
                ServerMessage::Data { message } => {
                    Outbound::Text(encode_shared(&mut self.encoded, message))
                }
                message => Outbound::Message(Box::new(message)),
            };
            let _ = tx.try_send(out);
            return;
        }
        if let Some(tx) = self.sessions.remove(&id) {
            let _ = tx.try_send(Outbound::Close(Some(ErrorCode::TooSlow)));
        }
        self.fatal.remove(&id);
        self.slow_closed += 1;
        tracing::info!(
            "session {id}: closed, it did not read its messages ({OUTBOUND_LIMIT} queued)"
        );
        self.engine.handle_command(
            now,
            Command::Closed {
                session: id,
                code: Some(ErrorCode::TooSlow),
            },
        );
    }

    /// A datagram from the socket: to the engine, across the simulated uplink if any.
    fn arrived(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        match &mut self.network {
            Some(net) => {
                net.send(now, Direction::Up, from, data.len(), BytesMut::from(data));
            }
            None => self.engine.handle_datagram(now, from, data),
        }
    }

    /// Sends what the outbox holds, in `sendmmsg` batches.
    async fn send_outbox(&mut self) {
        if !self.outbox.is_empty() {
            let outbox = std::mem::take(&mut self.outbox);
            self.send_failures += super::udp::send_all(&self.socket, &outbox).await as u64;
            // Keep the allocation for the next pass.
            self.outbox = outbox;
            self.outbox.clear();
        }
    }

    /// Moves the engine's output out: signal messages to their sessions, datagrams (across
    /// the simulated downlink, if any) to the socket in one batch; publishes the counters.
    async fn flush(&mut self, now: Instant) {
        if let Some(net) = &mut self.network {
            while let Some((direction, peer, data)) = net.pop(now) {
                match direction {
                    Direction::Up => self.engine.handle_datagram(now, peer, &data),
                    Direction::Down => self.outbox.push((data, peer)),
                }
            }
        }
        while let Some(event) = self.engine.poll_event() {
            match event {
                Event::Send(id, message) => {
                    if let ServerMessage::Error { code, .. } = &message
                        && code.is_fatal()
                    {
                        // The close that follows says why with its code.
                        self.fatal.insert(id, *code);
                    }
                    self.deliver(now, id, message);
                }
                Event::Close(id) => {
                    let why = self.fatal.remove(&id);
                    if let Some(tx) = self.sessions.remove(&id) {
                        // The last slot is kept for this (see `deliver`).
                        let _ = tx.try_send(Outbound::Close(why));
                    }
                }
                Event::Resume { session, via } => {
                    // The session's messages take the new WebSocket; its old one, if its
                    // task still runs, closes without a word to the engine.
                    if let Some(tx) = self.sessions.remove(&via)
                        && let Some(old) = self.sessions.insert(session, tx)
                    {
                        let _ = old.try_send(Outbound::Close(None));
                    }
                }
            }
        }
        if let Some(writer) = &mut self.recording {
            while let Some(output) = self.engine.poll_record() {
                writer.send(output);
            }
        }
        while let Some(t) = self.engine.poll_transmit() {
            match &mut self.network {
                Some(net) => {
                    let len = t.data.len();
                    net.send(now, Direction::Down, t.to, len, t.data);
                }
                None => self.outbox.push((t.data, t.to)),
            }
        }
        if let Some(net) = &mut self.network {
            // Datagrams whose simulated delay is zero leave in this same pass. (No uplink
            // datagram can be due here: arrivals only happen between passes.)
            while let Some((direction, peer, data)) = net.pop(now) {
                match direction {
                    Direction::Down => self.outbox.push((data, peer)),
                    Direction::Up => self.engine.handle_datagram(now, peer, &data),
                }
            }
        }
        self.send_outbox().await;
        if now >= self.next_stats {
            self.next_stats = now + STATS_INTERVAL;
            let mut stats = self.engine.stats().clone();
            stats.network = self.network.as_ref().map(|n| n.stats());
            stats.downlinks = self.engine.downlinks();
            stats.slow_sessions_closed = self.slow_closed;
            stats.send_failures = self.send_failures;
            if self.trim.update(now, stats.sessions) {
                trim_memory();
            }
            let _ = self.stats_tx.send(stats);
        }
    }
}

/// The text frame of a data message. Its recipients get copies of one message that share
/// its payload: encoded for the first, the same frame (no copy) for the rest.
fn encode_shared(last: &mut Option<(Arc<str>, Utf8Bytes)>, message: DataMessage) -> Utf8Bytes {
    if let Some((payload, frame)) = last.as_ref()
        && Arc::ptr_eq(payload, &message.payload)
    {
        return frame.clone();
    }
    let payload = message.payload.clone();
    let frame = Utf8Bytes::from(encode(&ServerMessage::Data { message }));
    *last = Some((payload, frame.clone()));
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_trimmed_after_a_wave_of_leaves_at_most_every_few_seconds() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut p = TrimPolicy::new();
        // An empty server, then a call of 40 growing: nothing to hand back.
        assert!(!p.update(at(0), 0));
        assert!(!p.update(at(1), 40));
        // A few leave: not yet.
        assert!(!p.update(at(2), 30));
        // Sixteen gone from the peak: trim.
        assert!(p.update(at(3), 24));
        // Everyone gone right after: wait for the interval…
        assert!(!p.update(at(4), 0));
        assert!(p.update(at(5), 0));
        // …and an empty server stays untrimmed.
        assert!(!p.update(at(20), 0));
        // A lone join and leave is a wave too.
        assert!(!p.update(at(21), 1));
        assert!(p.update(at(22), 0));
    }

    #[test]
    fn a_data_message_is_encoded_once_for_all_its_recipients() {
        let message = DataMessage {
            from: "hall".into(),
            to: Vec::new(),
            topic: "notice".into(),
            payload: "x".repeat(200 * 1024).into(),
        };
        let mut last = None;
        let first = encode_shared(&mut last, message.clone());
        let second = encode_shared(&mut last, message.clone());
        assert_eq!(
            first.as_str().as_ptr(),
            second.as_str().as_ptr(),
            "one frame"
        );
        assert_eq!(
            crate::signal::decode_server(first.as_str()).unwrap(),
            ServerMessage::Data {
                message: message.clone()
            }
        );
        // Another message with equal text is another message.
        let other = DataMessage {
            payload: message.payload.to_string().into(),
            ..message
        };
        let third = encode_shared(&mut last, other);
        assert_ne!(first.as_str().as_ptr(), third.as_str().as_ptr());
        assert_eq!(first, third);
    }
}
