//! The room server (SFU): rooms, tokens and roles, and the routing of media between
//! participants without decoding it.
//!
//! One UDP port carries every participant's WebRTC traffic; one TCP port serves the signal
//! WebSocket (`/signal`), and with `dev` a token endpoint (`/dev/token`). The server core,
//! [`engine::Engine`], is a sans-I/O state machine (every peer connection, the room policy,
//! the media routing) that a thin tokio driver feeds with datagrams, signal messages and time;
//! its decisions come from pure policies ([`rooms`], [`forward`], [`slots`], [`speaker`]).
//! With [`ServerConfig::record`] it also writes what it forwards into files ([`record`]).
//!
//! ```no_run
//! # async fn run() -> Result<(), madang::sfu::SfuError> {
//! use madang::sfu::{Server, ServerConfig};
//! let server = Server::bind(ServerConfig::dev()).await?;
//! println!("signal at {}", server.signal_url());
//! tokio::signal::ctrl_c().await.ok();
//! server.shutdown().await;
//! # Ok(()) }
//! ```

pub mod allocate;
mod driver;
pub mod engine;
pub mod forward;
mod http;
mod limits;
pub mod mixer;
mod peer;
pub mod record;
pub mod rooms;
pub mod slots;
pub mod speaker;
mod tls;
pub mod token;
mod udp;
mod whep;
mod whip;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

pub use engine::EngineStats;
#[cfg(feature = "fuzzing")]
pub use engine::fuzz_sdp;
pub use limits::Limits;
pub use tls::TlsConfig;

use crate::netsim::Profile;
use tokio::sync::{mpsc, watch};

use crate::signal::Role;

/// Settings of a [`Server`].
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address of the HTTP/WebSocket listener (default `127.0.0.1:8080`; port 0 picks one).
    pub http: SocketAddr,
    /// Address of the one UDP port for media (default `127.0.0.1:7880`; port 0 picks one).
    pub udp: SocketAddr,
    /// Address announced to clients as the media candidate (with the bound port), whatever
    /// `udp` binds: needed when it binds an unspecified address such as `0.0.0.0`, and behind
    /// a 1:1 NAT, where the server binds its private address and clients reach the public
    /// one. Without it the bound address is announced.
    pub advertise_ip: Option<IpAddr>,
    /// Secret that signs tokens. [`Server::bind`] refuses an empty one, and
    /// [`DEV_SECRET`] (public) unless `dev` is on.
    pub secret: Vec<u8>,
    /// Development mode: serve `/dev/token`, which mints tokens for anyone, and allow
    /// [`DEV_SECRET`]. Local testing only; off unless asked for ([`ServerConfig::dev`]).
    pub dev: bool,
    /// A participant silent for this long (no signal message, no media) is removed.
    pub silence_timeout: Duration,
    /// How long a participant whose WebSocket dropped (a proxy or NAT reset it) waits for
    /// its client to `resume` while its media still flows; one whose media is silent for a
    /// second leaves sooner (a process killed). Zero: it leaves at once.
    pub resume_grace: Duration,
    /// Participants per room.
    pub max_participants: usize,
    /// What one session may ask: signal and data rates, subscriptions; rooms per server.
    pub limits: Limits,
    /// Serve `/metrics` (and `/healthz`) on this address only, plain HTTP, instead of on the
    /// main port: the counters say how many rooms and participants there are, for the
    /// operator's network, not the internet. `None`: on the main port.
    pub metrics: Option<SocketAddr>,
    /// Serve HTTP and the signal WebSocket over TLS (`https://`, `wss://`) with this
    /// certificate: pages served over https (which phones need for their camera) can then
    /// connect. `None`: plain `http://` and `ws://`.
    pub tls: Option<TlsConfig>,
    /// Directory served over HTTP at `/` (the web client); `None` serves nothing.
    pub static_dir: Option<std::path::PathBuf>,
    /// Testing aid: drop every n-th video packet towards subscribers, as a lossy network
    /// would (the packet stays in the retransmission cache). `None` in production.
    pub simulate_loss_every: Option<u32>,
    /// Rooms where the server publishes a composited grid of all publishers as the track
    /// `grid/grid` of a virtual participant `grid` (MCU mode), for clients that can decode only
    /// one stream.
    pub grid_rooms: Vec<String>,
    /// Broadcast rooms (a class from city hall): only hosts publish at first; a token's
    /// speaker joins as a viewer and publishes once a host promotes it (talk-back).
    pub broadcast_rooms: Vec<String>,
    /// Canvas, frame rate and bitrate of those grids.
    pub grid: mixer::GridConfig,
    /// Field conditions applied to every datagram in both directions, per remote address, in
    /// the server's UDP layer (`madang serve --network lte`): to rehearse a bad day with real
    /// clients. `None` in production.
    pub network: Option<Profile>,
    /// Record rooms into a directory (`madang serve --record DIR`): every room or those
    /// named, from their first participant on; hosts start and stop recording any room.
    /// `None`: the server does not record.
    pub record: Option<record::RecordConfig>,
    /// STUN and TURN servers WHIP and WHEP clients are told of (`Link` headers of the
    /// session's `201 Created`, RFC 9725 §4.6): for clients behind a firewall that lets them
    /// reach the server only through a relay. Empty: none (the server's own address is
    /// enough for most).
    pub ice_servers: Vec<IceServer>,
}

