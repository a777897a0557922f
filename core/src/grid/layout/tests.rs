use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

fn people(n: usize) -> Vec<Person> {
    (0..n).map(|i| Person::new(&format!("p{i}"))).collect()
}

fn check_geometry(layout: &Layout, input: &LayoutInput<'_>) {
    let by_id: HashMap<&str, &Person> = input.people.iter().map(|p| (p.id.as_str(), p)).collect();
    for (i, t) in layout.tiles.iter().enumerate() {
        assert!(
            t.rect.inside(input.viewport),
            "{t:?} outside {:?}",
            input.viewport
        );
        let (aw, ah) = by_id[t.participant.as_str()].aspect;
        // Aspect kept to within rounding of one pixel.
        let err = (t.rect.w as i64 * ah as i64 - t.rect.h as i64 * aw as i64).abs();
        assert!(err <= aw.max(ah) as i64, "{t:?} not {aw}:{ah}");
        for u in &layout.tiles[i + 1..] {
            assert!(!t.rect.overlaps(&u.rect), "{t:?} overlaps {u:?}");
        }
    }
}

#[test]
fn twenty_four_offices_fill_a_1080p_screen() {
    let p = people(24);
    let input = LayoutInput::new(&p, Viewport::new(1920, 1080), Mode::Gallery);
    let layout = Layout::compute(&input);
    assert_eq!(layout.tiles.len(), 24);
    check_geometry(&layout, &input);
    // 5 columns × 5 rows (the last holding 4) gives the largest 16:9 tiles, 377×212, larger
    // than 6×4's 316×177.
    let ys: std::collections::BTreeSet<u32> = layout.tiles.iter().map(|t| t.rect.y).collect();
    assert_eq!(ys.len(), 5);
    let w0 = layout.tiles[0].rect.w;
    assert!(
        w0 >= 370 && layout.tiles.iter().all(|t| t.rect.w == w0),
        "tiles {w0}px wide"
    );
}

#[test]
fn five_hundred_twenty_paginate() {
    let p = people(520);
    let mut input = LayoutInput::new(&p, Viewport::new(1920, 1080), Mode::Gallery);
    let first = Layout::compute(&input);
    assert_eq!(first.pages, 21);
    let mut seen = Vec::new();
    for page in 0..first.pages {
        input.page = page;
        let l = Layout::compute(&input);
        check_geometry(&l, &input);
        seen.extend(l.tiles.into_iter().map(|t| t.participant));
    }
    seen.sort();
    let mut all: Vec<String> = p.iter().map(|x| x.id.clone()).collect();
    all.sort();
    assert_eq!(seen, all, "everyone on exactly one page");
}

#[test]
fn a_join_that_keeps_the_grid_moves_nobody() {
    let p = people(8);
    let v = Viewport::new(1280, 720);
    let before = Layout::compute(&LayoutInput::new(&p[..7], v, Mode::Gallery));
    let after = Layout::compute(&LayoutInput::new(&p, v, Mode::Gallery));
    // 7 → 8 stays 3×3: full rows keep their places; only the partial last row re-centres.
    for (b, a) in before.tiles.iter().zip(&after.tiles) {
        assert_eq!(b.participant, a.participant);
    }
    let moved = before
        .tiles
        .iter()
        .zip(&after.tiles)
        .filter(|(b, a)| b.rect != a.rect)
        .count();
    assert!(moved <= 1, "{moved} tiles moved");
}

#[test]
fn speaking_does_not_reshuffle_the_gallery_unless_asked() {
    let mut p = people(30);
    let v = Viewport::new(1920, 1080);
    let quiet = Layout::compute(&LayoutInput::new(&p, v, Mode::Gallery));
    p[27].speaker_rank = Some(0);
    let speaking = Layout::compute(&LayoutInput::new(&p, v, Mode::Gallery));
    let ids = |l: &Layout| {
        l.tiles
            .iter()
            .map(|t| t.participant.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&quiet), ids(&speaking), "page one unchanged");
    let mut input = LayoutInput::new(&p, v, Mode::Gallery);
    input.speaker_to_first_page = true;
    let pulled = Layout::compute(&input);
    assert!(
        pulled
            .tiles
            .iter()
            .any(|t| t.participant == "p27" && t.highlight)
    );
    let moved = ids(&quiet)
        .iter()
        .zip(ids(&pulled))
        .filter(|(a, b)| *a != b)
        .count();
    assert_eq!(moved, 1, "only one tile swapped");
}

