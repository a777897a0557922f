//! `madang serve`: the room server.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use madang::sfu::{DEV_SECRET, Server, ServerConfig};

use crate::CliResult;

/// Arguments of `madang serve`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("auth").required(true).args(["secret", "dev"])))]
pub struct Args {
    /// HTTP and WebSocket address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// The one UDP port for all media.
    #[arg(long, default_value = "127.0.0.1:7880")]
    udp: SocketAddr,
    /// Address announced to clients as the media address (with the --udp port): needed when
    /// --udp binds 0.0.0.0, and behind a 1:1 NAT (bind the private address, announce the
    /// public one).
    #[arg(long)]
    advertise_ip: Option<IpAddr>,
    /// Secret that signs tokens (also read from MADANG_SECRET).
    #[arg(long, env = "MADANG_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Development mode: a fixed secret and a token endpoint anyone can use. Local testing only.
    #[arg(long)]
    dev: bool,
    /// Serve HTTP and the signal WebSocket over TLS (https://, wss://) with this certificate
    /// chain (PEM); pages served over https — phones need that for their camera — connect
    /// with wss://. Needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Serve /metrics (and /healthz) on this address only, plain HTTP, e.g. an operator's
    /// private network, instead of on the --http port.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Remove participants silent for this many seconds.
    #[arg(long, default_value_t = 15)]
    timeout: u64,
    /// Serve the files of this directory at `/` (default: the demo page `examples/web`
    /// when run from a madang checkout).
    #[arg(long, value_name = "DIR")]
    static_dir: Option<std::path::PathBuf>,
    /// Join a Rust participant ("madang bot") to this room: it publishes a moving test
    /// pattern and answers chat messages, so one browser tab already has company.
    #[arg(long, value_name = "ROOM")]
    bot: Option<String>,
    /// Publish a composited grid of all publishers in this room as the track `grid/grid`
    /// (repeatable), for clients that decode only one stream.
    #[arg(long = "grid-room", value_name = "ROOM")]
    grid_rooms: Vec<String>,
    /// Make this room a broadcast room (repeatable): only hosts publish at first; speakers
    /// join as viewers, raise a hand and publish once a host lets them in.
    #[arg(long = "broadcast-room", value_name = "ROOM")]
    broadcast_rooms: Vec<String>,
    /// Size of the composited grid.
    #[arg(long, value_parser = crate::size::parse_size, default_value = "1280x720", value_name = "WxH")]
    grid_size: (u32, u32),
    /// Frames per second of the composited grid.
    #[arg(long, default_value_t = 15)]
    grid_fps: u32,
    /// Impair every participant's media in both directions, to rehearse a bad day with real
    /// clients: a preset (lan, lte, rural, disaster, outage) or a list such as
    /// `loss=3%,delay=40ms,jitter=15ms,rate=1mbit` (see `madang demo --help`).
    #[arg(long, value_name = "PROFILE")]
    network: Option<madang::netsim::Profile>,
    /// Record rooms into this directory (created if needed): one fragmented MP4 (H.264 +
    /// Opus, as received) per participant, one per screen share, one for a grid room's
    /// grid, under a subdirectory per room. Every room from its start, unless
    /// --record-room names some; hosts start and stop recording any room.
    #[arg(long, value_name = "DIR")]
    record: Option<std::path::PathBuf>,
    /// Record this room from its start (repeatable; needs --record): the others only when
    /// a host asks.
    #[arg(long = "record-room", value_name = "ROOM", requires = "record")]
    record_rooms: Vec<String>,
    /// A STUN or TURN server WHIP and WHEP clients are told of (repeatable): `stun:HOST:PORT`,
    /// or `turn:HOST:PORT?transport=udp,USERNAME,PASSWORD`; sent as `Link` headers.
    #[arg(long = "ice-server", value_name = "URL[,USER,PASSWORD]")]
    ice_servers: Vec<madang::sfu::IceServer>,
}

