//! Layout fixtures: inputs and the tiles they must produce, as JSON in
//! `core/tests/data/layout/`. Every face (Rust, C, browser) computes layouts with this code, so
//! a change in them is a change users see; regenerate deliberately with
//! `MADANG_UPDATE_GOLDENS=1 cargo test -p madang --test layout_fixtures`.

use std::path::PathBuf;

use madang::grid::layout::{Layout, LayoutInput, Mode, Person, Viewport};
use madang::signal::Role;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Fixture {
    people: Vec<Person>,
    viewport: Viewport,
    mode: Mode,
    page_size: usize,
    page: usize,
    speaker_to_first_page: bool,
    expected: Layout,
}

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/layout")
        .join(format!("{name}.json"))
}

fn compute(f: &Fixture) -> Layout {
    let mut input = LayoutInput::new(&f.people, f.viewport, f.mode);
    input.page_size = f.page_size;
    input.page = f.page;
    input.speaker_to_first_page = f.speaker_to_first_page;
    Layout::compute(&input)
}

fn case(
    name: &str,
    people: Vec<Person>,
    viewport: Viewport,
    mode: Mode,
    page_size: usize,
    page: usize,
) {
    if std::env::var_os("MADANG_UPDATE_GOLDENS").is_some() {
        let mut f = Fixture {
            people,
            viewport,
            mode,
            page_size,
            page,
            speaker_to_first_page: false,
            expected: Layout {
                tiles: vec![],
                pages: 0,
            },
        };
        f.expected = compute(&f);
        std::fs::write(path(name), serde_json::to_string_pretty(&f).unwrap()).unwrap();
        return;
    }
    let text = std::fs::read_to_string(path(name)).unwrap();
    let f: Fixture = serde_json::from_str(&text).unwrap();
    assert_eq!(compute(&f), f.expected, "{name}");
}

fn offices(n: usize) -> Vec<Person> {
    (0..n)
        .map(|i| Person::new(&format!("office-{i:02}")))
        .collect()
}

#[test]
fn disaster_room_gallery_of_24() {
    case(
        "disaster_room_24",
        offices(24),
        Viewport::new(1920, 1080),
        Mode::Gallery,
        25,
        0,
    );
}

#[test]
fn senior_centers_page_three() {
    case(
        "senior_centers_page_3",
        offices(130),
        Viewport::new(1280, 720),
        Mode::Gallery,
        25,
        3,
    );
}

#[test]
fn class_broadcast_with_talk_back() {
    let mut p = offices(8);
    p[0].role = Role::Host;
    for x in &mut p[1..] {
        x.role = Role::Viewer;
    }
    p[5].hand_raised = true;
    case(
        "class_broadcast",
        p,
        Viewport::new(1920, 1080),
        Mode::Broadcast,
        25,
        0,
    );
}

#[test]
fn meeting_speaker_view() {
    let mut p = offices(6);
    p[2].speaker_rank = Some(0);
    p[4].speaker_rank = Some(1);
    p[1].aspect = (4, 3);
    case(
        "meeting_speaker",
        p,
        Viewport::new(1280, 800),
        Mode::Speaker,
        25,
        0,
    );
}
