//! WHEP playback on the server's HTTP port: a player with nothing of madang in it (a page,
//! a broadcast tool, a media player) receives one participant of a room, or the room's
//! composited grid, with one HTTP request.
//!
//! `POST /whep/{room}?participant={identity}` with `Authorization: Bearer <token>` (a viewer
//! token is enough) and an SDP offer with receive-only m-lines (`application/sdp`) → `201
//! Created`, the answer, `Location: /whep/{room}/{resource}` and an `ETag`; `DELETE` on the
//! location ends it. The player gets that participant's camera on its first video m-line
//! and microphone on its first audio one; `participant=grid`, or no participant in a room
//! with a grid, gives the grid, with the voice of the room's loudest speaker (switched as
//! the floor changes: one voice, not a mix). Inside, a WHEP session is a signal session like a
//! WebSocket's: it joins with the token, subscribes to those tracks and offers the SDP on
//! the subscribing connection; the server's usual forwarding, repair and congestion control
//! carry it. Tracks the participant has not published yet, or publishes again after
//! leaving and coming back, are subscribed to when they appear. Trickle ICE and ICE restarts (`PATCH`) are not supported (`405`):
//! the candidates go in the offer.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::engine::sdp_m_lines;
use super::http::HttpState;
use super::rooms::{GRID_IDENTITY, GRID_TRACK};
use super::whip::{HttpSession, offer_of, refuse};
use crate::signal::{ClientMessage, PeerRole, TrackKind};

/// The query of `POST /whep/{room}`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Target {
    /// Whose camera and microphone to play, or `grid`.
    participant: Option<String>,
}

/// What a player that offered `video` and `audio` m-lines receives of `who` (or of the
/// grid).
fn tracks_of(who: &str, video: bool, audio: bool) -> Vec<String> {
    if who == GRID_IDENTITY {
        return if video {
            vec![GRID_TRACK.to_owned()]
        } else {
            Vec::new()
        };
    }
    let mut tracks = Vec::new();
    if video {
        tracks.push(format!("{who}/camera"));
    }
    if audio {
        tracks.push(format!("{who}/microphone"));
    }
    tracks
}

/// `POST /whep/{room}`: joins with the bearer token, subscribes to the participant (or the
/// grid) and answers the offer.
pub(crate) async fn post(
    Path(room): Path<String>,
    Query(target): Query<Target>,
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (token, offer) = match offer_of(&headers, &body) {
        Ok(o) => o,
        Err(refusal) => return *refusal,
    };
    let m_lines = sdp_m_lines(&offer);
    let video = m_lines.iter().any(|(k, _)| *k == TrackKind::Video);
    let audio = m_lines.iter().any(|(k, _)| *k == TrackKind::Audio);
    if !video && !audio {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the offer has no audio or video m-line with a mid to receive on",
        );
    }
    let (mut session, participants, tracks) = match HttpSession::join(&state, &room, &token).await {
        Ok(j) => j,
        Err(refusal) => return *refusal,
    };
    let has_grid = tracks.iter().any(|t| t.id == GRID_TRACK);
    let who = match target.participant {
        Some(who) => who,
        None if has_grid => GRID_IDENTITY.to_owned(),
        None => {
            session.leave().await;
            return refuse(
                StatusCode::BAD_REQUEST,
                &format!("room {room} has no grid: name a participant (?participant=identity)"),
            );
        }
    };
    let missing = if who == GRID_IDENTITY {
        (!has_grid).then(|| format!("room {room} has no grid"))
    } else {
        let there = participants.iter().any(|p| p.identity == who);
        (!there).then(|| format!("no participant {who} in room {room}"))
    };
    if let Some(what) = missing {
        session.leave().await;
        return refuse(StatusCode::NOT_FOUND, &what);
    }
    let wanted = tracks_of(&who, video, audio);
    if wanted.is_empty() {
        session.leave().await;
        return refuse(
            StatusCode::BAD_REQUEST,
            "the grid is video: the offer needs a video m-line",
        );
    }
    session
        .say(ClientMessage::Subscribe {
            tracks: wanted.clone(),
        })
        .await;
    match session.offer(PeerRole::Subscriber, offer, Vec::new()).await {
        // The grid is video: its sound is the loudest speaker's voice.
        Ok((answer, _)) => {
            let loudest_voice = who == GRID_IDENTITY && audio;
            session.created("whep", &room, answer, wanted, loudest_voice)
        }
        Err(refusal) => *refusal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_player_gets_the_tracks_its_offer_has_m_lines_for() {
        assert_eq!(
            tracks_of("jongno", true, true),
            ["jongno/camera", "jongno/microphone"]
        );
        assert_eq!(tracks_of("jongno", false, true), ["jongno/microphone"]);
        assert_eq!(tracks_of("grid", true, true), [GRID_TRACK]);
        assert!(
            tracks_of("grid", false, true).is_empty(),
            "its voice follows the floor"
        );
    }
}
