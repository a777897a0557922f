//! Congestion control on simulated time: a publisher's uplink estimate (GCC on the server's
//! transport-wide feedback and receiver reports) and its encoder following a link whose
//! capacity changes (`madang::sim::uplink`).

use madang::netsim::Profile;
use madang::sim::uplink::{UplinkConfig, UplinkSecond, rfc8867, run};

fn print(name: &str, seconds: &[UplinkSecond]) {
    eprintln!(
        "{name}: t capacity sent estimate target queue-max delay-based loss-based (kbit/s, ms)"
    );
    for s in seconds {
        eprintln!(
            "  {:>4.0} {:>6.0} {:>6.0} {:>6.0} {:>6.0} {:>5.0} {:>6.0} {:>6.0}",
            s.t,
            s.capacity_kbps,
            s.sent_kbps,
            s.estimate_kbps,
            s.video_target_kbps,
            s.queue_max_ms,
            s.delay_based_kbps,
            s.loss_based_kbps
        );
    }
}

#[test]
fn on_lte_the_estimate_stays_near_what_the_publisher_wants() {
    // 3 % random loss and ±15 ms of reordering jitter are not congestion: the estimate
    // must not read them as such (`rtc`'s GCC brought it to 160 kbit/s here).
    let r = run(&UplinkConfig {
        profile: "lte".parse::<Profile>().unwrap(),
        uplink: None,
        video: (640, 360, 30, 800),
        seconds: 20,
        seed: 1,
    })
    .unwrap();
    print("lte", &r.seconds);
    for s in &r.seconds[5..] {
        assert!(
            s.video_target_kbps >= 720.0,
            "encoder target at {} s: {s:?}",
            s.t
        );
    }
}

#[test]
fn an_uplink_follows_rfc_8867_capacity_steps() {
    let r = rfc8867(20).unwrap();
    print("RFC 8867 5.1 (20 s phases)", &r.run.seconds);
    eprintln!(
        "drop: under 600 kbit/s after {:?} s, then {:.0} kbit/s on average, queue p95 {:.0} ms; \
         80 % used {:?} s after the rise to 2.5 Mbit/s and {:?} s after the rise to 1 Mbit/s; \
         audio lost {:.2} %",
        r.drop.under_capacity_after_s,
        r.drop.mean_sent_kbps,
        r.drop.queue_p95_ms,
        r.first_rise.used_80_after_s,
        r.second_rise.used_80_after_s,
        r.audio_loss_pct
    );
    // RFC 8867's bar for a drop: at or under the capacity within 2 s, the queue short from
    // then on; for a rise: 80 % of the capacity used within 15 s; audio not hurt.
    assert!(
        r.drop.under_capacity_after_s.is_some_and(|s| s <= 2.0),
        "{:?}",
        r.drop
    );
    assert!(r.drop.mean_sent_kbps <= 600.0, "{:?}", r.drop);
    assert!(r.drop.queue_p95_ms <= 200.0, "{:?}", r.drop);
    for rise in [&r.first_rise, &r.second_rise] {
        assert!(rise.used_80_after_s.is_some_and(|s| s <= 15.0), "{rise:?}");
    }
    assert!(r.audio_loss_pct <= 1.0, "{}", r.audio_loss_pct);
}
