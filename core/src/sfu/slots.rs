//! Which receive slot carries which remote track: pure, stable assignment.
//!
//! A subscriber receives through a fixed set of receive-only m-lines ("slots") per kind.
//! When the tracks it wants change, tracks keep the slot they had; freed slots are reused for
//! new tracks without renegotiation; only when more tracks are wanted than there are slots
//! does the subscriber have to offer more.

use crate::signal::TrackKind;

/// One receive slot as the assignment sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotView {
    /// Audio or video.
    pub kind: TrackKind,
    /// The track it carries now.
    pub track: Option<String>,
}

/// Result of an assignment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Assignment {
    /// Indices of slots whose track changed.
    pub changed: Vec<usize>,
    /// Total slots needed per kind when more are wanted than exist: `(audio, video)`.
    pub need_more: Option<(u32, u32)>,
}

/// Reassigns `slots` so that each wanted track (in order of preference) has one, keeping
/// existing placements.
pub fn assign(slots: &mut [SlotView], wanted: &[(String, TrackKind)]) -> Assignment {
    let mut result = Assignment::default();
    for (i, slot) in slots.iter_mut().enumerate() {
        if let Some(t) = &slot.track
            && !wanted.iter().any(|(w, k)| w == t && *k == slot.kind)
        {
            slot.track = None;
            result.changed.push(i);
        }
    }
    let mut missing = (0u32, 0u32);
    for (track, kind) in wanted {
        if slots.iter().any(|s| s.track.as_ref() == Some(track)) {
            continue;
        }
        match slots
            .iter()
            .position(|s| s.kind == *kind && s.track.is_none())
        {
            Some(i) => {
                slots[i].track = Some(track.clone());
                if !result.changed.contains(&i) {
                    result.changed.push(i);
                }
            }
            None => match kind {
                TrackKind::Audio => missing.0 += 1,
                TrackKind::Video => missing.1 += 1,
            },
        }
    }
    if missing != (0, 0) {
        let count = |k: TrackKind| slots.iter().filter(|s| s.kind == k).count() as u32;
        result.need_more = Some((
            count(TrackKind::Audio) + missing.0,
            count(TrackKind::Video) + missing.1,
        ));
    }
    result.changed.sort_unstable();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use TrackKind::{Audio, Video};

    fn slots(kinds: &[TrackKind]) -> Vec<SlotView> {
        kinds
            .iter()
            .map(|&kind| SlotView { kind, track: None })
            .collect()
    }

    fn want(list: &[(&str, TrackKind)]) -> Vec<(String, TrackKind)> {
        list.iter().map(|(t, k)| (t.to_string(), *k)).collect()
    }

    #[test]
    fn fills_free_slots_and_asks_for_more() {
        let mut s = slots(&[Video, Audio]);
        let a = assign(
            &mut s,
            &want(&[("a/cam", Video), ("a/mic", Audio), ("b/cam", Video)]),
        );
        assert_eq!(s[0].track.as_deref(), Some("a/cam"));
        assert_eq!(s[1].track.as_deref(), Some("a/mic"));
        assert_eq!(a.changed, vec![0, 1]);
        assert_eq!(a.need_more, Some((1, 2)));
    }

    #[test]
    fn placements_are_stable_and_freed_slots_reused() {
        let mut s = slots(&[Video, Video, Video]);
        assign(&mut s, &want(&[("a", Video), ("b", Video), ("c", Video)]));
        // b leaves, d arrives: a and c stay put, d takes b's slot.
        let a = assign(&mut s, &want(&[("a", Video), ("c", Video), ("d", Video)]));
        let tracks: Vec<_> = s.iter().map(|x| x.track.as_deref()).collect();
        assert_eq!(tracks, [Some("a"), Some("d"), Some("c")]);
        assert_eq!(a.changed, vec![1]);
        assert_eq!(a.need_more, None);
        // Nothing changes when nothing changed.
        let a = assign(&mut s, &want(&[("a", Video), ("c", Video), ("d", Video)]));
        assert!(a.changed.is_empty());
    }

    #[test]
    fn unwanted_tracks_free_their_slots() {
        let mut s = slots(&[Audio, Audio]);
        assign(&mut s, &want(&[("x", Audio), ("y", Audio)]));
        let a = assign(&mut s, &want(&[("y", Audio)]));
        assert_eq!(s[0].track, None);
        assert_eq!(a.changed, vec![0]);
    }
}
