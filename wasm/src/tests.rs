//! The browser module's pure parts, natively and (with `wasm-bindgen-test`) in Chromium.

use madang::grid::layout::{Mode, Person, Rect};
use wasm_bindgen_test::wasm_bindgen_test;

// In the browser (headless Chromium through wasm-bindgen-test-runner and chromedriver).
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

use super::*;

#[test]
#[wasm_bindgen_test]
fn layout_modes_parse_and_unknown_ones_are_a_typed_error() {
    assert_eq!(mode_from_str("gallery").unwrap(), Mode::Gallery);
    assert_eq!(mode_from_str("broadcast").unwrap(), Mode::Broadcast);
    let e = mode_from_str("mosaic").unwrap_err();
    assert_eq!(e.code(), "invalid_argument");
    assert!(e.message().contains("mosaic"));
    assert_eq!(e.name(), "MadangError");
}

#[test]
#[wasm_bindgen_test]
fn the_grid_uses_the_core_layout() {
    let people: Vec<Person> = ["a", "b", "c"].iter().map(|i| Person::new(i)).collect();
    let layout = layout_for(&people, 1280, 720, Mode::Gallery);
    assert_eq!(layout.tiles.len(), 3);
    for t in &layout.tiles {
        assert!(t.rect.x + t.rect.w <= 1280 && t.rect.y + t.rect.h <= 720);
    }
    // A zero-sized element (not laid out yet) gives a degenerate layout, not a panic.
    let tiny = layout_for(&people, 0, 0, Mode::Speaker);
    assert!(
        tiny.tiles
            .iter()
            .all(|t| t.rect.x + t.rect.w <= 2 && t.rect.y + t.rect.h <= 2)
    );
}

#[test]
#[wasm_bindgen_test]
fn tiles_are_absolutely_placed_and_the_speaker_is_bordered() {
    let r = Rect {
        x: 4,
        y: 8,
        w: 320,
        h: 180,
    };
    let css = tile_css(r, false);
    assert!(
        css.contains("left:4px;top:8px;width:320px;height:180px"),
        "{css}"
    );
    assert!(tile_css(r, true).contains("3px solid"));
}

#[test]
#[wasm_bindgen_test]
fn the_version_is_the_crates() {
    assert_eq!(version(), env!("CARGO_PKG_VERSION"));
}