/// Runs until Ctrl-C.
pub fn run(args: Args) -> CliResult {
    let secret = match (&args.secret, args.dev) {
        (Some(s), _) => s.clone(),
        (None, _) => DEV_SECRET.to_owned(),
    };
    let static_dir = args.static_dir.clone().or_else(|| {
        let demo = std::path::PathBuf::from("examples/web");
        demo.join("index.html").exists().then_some(demo)
    });
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(
            madang::sfu::TlsConfig::from_files(cert, key)
                .map_err(|e| format!("--tls-cert/--tls-key: {e}"))?,
        ),
        _ => None,
    };
    let web = if tls.is_some() { "https" } else { "http" };
    let tls_cert_pem = tls.as_ref().map(|t| t.cert_pem.clone());
    let config = ServerConfig {
        tls,
        metrics: args.metrics,
        http: args.http,
        udp: args.udp,
        advertise_ip: args.advertise_ip,
        dev: args.dev,
        silence_timeout: Duration::from_secs(args.timeout.max(1)),
        static_dir: static_dir.clone(),
        network: args.network.clone(),
        record: args
            .record
            .clone()
            .map(|dir| madang::sfu::record::RecordConfig {
                dir,
                rooms: args.record_rooms.clone(),
            }),
        ice_servers: args.ice_servers.clone(),
        grid_rooms: args.grid_rooms.clone(),
        broadcast_rooms: args.broadcast_rooms.clone(),
        grid: madang::sfu::mixer::GridConfig {
            width: args.grid_size.0,
            height: args.grid_size.1,
            fps: args.grid_fps.clamp(1, 60),
            ..Default::default()
        },
        ..ServerConfig::new(secret)
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let server = Server::bind(config).await?;
        println!("madang room server");
        println!("  signal:  {}", server.signal_url());
        println!("  media:   udp {}", server.udp_addr());
        if let Some(addr) = server.metrics_addr() {
            println!("  metrics: http://{addr}/metrics");
        }
        if args.dev {
            println!(
                "  tokens:  {web}://{}/dev/token?room=demo&identity=alice&role=speaker  (dev mode: anyone can mint)",
                server.http_addr()
            );
        } else {
            println!("  tokens:  madang token --room R --identity I --secret …");
        }
        if let Some(dir) = &static_dir {
            let page = if dir.join("pkg/madang_wasm.js").exists() {
                ""
            } else {
                "  (build the browser module first: bash scripts/build-wasm.sh)"
            };
            println!("  page:    {web}://localhost:{}/ serves {}{page}", server.http_addr().port(), dir.display());
        }
        let bot = match &args.bot {
            Some(room) => {
                let token = server.token(room, "madang-bot", "madang bot", madang::signal::Role::Speaker, Duration::from_secs(24 * 3600))?;
                println!("  bot:     a Rust participant publishes a test pattern in room {room:?}");
                let trusted = tls_cert_pem.clone();
                Some(tokio::spawn(crate::bot::run(server.signal_url(), token, trusted)))
            }
            None => None,
        };
        for room in &args.broadcast_rooms {
            println!("  broadcast: room {room:?}: hosts publish, speakers join as viewers until let in");
        }
        for room in &args.grid_rooms {
            println!("  grid:    room {room:?} carries a composited {}x{} stream as track grid/grid", args.grid_size.0, args.grid_size.1);
        }
        if let Some(p) = &args.network {
            println!("  network: {} → {p} (both directions, per participant)", p.name);
        }
        if let Some(dir) = &args.record {
            let which = if args.record_rooms.is_empty() {
                "every room".to_owned()
            } else {
                format!("rooms {:?} (others when a host asks)", args.record_rooms)
            };
            println!("  record:  {which} into {}", dir.display());
        }
        println!("Ctrl-C stops.");
        tokio::signal::ctrl_c().await?;
        eprintln!("shutting down…");
        if let Some(bot) = bot {
            bot.abort();
        }
        server.shutdown().await;
        Ok(())
    })
}
