//! Publishing from the page: camera, microphone or screen into the publishing connection,
//! its (re)negotiation, unpublishing and muting.

use std::rc::Rc;

use futures_channel::oneshot;
use js_sys::{Array, Promise};
use madang::codec::simulcast_layers;
use madang::signal::{ClientMessage, PeerRole, PublishTrack, TrackKind, TrackSource};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{MediaStreamTrack, RtcRtpTransceiver};

use super::convert::capture;
use super::peer::{apply_answer, await_js, make_offer, new_peer_connection, prefer_h264};
use super::{Inner, Published};
use crate::error::{MadangError, Result};
use crate::js::{call, get, get_f64, obj, s};

/// The `sendEncodings` of a camera or screen sent as simulcast: the layers
/// [`simulcast_layers`] plans for the captured size (each with its rid, its scale and its
/// share of `maxBitrate`, default about 0.1 bit per pixel per frame at 30 fps), smallest
/// first; `None` when the capture is too small for more than one.
fn simulcast_encodings(track: &MediaStreamTrack, options: &JsValue) -> Option<Array> {
    let settings = call(track, "getSettings", &[]).ok()?;
    let width = get_f64(&settings, "width")? as u32;
    let height = get_f64(&settings, "height")? as u32;
    let bps = get_f64(options, "maxBitrate")
        .map(|b| b as u32)
        .unwrap_or_else(|| {
            ((width as u64 * height as u64 * 30) / 10).clamp(150_000, 4_000_000) as u32
        });
    let layers = simulcast_layers(width, height, bps);
    if layers.len() < 2 {
        return None;
    }
    Some(
        layers
            .iter()
            .map(|l| {
                obj(&[
                    ("rid", s(&l.rid)),
                    (
                        "scaleResolutionDownBy",
                        JsValue::from_f64(width as f64 / l.width as f64),
                    ),
                    ("maxBitrate", JsValue::from_f64(l.bitrate_bps as f64)),
                ])
            })
            .collect(),
    )
}

impl Inner {
    /// Publishes a camera, microphone or screen track taken from the browser.
    pub(crate) async fn publish(
        self: &Rc<Self>,
        source: TrackSource,
        options: JsValue,
    ) -> Result<()> {
        if self.state.borrow().closed {
            return Err(MadangError::new("closed", "the room was left"));
        }
        if self
            .state
            .borrow()
            .published
            .iter()
            .any(|p| p.source == source)
        {
            return Err(MadangError::new(
                "invalid_argument",
                format!("{} is already published", source.as_str()),
            ));
        }
        let stream = capture(source, &options).await?;
        let kind = if source == TrackSource::Microphone {
            TrackKind::Audio
        } else {
            TrackKind::Video
        };
        let tracks = match kind {
            TrackKind::Audio => stream.get_audio_tracks(),
            TrackKind::Video => stream.get_video_tracks(),
        };
        let track: MediaStreamTrack = tracks
            .get(0)
            .dyn_into()
            .map_err(|_| MadangError::new("media", "the browser gave no track"))?;
        let existing = self.state.borrow().publisher.clone();
        let pc = match existing {
            Some(pc) => pc,
            None => {
                let pc = new_peer_connection()?;
                self.state.borrow_mut().publisher = Some(pc.clone());
                pc
            }
        };
        // A transceiver left idle by an earlier unpublish of the same kind is reused: its
        // m-line stays, so the connection keeps its BUNDLE transport.
        let spare = {
            let mut st = self.state.borrow_mut();
            let at = st.spare.iter().position(|(k, _)| *k == kind);
            at.map(|i| st.spare.remove(i).1)
        };
        let transceiver = match spare {
            Some(t) => {
                let promise: Promise = t.sender().replace_track(Some(&track));
                await_js(promise, "negotiation", "replaceTrack").await?;
                t
            }
            None => {
                let mut init = vec![
                    ("direction", s("sendonly")),
                    ("streams", Array::of1(&stream).into()),
                ];
                if kind == TrackKind::Video
                    && get(&options, "simulcast").as_bool() == Some(true)
                    && let Some(encodings) = simulcast_encodings(&track, &options)
                {
                    init.push(("sendEncodings", encodings.into()));
                }
                let init = obj(&init);
                let t: RtcRtpTransceiver =
                    call(&pc, "addTransceiver", &[track.clone().into(), init])
                        .map_err(|e| MadangError::from_js("negotiation", "addTransceiver", &e))?
                        .unchecked_into();
                if kind == TrackKind::Video {
                    prefer_h264(&t)?;
                }
                t
            }
        };
        self.state.borrow_mut().published.push(Published {
            source,
            kind,
            enabled: true,
            track,
            stream,
            transceiver,
        });
        self.relayout();
        self.negotiate_publisher().await
    }

