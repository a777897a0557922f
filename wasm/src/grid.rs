//! The room as a grid of `<video>` elements inside a page element, placed by the same
//! `grid::layout` the Rust and C faces use, and placed again on join, leave, resize and
//! active-speaker change.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use madang::grid::layout::{Layout, LayoutInput, Mode, Person, Rect, Viewport, initials};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{HtmlElement, HtmlVideoElement, MediaStream, ResizeObserver};

use crate::error::{MadangError, Result};

/// `gallery`, `speaker`, `spotlight` or `broadcast`.
pub fn mode_from_str(mode: &str) -> Result<Mode> {
    Ok(match mode {
        "gallery" => Mode::Gallery,
        "speaker" => Mode::Speaker,
        "spotlight" => Mode::Spotlight,
        "broadcast" => Mode::Broadcast,
        other => {
            return Err(MadangError::new(
                "invalid_argument",
                format!("unknown layout mode {other:?} (gallery, speaker, spotlight, broadcast)"),
            ));
        }
    })
}

/// CSS for a tile at `r`.
pub fn tile_css(r: Rect, highlight: bool) -> String {
    format!(
        "position:absolute;left:{}px;top:{}px;width:{}px;height:{}px;overflow:hidden;\
         background:#1d2b28;border-radius:6px;box-sizing:border-box;border:{}",
        r.x,
        r.y,
        r.w,
        r.h,
        if highlight { "3px solid #e0a020" } else { "0" }
    )
}

/// The layout of `people` in a `width`×`height` element.
pub fn layout_for(people: &[Person], width: u32, height: u32, mode: Mode) -> Layout {
    Layout::compute(&LayoutInput::new(
        people,
        Viewport::new(width.max(2), height.max(2)),
        mode,
    ))
}

/// One participant's tile: its element, the video inside, the label.
/// What the grid shows: the people in join order, the stream of each who has video, and
/// which of them is this page (its view is mirrored).
pub(crate) struct Scene {
    pub people: Vec<Person>,
    pub streams: HashMap<String, MediaStream>,
    pub local: Option<String>,
}

struct TileEls {
    tile: HtmlElement,
    video: HtmlVideoElement,
    label: HtmlElement,
    stream: Option<String>,
}

/// A grid attached to a page element.
pub(crate) struct GridView {
    root: HtmlElement,
    mode: Mode,
    tiles: RefCell<HashMap<String, TileEls>>,
    observer: Option<ResizeObserver>,
    _on_resize: Closure<dyn FnMut(JsValue)>,
}

impl GridView {
    /// Fills `element` with a positioned container and watches its size.
    /// Takes over `element`; `on_resize` runs when it changes size (the room then lays out
    /// again and calls [`render`](Self::render)).
    pub(crate) fn attach(
        element: HtmlElement,
        mode: Mode,
        on_resize: impl Fn() + 'static,
    ) -> Result<Rc<Self>> {
        let style = element.style();
        if style
            .get_property_value("position")
            .unwrap_or_default()
            .is_empty()
        {
            let _ = style.set_property("position", "relative");
        }
        let _ = element.set_attribute("data-madang-grid", "");
        let on_resize = Closure::<dyn FnMut(JsValue)>::new(move |_| on_resize());
        let observer = ResizeObserver::new(on_resize.as_ref().unchecked_ref()).ok();
        if let Some(o) = &observer {
            o.observe(&element);
        }
        Ok(Rc::new(Self {
            root: element,
            mode,
            tiles: RefCell::new(HashMap::new()),
            observer,
            _on_resize: on_resize,
        }))
    }