#[test]
fn speaker_and_spotlight_and_broadcast() {
    let mut p = people(9);
    p[4].speaker_rank = Some(0);
    p[2].pinned = true;
    p[7].pinned = true;
    let v = Viewport::new(1920, 1080);
    for mode in [Mode::Speaker, Mode::Spotlight, Mode::Broadcast] {
        let input = LayoutInput::new(&p, v, mode);
        let l = Layout::compute(&input);
        check_geometry(&l, &input);
    }
    let speaker = Layout::compute(&LayoutInput::new(&p, v, Mode::Speaker));
    let big = speaker.tiles.iter().max_by_key(|t| t.rect.w).unwrap();
    assert_eq!(big.participant, "p4");
    assert!(big.highlight);
    let spot = Layout::compute(&LayoutInput::new(&p, v, Mode::Spotlight));
    let mut large: Vec<&str> = spot
        .tiles
        .iter()
        .filter(|t| t.z == 0)
        .map(|t| t.participant.as_str())
        .collect();
    large.sort();
    assert_eq!(large, ["p2", "p7"]);

    // Broadcast: the host large, talk-back beside, viewers hidden.
    let mut room: Vec<Person> = people(6);
    room[0].role = Role::Host;
    for r in &mut room[1..] {
        r.role = Role::Viewer;
    }
    room[3].hand_raised = true;
    let l = Layout::compute(&LayoutInput::new(&room, v, Mode::Broadcast));
    let shown: Vec<&str> = l.tiles.iter().map(|t| t.participant.as_str()).collect();
    assert_eq!(shown, ["p0", "p3"]);
    assert!(l.tiles[0].rect.w > l.tiles[1].rect.w * 2);
}

#[test]
fn nobody_and_tiny_viewports() {
    let l = Layout::compute(&LayoutInput::new(
        &[],
        Viewport::new(640, 360),
        Mode::Gallery,
    ));
    assert!(l.tiles.is_empty());
    let p = people(50);
    let input = LayoutInput::new(&p, Viewport::new(16, 16), Mode::Gallery);
    let l = Layout::compute(&input);
    for t in &l.tiles {
        assert!(t.rect.inside(input.viewport));
    }
}

fn arb_person() -> impl Strategy<Value = Person> {
    (
        0u32..1000,
        prop_oneof![
            Just((16u32, 9u32)),
            Just((4, 3)),
            Just((9, 16)),
            Just((1, 1))
        ],
        proptest::option::of(0u32..5),
        any::<bool>(),
        any::<bool>(),
        prop_oneof![Just(Role::Host), Just(Role::Speaker), Just(Role::Viewer)],
    )
        .prop_map(|(n, aspect, rank, pinned, hand, role)| Person {
            id: format!("id{n}"),
            name: format!("n{n}"),
            has_video: true,
            speaker_rank: rank,
            pinned,
            role,
            hand_raised: hand,
            aspect,
            video_paused: false,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn layouts_are_sound(
        mut people in proptest::collection::vec(arb_person(), 0..60),
        w in 64u32..3840, h in 64u32..2160,
        mode in prop_oneof![Just(Mode::Gallery), Just(Mode::Speaker), Just(Mode::Spotlight), Just(Mode::Broadcast)],
        page_size in 1usize..40, page in 0usize..5, pull in any::<bool>(),
    ) {
        people.sort_by(|a, b| a.id.cmp(&b.id));
        people.dedup_by(|a, b| a.id == b.id);
        let mut input = LayoutInput::new(&people, Viewport::new(w, h), mode);
        input.page_size = page_size;
        input.page = page;
        input.speaker_to_first_page = pull;
        let a = Layout::compute(&input);
        let b = Layout::compute(&input);
        prop_assert_eq!(&a, &b, "deterministic");
        check_geometry(&a, &input);
        let mut ids: Vec<&str> = a.tiles.iter().map(|t| t.participant.as_str()).collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        prop_assert_eq!(ids.len(), n, "nobody twice on a page");
    }
}