/// A STUN or TURN server for WHIP and WHEP clients (`madang serve --ice-server`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IceServer {
    /// `stun:`, `stuns:`, `turn:` or `turns:` URL, e.g. `turn:turn.example.org:3478?transport=udp`.
    pub url: String,
    /// TURN user name and password (long-term credentials); `None` for STUN.
    pub credentials: Option<(String, String)>,
}

impl IceServer {
    /// Its `Link` header value (RFC 9725 §4.6).
    pub fn link(&self) -> String {
        match &self.credentials {
            None => format!("<{}>; rel=\"ice-server\"", self.url),
            Some((user, password)) => format!(
                "<{}>; rel=\"ice-server\"; username=\"{user}\"; credential=\"{password}\"; \
                 credential-type=\"password\"",
                self.url
            ),
        }
    }
}

impl std::str::FromStr for IceServer {
    type Err = String;

    /// `URL` (STUN) or `URL,USERNAME,PASSWORD` (TURN).
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.split(',');
        let url = parts.next().unwrap_or_default().trim().to_owned();
        let credentials = match (parts.next(), parts.next(), parts.next()) {
            (None, _, _) => None,
            (Some(user), Some(password), None) => Some((user.to_owned(), password.to_owned())),
            _ => return Err("an ICE server is URL or URL,USERNAME,PASSWORD".into()),
        };
        let scheme = url.split(':').next().unwrap_or_default();
        if !matches!(scheme, "stun" | "stuns" | "turn" | "turns") || url.len() <= scheme.len() + 1 {
            return Err(format!(
                "{url:?}: an ICE server URL starts with stun:, stuns:, turn: or turns:"
            ));
        }
        if scheme.starts_with("turn") && credentials.is_none() {
            return Err(format!(
                "{url:?}: a TURN server needs URL,USERNAME,PASSWORD"
            ));
        }
        // Nothing that would end the header's quoted strings or the value itself.
        let clean = |t: &str| {
            !t.chars()
                .any(|c| c.is_control() || matches!(c, '"' | '<' | '>' | '\\'))
        };
        let fields_clean = clean(&url)
            && credentials
                .as_ref()
                .is_none_or(|(u, p)| clean(u) && clean(p) && !u.is_empty());
        if !fields_clean {
            return Err(
                "an ICE server's URL, user name and password must not hold quotes, \
                        angle brackets, backslashes or control characters"
                    .into(),
            );
        }
        Ok(Self { url, credentials })
    }
}

impl ServerConfig {
    /// Loopback defaults with `secret`.
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self {
            http: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080),
            udp: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 7880),
            advertise_ip: None,
            secret: secret.into(),
            dev: false,
            silence_timeout: Duration::from_secs(15),
            resume_grace: Duration::from_secs(15),
            max_participants: 1000,
            limits: Limits::default(),
            tls: None,
            metrics: None,
            static_dir: None,
            simulate_loss_every: None,
            grid_rooms: Vec::new(),
            broadcast_rooms: Vec::new(),
            grid: mixer::GridConfig::default(),
            network: None,
            record: None,
            ice_servers: Vec::new(),
        }
    }

    /// Development settings: loopback, any free ports, a fixed development secret, and the
    /// token endpoint on.
    pub fn dev() -> Self {
        Self {
            http: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            udp: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            dev: true,
            ..Self::new(DEV_SECRET)
        }
    }
}

