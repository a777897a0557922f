//! `madang token`: mint an access token for a room.

use std::time::Duration;

use madang::sfu::token::{Claims, mint, unix_now};
use madang::signal::Role;

use crate::CliResult;

/// Arguments of `madang token`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Room name.
    #[arg(long)]
    room: String,
    /// Participant identity, unique in the room.
    #[arg(long)]
    identity: String,
    /// Display name (default: the identity).
    #[arg(long)]
    name: Option<String>,
    /// host, speaker or viewer.
    #[arg(long, default_value = "speaker")]
    role: Role,
    /// Shared secret of the server (also read from MADANG_SECRET).
    #[arg(long, env = "MADANG_SECRET", hide_env_values = true)]
    secret: String,
    /// How long the token is valid, e.g. 30m, 1h, 7d.
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    ttl: Duration,
}

/// Parses `90s`, `30m`, `1h`, `7d` (or plain seconds).
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("bad duration {s:?}: expected e.g. 30m, 1h, 7d"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("bad duration unit in {s:?}: use s, m, h or d")),
    };
    if secs == 0 {
        return Err("duration must be positive".into());
    }
    Ok(Duration::from_secs(secs))
}

/// Prints the token on stdout.
pub fn run(args: Args) -> CliResult {
    let name = args.name.clone().unwrap_or_else(|| args.identity.clone());
    let claims = Claims::new(
        &args.room,
        &args.identity,
        &name,
        args.role,
        unix_now(),
        args.ttl.as_secs(),
    );
    println!("{}", mint(args.secret.as_bytes(), &claims)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(604_800)));
        assert!(parse_ttl("1y").is_err());
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("h").is_err());
    }
}
