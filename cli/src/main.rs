//! `madang`: the command-line face of madang.
//!
//! `madang demo` (a synthetic conference on loopback), `madang serve` (the room server),
//! `madang token` (access tokens), `madang codec-demo` (the codecs alone, to files),
//! `madang encode` (test pattern or Y4M → H.264 file) and `madang bench codec`.

mod asm;
mod bench_cc;
mod bench_codec;
mod bench_grid;
mod bench_sfu;
mod bot;
mod codec_demo;
mod demo;
mod encode;
mod serve;
mod size;
mod synthetic;
mod token;

use clap::{Parser, Subcommand};

/// Embeddable real-time media: codecs, rooms, a room server, a participant grid.
#[derive(Debug, Parser)]
#[command(name = "madang", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines on stderr look: `text` for people, `json` (one object a line) for log
    /// collectors.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// The log line format (`--log-format`).
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    /// One readable line per event.
    Text,
    /// One JSON object per event.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A conference of synthetic participants over WebRTC on loopback, with loss and latency.
    Demo(demo::Args),
    /// Run the room server.
    Serve(Box<serve::Args>),
    /// The codecs alone: test pattern and speech encoded, decoded, written to files.
    CodecDemo(codec_demo::Args),
    /// Encode the test pattern or a Y4M file into an H.264 Annex-B file.
    Encode(encode::Args),
    /// Mint an access token for a room.
    Token(token::Args),
    /// Measure throughput.
    Bench {
        #[command(subcommand)]
        what: Bench,
    },
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// H.264 and Opus throughput: madang against raw OpenH264, raw libopus and x264.
    Codec(bench_codec::Args),
    /// Room-server forwarding: CPU per packet, drops and memory, 1 publisher → N subscribers.
    Sfu(bench_sfu::Args),
    /// One process of `bench sfu`'s viewers (started by it).
    #[command(hide = true)]
    SfuReceivers(bench_sfu::receivers::Args),
    /// Grid composition: tiles scaled into one canvas, against a plain canvas copy.
    Grid(bench_grid::Args),
    /// Congestion control: RFC 8867's capacity steps on a publisher's uplink (simulated).
    Cc(bench_cc::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // `serve` tells its operator what happens (joins, refusals, leaves, publishing) at info;
    // the other commands print their own reports and log only warnings. MADANG_LOG, or else
    // RUST_LOG, overrides.
    let default_filter = match cli.command {
        Command::Serve(_) => "warn,madang=info,rtc=error,webrtc=error",
        _ => "warn,rtc=error,webrtc=error",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MADANG_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| default_filter.into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let result = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Serve(args) => serve::run(*args),
        Command::CodecDemo(args) => codec_demo::run(args),
        Command::Encode(args) => encode::run(args),
        Command::Token(args) => token::run(args),
        Command::Bench { what } => match what {
            Bench::Codec(args) => bench_codec::run(args),
            Bench::Sfu(args) => bench_sfu::run(args),
            Bench::SfuReceivers(args) => bench_sfu::receivers::run(args),
            Bench::Grid(args) => bench_grid::run(args),
            Bench::Cc(args) => bench_cc::run(args),
        },
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("madang: {e}");
            let mut source = std::error::Error::source(&*e);
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            std::process::ExitCode::FAILURE
        }
    }
}

/// Error type of the commands: anything displayable, with its chain.
type CliResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;
