//! `madang bench cc`: RFC 8867 §5.1's capacity steps on a publisher's uplink, on simulated
//! time, with per-phase figures and a plot of capacity, estimate and sending rate.

use std::fmt::Write as _;
use std::path::PathBuf;

use madang::sim::uplink::{Rfc8867Report, UplinkSecond, rfc8867};

use crate::CliResult;

/// Arguments of `madang bench cc`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print one JSON object (per-phase figures and the run second by second) instead of
    /// the table.
    #[arg(long)]
    json: bool,
    /// Seconds per phase (RFC 8867: 40/20/20/20; at least 5).
    #[arg(long, default_value_t = 20)]
    phase: u64,
    /// Where to write the plot (SVG).
    #[arg(long, default_value = "bench-cc.svg")]
    plot: PathBuf,
}

/// Runs the benchmark.
pub fn run(args: Args) -> CliResult {
    if !args.json {
        eprintln!(
            "RFC 8867 5.1 on simulated time: 1.0 → 2.5 → 0.6 → 1.0 Mbit/s, {} s per phase, \
             a 1280×720 publisher with audio…",
            args.phase
        );
    }
    let report = rfc8867(args.phase)?;
    std::fs::write(&args.plot, svg(&report.run.seconds))?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    print_table(&report);
    println!("plot: {}", args.plot.display());
    Ok(())
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "never".to_owned(), |s| format!("{s:.0} s"))
}

fn print_table(r: &Rfc8867Report) {
    println!(
        "{:>12} {:>26} {:>12} {:>14}",
        "step", "adapted", "sent avg", "queue p95"
    );
    for (name, rise) in [("1.0 → 2.5", &r.first_rise), ("0.6 → 1.0", &r.second_rise)] {
        println!(
            "{name:>12} {:>26} {:>12} {:>14}",
            format!("80 % used after {}", opt(rise.used_80_after_s)),
            format!("{:.0} % at end", 100.0 * rise.utilisation_end),
            "—"
        );
    }
    println!(
        "{:>12} {:>26} {:>12} {:>14}",
        "2.5 → 0.6",
        format!("≤ capacity after {}", opt(r.drop.under_capacity_after_s)),
        format!("{:.0} kbit/s", r.drop.mean_sent_kbps),
        format!("{:.0} ms", r.drop.queue_p95_ms)
    );
    println!(
        "targets (RFC 8867 / issue): ≤ capacity within 2 s of a drop and queue p95 ≤ 200 ms \
         after; 80 % used within 15 s of a rise; audio loss ≤ 1 % (here {:.2} %)",
        r.audio_loss_pct
    );
}

/// A plot of capacity, estimate and sending rate over time.
fn svg(seconds: &[UplinkSecond]) -> String {
    let (w, h, left, bottom) = (800.0, 360.0, 50.0, 30.0);
    let t_max = seconds.last().map_or(1.0, |s| s.t).max(1.0);
    let y_max = seconds
        .iter()
        .flat_map(|s| [s.capacity_kbps, s.estimate_kbps, s.sent_kbps])
        .fold(500.0f64, f64::max)
        .min(4000.0);
    let x = |t: f64| left + (w - left - 10.0) * t / t_max;
    let y = |v: f64| (h - bottom) - (h - bottom - 10.0) * v.min(y_max) / y_max;
    let line = |f: &dyn Fn(&UplinkSecond) -> f64, colour: &str, steps: bool| {
        let mut points = String::new();
        let mut prev: Option<f64> = None;
        for s in seconds {
            let v = f(s);
            if steps && let Some(p) = prev {
                let _ = write!(points, "{:.1},{:.1} ", x(s.t - 1.0), y(p));
            }
            let _ = write!(points, "{:.1},{:.1} ", x(s.t - 1.0), y(v));
            let _ = write!(points, "{:.1},{:.1} ", x(s.t), y(v));
            prev = Some(v);
        }
        format!(
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{points}\"/>\n"
        )
    };
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" \
         fill=\"white\"/>\n"
    );
    let mut kbps = 0.0;
    while kbps <= y_max {
        let _ = writeln!(
            out,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\
             <text x=\"4\" y=\"{:.1}\">{kbps:.0}</text>",
            w - 10.0,
            y(kbps),
            y(kbps),
            y(kbps) + 4.0
        );
        kbps += 500.0;
    }
    let mut t = 0.0;
    while t <= t_max {
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{}\">{t:.0} s</text>",
            x(t) - 8.0,
            h - 10.0
        );
        t += 10.0;
    }
    out += &line(&|s| s.capacity_kbps, "black", true);
    out += &line(&|s| s.sent_kbps, "#e08000", false);
    out += &line(&|s| s.estimate_kbps, "#1060d0", false);
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"16\">kbit/s — capacity (black), estimate (blue), sent (orange)</text>",
        left + 10.0
    );
    out += "</svg>\n";
    out
}
