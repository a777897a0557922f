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

/// Audio concealed of `track` at participant `i` so far, ms, and the seconds it has played.
fn concealed_ms(world: &madang::sim::World, i: usize, track: &str) -> (f64, f64) {
    world
        .participant(i)
        .session()
        .receive_stats()
        .into_iter()
        .find(|t| t.track == track)
        .map_or((0.0, 0.0), |t| (t.audio_concealed_ms, t.seconds))
}

#[test]
fn under_pressure_the_voice_steps_down_to_16_kbit_with_dtx_and_back() {
    use std::time::Duration;

    use madang::netsim::{Direction, LinkConfig};
    use madang::sim::{JoinOptions, World};

    let link = LinkConfig {
        delay: Duration::from_millis(30),
        ..LinkConfig::default()
    };
    let mut world = World::new("delay=30ms".parse().unwrap(), 5, World::engine_config());
    let field = world.join("field", JoinOptions::default()).unwrap();
    let listener = JoinOptions {
        video: None,
        audio: false,
        ..JoinOptions::default()
    };
    let hall = world.join("hall", listener).unwrap();
    let mut quiet = |_: usize, _: madang::room::RoomEvent, _: Duration| {};
    world.run_for(Duration::from_secs(5), &mut quiet).unwrap();
    let sent = |w: &World| w.participant(field).session().send_stats().clone();
    assert_eq!(sent(&world).audio_target_bps, 32_000, "room on the way up");

    // The field phone's uplink drops to 120 kbit/s: its video squeezes to the least it can,
    // and the voice gives way a little.
    world.set_link(
        field,
        Direction::Up,
        LinkConfig {
            rate_bps: Some(120_000),
            queue_bytes: 15_000,
            ..link.clone()
        },
    );
    world.run_for(Duration::from_secs(10), &mut quiet).unwrap();
    let (before, audio_before) = (sent(&world), concealed_ms(&world, hall, "field/microphone"));
    world.run_for(Duration::from_secs(10), &mut quiet).unwrap();
    let (after, audio_after) = (sent(&world), concealed_ms(&world, hall, "field/microphone"));
    let audio_kbps = (after.audio_bytes - before.audio_bytes) as f64 * 8.0 / 10.0 / 1000.0;
    let frames = after.audio_frames - before.audio_frames;
    let concealed = (audio_after.0 - audio_before.0) / ((audio_after.1 - audio_before.1) * 1000.0);
    eprintln!(
        "120 kbit/s uplink: estimate {} kbit/s, audio target {} kbit/s, {audio_kbps:.1} kbit/s \
         of Opus in {frames} frames over 10 s (DTX), {:.2} % concealed at the hall",
        after.uplink_estimate_bps / 1000,
        after.audio_target_bps / 1000,
        concealed * 100.0
    );
    assert_eq!(after.audio_target_bps, 16_000);
    assert!(audio_kbps <= 17.0, "Opus took {audio_kbps:.1} kbit/s");
    assert!(frames < 500, "DTX sent {frames} frames of 500");
    assert!(concealed <= 0.01, "{:.2} % concealed", concealed * 100.0);

    // The cap lifts: back to full rate.
    world.set_link(field, Direction::Up, link);
    world.run_for(Duration::from_secs(15), &mut quiet).unwrap();
    let end = sent(&world);
    eprintln!(
        "cap lifted: estimate {} kbit/s, audio target {} kbit/s",
        end.uplink_estimate_bps / 1000,
        end.audio_target_bps / 1000
    );
    assert_eq!(end.audio_target_bps, 32_000);
}