/// Serves `router` on `listener` until `stop` changes; `what` names it in the warning if it
/// stops by itself.
fn spawn_serve<L>(
    listener: L,
    router: axum::Router,
    mut stop: watch::Receiver<bool>,
    what: &'static str,
) -> tokio::task::JoinHandle<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    tokio::spawn(async move {
        let stopped = async move {
            let _ = stop.changed().await;
        };
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::warn!("{what} server stopped: {e}");
        }
    })
}

/// The secret `ServerConfig::dev` signs tokens with. Never use it outside local testing.
pub const DEV_SECRET: &str = "madang-dev-secret";

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SfuError {
    /// A listener could not be bound.
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        /// `HTTP` or `UDP`.
        what: &'static str,
        /// Address tried.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The UDP address is unspecified and no address to announce was given.
    #[error("UDP address {0} is unspecified: set advertise_ip to the address clients reach")]
    NoAdvertisedAddress(SocketAddr),
    /// The secret is empty.
    #[error("the token secret must not be empty")]
    EmptySecret,
    /// The development secret (public: it is in the source) outside development mode.
    #[error(
        "the development secret is public: set a secret of your own, or ask for development mode"
    )]
    PublicSecret,
    /// The TLS certificate or key is unusable.
    #[error("TLS: {0}")]
    Tls(String),
    /// Minting a token failed.
    #[error(transparent)]
    Token(#[from] token::TokenError),
    /// The recording directory cannot be created or written, or its writer not started.
    #[error("cannot record into {dir}: {source}")]
    Record {
        /// The directory.
        dir: std::path::PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
}

/// A running room server.
#[derive(Debug)]
pub struct Server {
    http_addr: SocketAddr,
    udp_addr: SocketAddr,
    secret: Vec<u8>,
    /// Whether HTTP and the signal endpoint speak TLS.
    tls: bool,
    /// Where `/metrics` is served when it has an address of its own.
    metrics_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    stats: watch::Receiver<EngineStats>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Binds both ports and starts serving.
    pub async fn bind(config: ServerConfig) -> Result<Self, SfuError> {
        if config.secret.is_empty() {
            return Err(SfuError::EmptySecret);
        }
        if !config.dev && config.secret == DEV_SECRET.as_bytes() {
            return Err(SfuError::PublicSecret);
        }
        if config.udp.ip().is_unspecified() && config.advertise_ip.is_none() {
            return Err(SfuError::NoAdvertisedAddress(config.udp));
        }
        // A std socket: the engine registers it with its own runtime on its own thread.
        let socket = std::net::UdpSocket::bind(config.udp)
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .and_then(|s| udp::dont_fragment(&s).map(|()| s))
            .inspect(udp::large_receive_buffer)
            .map_err(|source| SfuError::Bind {
                what: "UDP",
                addr: config.udp,
                source,
            })?;
        let bound = socket.local_addr().map_err(|source| SfuError::Bind {
            what: "UDP",
            addr: config.udp,
            source,
        })?;
        let udp_addr = match config.advertise_ip {
            Some(ip) => SocketAddr::new(ip, bound.port()),
            None => bound,
        };
        let acceptor = config.tls.as_ref().map(TlsConfig::acceptor).transpose()?;
        let listener = tokio::net::TcpListener::bind(config.http)
            .await
            .map_err(|source| SfuError::Bind {
                what: "HTTP",
                addr: config.http,
                source,
            })?;
        let http_addr = listener.local_addr().map_err(|source| SfuError::Bind {
            what: "HTTP",
            addr: config.http,
            source,
        })?;

        let writer = match &config.record {
            Some(r) => Some(
                record::check_dir(&r.dir)
                    .and_then(|()| record::WriterThread::spawn())
                    .map_err(|source| SfuError::Record {
                        dir: r.dir.clone(),
                        source,
                    })?,
            ),
            None => None,
        };
        let (commands_tx, commands_rx) = mpsc::channel(driver::COMMAND_LIMIT);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (stats_tx, stats) = watch::channel(EngineStats::default());
        let engine_config = engine::EngineConfig {
            secret: config.secret.clone(),
            silence_timeout: config.silence_timeout,
            max_participants: config.max_participants,
            limits: config.limits.clone(),
            simulate_loss_every: config.simulate_loss_every.filter(|&n| n > 0),
            grid_rooms: config.grid_rooms.clone(),
            broadcast_rooms: config.broadcast_rooms.clone(),
            grid: config.grid,
            seed: None,
            grid_thread: true,
            resume_grace: config.resume_grace,
            record: config.record.clone(),
        };
        let network = config.network.clone();
        // The engine owns every peer connection and runs alone on its own thread with a
        // single-threaded runtime: no work stealing, no task migration between cores on the
        // per-packet path (measured: it cut context switches that cost ~14 % of the CPU).
        let (engine_done_tx, engine_done) = tokio::sync::oneshot::channel::<()>();
        let engine_shutdown = shutdown_rx.clone();
        std::thread::Builder::new()
            .name("madang-sfu-engine".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!("cannot start the engine runtime: {e}");
                        return;
                    }
                };
                runtime.block_on(async move {
                    match tokio::net::UdpSocket::from_std(socket) {
                        Ok(socket) => {
                            let engine = engine::Engine::new(
                                engine_config,
                                udp_addr,
                                std::time::Instant::now(),
                            );
                            driver::Driver::new(
                                engine,
                                Arc::new(socket),
                                network,
                                stats_tx,
                                writer,
                            )
                            .run(commands_rx, engine_shutdown)
                            .await;
                        }
                        Err(e) => tracing::error!("cannot register the UDP socket: {e}"),
                    }
                });
                let _ = engine_done_tx.send(());
            })
            .map_err(|source| SfuError::Bind {
                what: "UDP",
                addr: config.udp,
                source,
            })?;
        let engine_task = tokio::spawn(async move {
            let _ = engine_done.await;
        });
        let state = http::HttpState {
            commands: commands_tx,
            stats: stats.clone(),
            next_session: Arc::new(AtomicU64::new(1)),
            dev_secret: config.dev.then(|| Arc::new(config.secret.clone())),
            static_dir: config.static_dir.clone().map(Arc::new),
            whip: Default::default(),
            ice_servers: Arc::new(config.ice_servers.clone()),
        };
        // `/metrics` on an address of its own, when given: bound, and its port known.
        let mut metrics = None;
        if let Some(addr) = config.metrics {
            let bind_error = |source| SfuError::Bind {
                what: "metrics",
                addr,
                source,
            };
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(bind_error)?;
            let bound = listener.local_addr().map_err(bind_error)?;
            metrics = Some((listener, bound));
        }
        let metrics_addr = metrics.as_ref().map(|(_, bound)| *bound);
        let mut tasks = vec![engine_task];
        if let Some((listener, _)) = metrics {
            let router = http::metrics_router(state.clone());
            tasks.push(spawn_serve(
                listener,
                router,
                shutdown_rx.clone(),
                "metrics",
            ));
        }
        let router = http::router(state, metrics_addr.is_none());
        tasks.push(match acceptor {
            Some(acceptor) => {
                let listener =
                    tls::TlsListener::new(listener, acceptor).map_err(|source| SfuError::Bind {
                        what: "HTTP",
                        addr: config.http,
                        source,
                    })?;
                spawn_serve(listener, router, shutdown_rx, "https")
            }
            None => spawn_serve(listener, router, shutdown_rx, "http"),
        });
        Ok(Self {
            http_addr,
            udp_addr,
            secret: config.secret,
            tls: config.tls.is_some(),
            shutdown,
            stats,
            metrics_addr,
            tasks,
        })
    }

    /// Where the HTTP/WebSocket listener is.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Where `/metrics` is served when [`ServerConfig::metrics`] gave it an address of its
    /// own (with the port bound); `None`: on [`http_addr`](Self::http_addr).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The media address clients connect to.
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    /// The WebSocket URL clients join with.
    pub fn signal_url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}/signal", self.http_addr)
    }

    /// Mints a token signed with this server's secret.
    pub fn token(
        &self,
        room: &str,
        identity: &str,
        name: &str,
        role: Role,
        ttl: Duration,
    ) -> Result<String, SfuError> {
        let claims =
            token::Claims::new(room, identity, name, role, token::unix_now(), ttl.as_secs());
        Ok(token::mint(&self.secret, &claims)?)
    }

    /// Current counters (updated ten times a second while anything happens).
    pub fn stats(&self) -> EngineStats {
        self.stats.borrow().clone()
    }

    /// Tells every participant, closes everything, and waits for the tasks to end.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

/// The STUN username lookup of the first datagram from a new address (fuzzing entry point).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn fuzz_stun_ufrag(datagram: &[u8]) -> Option<&str> {
    peer::stun_server_ufrag(datagram)
}