    /// Lays out `scene` in the element and shows each person's stream in its tile. Returns
    /// the layout and the viewport it filled, in device pixels (what a video's tile needs).
    pub(crate) fn render(&self, scene: Scene) -> (Layout, Viewport) {
        let Scene {
            people,
            streams,
            local,
        } = scene;
        let rect = self.root.get_bounding_client_rect();
        let layout = layout_for(
            &people,
            rect.width() as u32,
            rect.height() as u32,
            self.mode,
        );
        let mut tiles = self.tiles.borrow_mut();
        let shown: Vec<&str> = layout
            .tiles
            .iter()
            .map(|t| t.participant.as_str())
            .collect();
        tiles.retain(|id, els| {
            let keep = shown.contains(&id.as_str());
            if !keep {
                els.tile.remove();
            }
            keep
        });
        for tile in &layout.tiles {
            let Some(person) = people.iter().find(|p| p.id == tile.participant) else {
                continue;
            };
            if !tiles.contains_key(&person.id) {
                let Some(els) = self.new_tile(&person.id) else {
                    continue;
                };
                tiles.insert(person.id.clone(), els);
            }
            let Some(els) = tiles.get_mut(&person.id) else {
                continue;
            };
            let _ = els
                .tile
                .set_attribute("style", &tile_css(tile.rect, tile.highlight));
            let _ = els.tile.set_attribute(
                "class",
                if tile.highlight {
                    "madang-tile madang-speaking"
                } else {
                    "madang-tile"
                },
            );
            let stream = streams.get(&person.id);
            let stream_id = stream.map(|s| s.id());
            if els.stream != stream_id {
                els.video.set_src_object(stream);
                els.stream = stream_id;
            }
            let is_local = local.as_deref() == Some(person.id.as_str());
            els.video.set_muted(true);
            let _ = els
                .video
                .style()
                .set_property("display", if stream.is_some() { "block" } else { "none" });
            let _ = els
                .video
                .style()
                .set_property("transform", if is_local { "scaleX(-1)" } else { "none" });
            let text = if stream.is_some() {
                person.name.clone()
            } else if person.video_paused {
                format!(
                    "{}  {} · low bandwidth",
                    initials(&person.name),
                    person.name
                )
            } else {
                format!("{}  {}", initials(&person.name), person.name)
            };
            els.label.set_text_content(Some(&text));
        }
        drop(tiles);
        let scale = web_sys::window().map_or(1.0, |w| w.device_pixel_ratio().max(1.0));
        let device = |px: u32| ((px as f64 * scale).round() as u32).max(1);
        let viewport = Viewport::new(device(rect.width() as u32), device(rect.height() as u32));
        let mut layout = layout;
        for t in &mut layout.tiles {
            t.rect.w = device(t.rect.w);
            t.rect.h = device(t.rect.h);
        }
        (layout, viewport)
    }

    fn new_tile(&self, identity: &str) -> Option<TileEls> {
        let doc = web_sys::window()?.document()?;
        let tile: HtmlElement = doc.create_element("div").ok()?.dyn_into().ok()?;
        let _ = tile.set_attribute("data-participant", identity);
        let video: HtmlVideoElement = doc.create_element("video").ok()?.dyn_into().ok()?;
        video.set_autoplay(true);
        video.set_muted(true);
        let _ = video.set_attribute("playsinline", "");
        let _ = video.set_attribute(
            "style",
            "width:100%;height:100%;object-fit:cover;display:none",
        );
        let label: HtmlElement = doc.create_element("span").ok()?.dyn_into().ok()?;
        let _ = label.set_attribute(
            "style",
            "position:absolute;left:8px;bottom:6px;color:#fff;font:14px sans-serif;\
             text-shadow:0 1px 2px #000",
        );
        let _ = tile.append_child(&video);
        let _ = tile.append_child(&label);
        let _ = self.root.append_child(&tile);
        Some(TileEls {
            tile,
            video,
            label,
            stream: None,
        })
    }

    /// Removes the grid's elements and stops watching the size.
    pub(crate) fn detach(&self) {
        if let Some(o) = &self.observer {
            o.disconnect();
        }
        for (_, els) in self.tiles.borrow_mut().drain() {
            els.tile.remove();
        }
        let _ = self.root.remove_attribute("data-madang-grid");
    }
}
