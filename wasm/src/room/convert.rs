//! Between the browser and Rust: capturing media, and the room's values as JavaScript
//! objects.

use js_sys::Array;
use madang::signal::{DataMessage, ParticipantInfo, TrackInfo, TrackSource};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::MediaStream;

use super::Handler;
use super::peer::call_await;
use crate::error::{MadangError, Result};
use crate::js::{call, get, obj, s};

/// Asks the browser for the camera, microphone or screen.
pub(super) async fn capture(source: TrackSource, options: &JsValue) -> Result<MediaStream> {
    let devices = web_sys::window()
        .map(|w| w.navigator())
        .and_then(|n| n.media_devices().ok())
        .ok_or_else(|| {
            MadangError::new(
                "media",
                "no media devices (a page served over http://localhost or https is needed)",
            )
        })?;
    let video = || {
        let mut pairs = Vec::new();
        for key in ["width", "height", "frameRate", "deviceId"] {
            let v = get(options, key);
            if !v.is_undefined() {
                pairs.push((key, v));
            }
        }
        if pairs.is_empty() {
            JsValue::TRUE
        } else {
            obj(&pairs)
        }
    };
    let (method, constraints) = match source {
        TrackSource::Camera => (
            "getUserMedia",
            obj(&[("video", video()), ("audio", JsValue::FALSE)]),
        ),
        TrackSource::Microphone => (
            "getUserMedia",
            obj(&[("audio", JsValue::TRUE), ("video", JsValue::FALSE)]),
        ),
        _ => (
            "getDisplayMedia",
            obj(&[("video", video()), ("audio", JsValue::FALSE)]),
        ),
    };
    let stream = call_await(&devices, method, &[constraints], "media").await?;
    Ok(stream.unchecked_into())
}

/// The values of an `RTCStatsReport` (a maplike).
pub(super) fn report_values(report: &JsValue) -> Vec<JsValue> {
    let values = Array::new();
    let push = Handler::new({
        let values = values.clone();
        move |v: JsValue| {
            values.push(&v);
        }
    });
    let _ = call(report, "forEach", &[push.as_ref().clone()]);
    values.iter().collect()
}

pub(super) fn participant_js(p: &ParticipantInfo) -> JsValue {
    obj(&[
        ("identity", s(&p.identity)),
        ("name", s(&p.name)),
        ("role", s(&p.role.to_string())),
    ])
}

pub(super) fn track_js(t: &TrackInfo) -> JsValue {
    obj(&[
        ("track", s(&t.id)),
        ("participant", s(&t.participant)),
        ("kind", s(t.kind.as_str())),
        ("source", s(t.source.as_str())),
        ("muted", t.muted.into()),
    ])
}

pub(super) fn data_js(m: &DataMessage) -> JsValue {
    let to: Array = m.to.iter().map(|t| s(t)).collect();
    obj(&[
        ("from", s(&m.from)),
        ("topic", s(&m.topic)),
        ("payload", s(&m.payload)),
        ("to", to.into()),
    ])
}

/// The participants as JavaScript sees them (`room.participants`).
pub(crate) fn participants_js(people: &[ParticipantInfo]) -> JsValue {
    let list: Array = people.iter().map(participant_js).collect();
    list.into()
}