    /// Offers the publishing connection with every published track; one at a time.
    pub(super) async fn negotiate_publisher(self: &Rc<Self>) -> Result<()> {
        {
            let mut st = self.state.borrow_mut();
            if st.publisher_busy {
                st.publisher_again = true;
                return Ok(());
            }
            st.publisher_busy = true;
        }
        let result = self.negotiate_publisher_rounds().await;
        self.state.borrow_mut().publisher_busy = false;
        result
    }

    async fn negotiate_publisher_rounds(self: &Rc<Self>) -> Result<()> {
        loop {
            let pc = {
                let mut st = self.state.borrow_mut();
                st.publisher_again = false;
                st.publisher.clone()
            };
            let Some(pc) = pc else { return Ok(()) };
            let sdp = make_offer(&pc).await?;
            let publish: Vec<PublishTrack> = {
                let st = self.state.borrow();
                st.published
                    .iter()
                    .map(|p| (p.kind, p.source, p.transceiver.clone()))
                    .collect::<Vec<_>>()
            }
            .into_iter()
            .filter_map(|(kind, source, t)| {
                Some(PublishTrack {
                    mid: t.mid()?,
                    kind,
                    source,
                })
            })
            .collect();
            let (tx, rx) = oneshot::channel();
            self.state.borrow_mut().publisher_answer = Some(tx);
            self.send_signal(ClientMessage::Offer {
                pc: PeerRole::Publisher,
                sdp,
                publish,
            });
            let answer = rx
                .await
                .map_err(|_| MadangError::new("closed", "the room was left"))?;
            apply_answer(&pc, answer).await?;
            if !self.state.borrow().publisher_again {
                return Ok(());
            }
        }
    }

    /// Stops publishing `source`: the local track ends and the room sees it unpublished.
    pub(crate) fn unpublish(self: &Rc<Self>, source: TrackSource) -> Result<()> {
        let (gone, identity) = {
            let mut st = self.state.borrow_mut();
            let at = st.published.iter().position(|p| p.source == source);
            let gone = at.map(|i| st.published.remove(i));
            (gone, st.local_identity().unwrap_or_default().to_owned())
        };
        let Some(gone) = gone else {
            return Err(MadangError::new(
                "invalid_argument",
                format!("{} is not published", source.as_str()),
            ));
        };
        gone.track.stop();
        // The transceiver stays (sending nothing) for the next publish of this kind: stopping
        // it would remove its m-line, which can move the BUNDLE transport.
        let _ = gone.transceiver.sender().replace_track(None);
        self.state
            .borrow_mut()
            .spare
            .push((gone.kind, gone.transceiver));
        self.send_signal(ClientMessage::Unpublish {
            tracks: vec![source.track_id(&identity)],
        });
        self.relayout();
        Ok(())
    }

    /// A host made this participant a viewer: the server has ended its tracks and its side
    /// of the publishing connection, so the local tracks stop and the connection closes; a
    /// later promotion publishes on a new one.
    pub(crate) fn end_publishing(self: &Rc<Self>) {
        let (published, publisher) = {
            let mut st = self.state.borrow_mut();
            st.spare.clear();
            (std::mem::take(&mut st.published), st.publisher.take())
        };
        for p in published {
            p.track.stop();
        }
        if let Some(pc) = publisher {
            pc.close();
        }
        self.relayout();
    }

    /// Mutes or unmutes the published audio or video: the track is disabled (silence,
    /// black) and the others are told.
    pub(crate) fn set_muted(self: &Rc<Self>, kind: TrackKind, muted: bool) -> Result<()> {
        let (tracks, identity) = {
            let mut st = self.state.borrow_mut();
            let tracks: Vec<(TrackSource, MediaStreamTrack)> = st
                .published
                .iter_mut()
                .filter(|p| p.kind == kind)
                .map(|p| {
                    p.enabled = !muted;
                    (p.source, p.track.clone())
                })
                .collect();
            (tracks, st.local_identity().unwrap_or_default().to_owned())
        };
        if tracks.is_empty() {
            return Err(MadangError::new(
                "invalid_argument",
                "nothing of that kind is published",
            ));
        }
        for (source, track) in tracks {
            track.set_enabled(!muted);
            self.send_signal(ClientMessage::Mute {
                track: source.track_id(&identity),
                muted,
            });
        }
        self.relayout();
        Ok(())
    }
}
