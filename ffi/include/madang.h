/*
 * madang.h — C ABI of madang, the embeddable real-time media library.
 * Generated from ffi/src by cbindgen; do not edit (see ffi/cbindgen.toml).
 *
 * Conventions:
 *   - Every function starts with madang_; handles are opaque, created by *_new or *_start and
 *     released by *_free. Passing NULL to *_free does nothing.
 *   - Functions that can fail return madang_result; out-parameters are written only when the
 *     result is MADANG_RESULT_OK.
 *   - Strings in are NUL-terminated UTF-8, borrowed for the call. Strings out are copied into a
 *     caller buffer; when it is too small the call returns MADANG_RESULT_BUFFER_TOO_SMALL and
 *     writes nothing.
 *   - Data handed out in a madang_event (strings, picture planes, samples) belongs to madang
 *     and stays valid until the next call on the same client.
 *   - Threads: a handle may move between threads but must not be used by two at once. madang
 *     never calls into C: events come from madang_client_poll_event and log lines from
 *     madang_log_pop, on whichever thread C calls them.
 *   - A Rust panic never crosses into C: it becomes MADANG_RESULT_PANIC.
 *
 * Link: -lmadang_ffi (static: add -lstdc++ -lpthread -ldl -lm).
 */

#ifndef MADANG_H
#define MADANG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MADANG_VERSION_MAJOR 0
#define MADANG_VERSION_MINOR 1
#define MADANG_VERSION_PATCH 0
#define MADANG_VERSION_STRING "0.1.0"
/* MAJOR * 10000 + MINOR * 100 + PATCH, for #if comparisons. */
#define MADANG_VERSION_NUMBER (0 * 10000 + 1 * 100 + 0)

// Outcome of a madang C call. The numbers are stable across releases; new codes are only
// ever added.
enum madang_result
#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L
  : uint32_t
#endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L
 {
  // Success; out-parameters were written.
  MADANG_RESULT_OK = 0,
  // A required pointer argument was NULL.
  MADANG_RESULT_NULL_ARGUMENT = 1,
  // A string argument was not valid UTF-8.
  MADANG_RESULT_INVALID_UTF8 = 2,
  // The output buffer is too small; nothing was written.
  MADANG_RESULT_BUFFER_TOO_SMALL = 3,
  // An address string did not parse as "ip:port".
  MADANG_RESULT_INVALID_ADDRESS = 4,
  // An argument was out of range or not one of the accepted values.
  MADANG_RESULT_INVALID_ARGUMENT = 5,
  // The operating system refused (threads, sockets).
  MADANG_RESULT_IO = 6,
  // A listening address is taken or not available on this machine.
  MADANG_RESULT_ADDRESS_IN_USE = 7,
  // madang hit an internal error (a Rust panic), caught at the boundary. A bug: please report.
  MADANG_RESULT_PANIC = 8,
  // Nothing happened within the timeout (`madang_client_poll_event`).
  MADANG_RESULT_TIMEOUT = 9,
  // The session is over: the client left or was disconnected (after the
  // `MADANG_EVENT_DISCONNECTED` event).
  MADANG_RESULT_CLOSED = 10,
  // The client is not connected yet (`madang_client_connect` first).
  MADANG_RESULT_NOT_CONNECTED = 11,
  // The client is already connected (or has been); create a new one to join again.
  MADANG_RESULT_ALREADY_CONNECTED = 12,
  // The server could not be reached or the signal connection broke while joining.
  MADANG_RESULT_CONNECT_FAILED = 13,
  // The server refused the join: invalid or expired token, wrong room, room full, bad name.
  MADANG_RESULT_REFUSED = 14,
  // A pushed frame is malformed: wrong size, odd dimensions, strides shorter than a row,
  // an audio block that is not 10 or 20 ms of 48 kHz mono or stereo.
  MADANG_RESULT_INVALID_FRAME = 15,
  // Encoding or WebRTC transport failed.
  MADANG_RESULT_MEDIA = 16,
  // The client was not set up to publish that kind of media (see the config).
  MADANG_RESULT_NOT_PUBLISHING = 17,
  // Nothing is waiting (`madang_log_pop`).
  MADANG_RESULT_EMPTY = 18,
  // The server has no token secret of its own: set one (`madang_server_config_set_secret`)
  // or ask for development mode (`madang_server_config_set_dev`).
  MADANG_RESULT_NO_SECRET = 19,
  // The operating system does not allow this process to listen there (a port below 1024
  // without the privilege, an address it may not use).
  MADANG_RESULT_PERMISSION_DENIED = 20,
};
#ifndef __cplusplus
#if __STDC_VERSION__ >= 202311L
typedef enum madang_result madang_result;
#else
typedef uint32_t madang_result;
#endif // __STDC_VERSION__ >= 202311L
#endif // __cplusplus

// What `madang_client_poll_event` returned. The numbers are stable.
enum madang_event_kind
#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L
  : uint32_t
#endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L
 {
  // This client joined: `participant` and `name` are its own, `text` is the room.
  MADANG_EVENT_JOINED = 1,
  // Someone is in the room (also sent for everyone already there after `JOINED`):
  // `participant`, `name`, `text` is the role ("host", "speaker", "viewer").
  MADANG_EVENT_PARTICIPANT_JOINED = 2,
  // Someone left: `participant`; `text` is why ("left", "connection_lost", "timeout", …).
  MADANG_EVENT_PARTICIPANT_LEFT = 3,
  // A decoded picture of `participant`'s `track`, in `video`.
  MADANG_EVENT_VIDEO_FRAME = 4,
  // Decoded audio of `participant`'s `track`, in `audio`.
  MADANG_EVENT_AUDIO_FRAME = 5,
  // An application message from `participant`: `topic` and `text` (the payload).
  MADANG_EVENT_DATA = 6,
  // The loudest participant now is `participant` at `level` (0.0–1.0); `participant` is
  // empty when nobody speaks.
  MADANG_EVENT_ACTIVE_SPEAKER = 7,
  // Counters of this client, in `stats` (every stats interval).
  MADANG_EVENT_STATS = 8,
  // The server reported a problem: `text` is its stable code (e.g. "permission_denied"),
  // `topic` the detail. The session goes on unless `DISCONNECTED` follows.
  MADANG_EVENT_ERROR = 9,
  // The session ended (the server went away or closed it). Later polls return
  // `MADANG_RESULT_CLOSED`.
  MADANG_EVENT_DISCONNECTED = 10,
  // The composited room (grid receive mode), in `video`.
  MADANG_EVENT_GRID_FRAME = 11,
  // `participant` published `track`; `text` is "audio" or "video".
  MADANG_EVENT_TRACK_PUBLISHED = 12,
  // `track` ended.
  MADANG_EVENT_TRACK_UNPUBLISHED = 13,
  // `track` was muted (`muted` true) or unmuted.
  MADANG_EVENT_TRACK_MUTED = 14,
  // The server stopped (`paused` true) or resumed forwarding the video `track` because
  // of what this client's downlink carries; audio goes on. Show the placeholder meanwhile.
  MADANG_EVENT_VIDEO_PAUSED = 15,
  // To hosts: the raised hands, first raised first, in `text`, one identity per line
  // (empty when none is up).
  MADANG_EVENT_HANDS = 16,
  // A host lowered this client's raised hand (sent it back, or let it in:
  // `ROLE_CHANGED` follows then).
  MADANG_EVENT_HAND_LOWERED = 17,
  // A host promoted or demoted `participant`: `text` is the new role ("speaker",
  // "viewer"). When it is this client: made a speaker, it starts publishing what its
  // configuration asks for (push frames from then on); made a viewer, it stopped.
  MADANG_EVENT_ROLE_CHANGED = 18,
  // The signal connection to the server dropped; the call goes on (media included) while
  // the client opens a new one to take the session back (for up to 15 s). Messages sent
  // meanwhile wait for it.
  MADANG_EVENT_RECONNECTING = 19,
  // The signal connection is back and the session with it; the events for what changed
  // meanwhile (joins, leaves, tracks) came just before this one.
  MADANG_EVENT_RECONNECTED = 20,
  // The room's recording started (`text` "started") or stopped ("stopped");
  // `participant` is the host who switched it, empty when the server did. Also right
  // after `JOINED` or `RECONNECTED` in a room being recorded.
  MADANG_EVENT_RECORDING = 21,
};
#ifndef __cplusplus
#if __STDC_VERSION__ >= 202311L
typedef enum madang_event_kind madang_event_kind;
#else
typedef uint32_t madang_event_kind;
#endif // __STDC_VERSION__ >= 202311L
#endif // __cplusplus

// How much madang logs. The numbers are stable.
enum madang_log_level
#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L
  : uint32_t
#endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L
 {
  // Nothing (the default until `madang_log_set_level` is called).
  MADANG_LOG_OFF = 0,
  // Failures.
  MADANG_LOG_ERROR = 1,
  // Problems madang recovered from.
  MADANG_LOG_WARN = 2,
  // Joins, leaves, connection changes.
  MADANG_LOG_INFO = 3,
  // Detail for debugging.
  MADANG_LOG_DEBUG = 4,
  // Everything, per packet.
  MADANG_LOG_TRACE = 5,
};
#ifndef __cplusplus
#if __STDC_VERSION__ >= 202311L
typedef enum madang_log_level madang_log_level;
#else
typedef uint32_t madang_log_level;
#endif // __STDC_VERSION__ >= 202311L
#endif // __cplusplus

// How the composited grid arranges the room. The numbers are stable.
enum madang_layout_mode
#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L
  : uint32_t
#endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L
 {
  // Equal tiles in rows and columns.
  MADANG_LAYOUT_GALLERY = 0,
  // The active speaker large, the others in a strip below.
  MADANG_LAYOUT_SPEAKER = 1,
  // Pinned participants large (none can be pinned from C yet: like gallery).
  MADANG_LAYOUT_SPOTLIGHT = 2,
  // The host large, participants talking back beside it, viewers hidden.
  MADANG_LAYOUT_BROADCAST = 3,
};
#ifndef __cplusplus
#if __STDC_VERSION__ >= 202311L
typedef enum madang_layout_mode madang_layout_mode;
#else
typedef uint32_t madang_layout_mode;
#endif // __STDC_VERSION__ >= 202311L
#endif // __cplusplus

// A participant in a room.
typedef struct madang_client madang_client;

// How a client joins: server, token, what it publishes, how it receives.
typedef struct madang_client_config madang_client_config;

// An embedded room server with its own threads.
typedef struct madang_server madang_server;

// Settings for an embedded room server (loopback and development defaults).
typedef struct madang_server_config madang_server_config;

// An I420 picture: three planes with their strides (bytes per row).
//
// Pushed by C: the planes are read during the call only. Received in an event: the planes
// belong to madang and stay valid until the next call on the same client.
typedef struct {
  // Width in pixels (even).
  uint32_t width;
  // Height in pixels (even).
  uint32_t height;
  // Luma plane: `stride_y * (height - 1) + width` bytes.
  const uint8_t *y;
  // Cb plane: `stride_u * (height / 2 - 1) + width / 2` bytes.
  const uint8_t *u;
  // Cr plane: `stride_v * (height / 2 - 1) + width / 2` bytes.
  const uint8_t *v;
  // Bytes per luma row, at least `width`.
  uint32_t stride_y;
  // Bytes per Cb row, at least `width / 2`.
  uint32_t stride_u;
  // Bytes per Cr row, at least `width / 2`.
  uint32_t stride_v;
  // Presentation time in microseconds.
  int64_t pts_us;
} madang_video_frame;

// A block of 48 kHz 16-bit PCM, interleaved when stereo. In an event the samples belong to
// madang and stay valid until the next call on the same client.
typedef struct {
  // `samples_per_channel * channels` samples.
  const int16_t *samples;
  // 480 (10 ms) or 960 (20 ms).
  uint32_t samples_per_channel;
  // 1 or 2.
  uint32_t channels;
  // Always 48000.
  uint32_t sample_rate;
  // Presentation time in microseconds.
  int64_t pts_us;
} madang_audio_frame;

// Counters of one client.
typedef struct {
  // Pictures encoded and sent.
  uint64_t video_frames_sent;
  // Of those, keyframes.
  uint64_t keyframes_sent;
  // Encoded video bytes sent.
  uint64_t video_bytes_sent;
  // Audio blocks encoded and sent.
  uint64_t audio_frames_sent;
  // Round-trip time to the server in ms; negative while unknown.
  double rtt_ms;
  // Remote tracks received.
  uint32_t tracks_received;
  // RTP packets received over all tracks.
  uint64_t packets_received;
  // Packets missing by sequence number.
  uint64_t packets_lost;
  // Pictures and audio blocks decoded.
  uint64_t frames_decoded;
  // Pictures dropped for missing packets or decoder errors.
  uint64_t frames_lost;
  // Received bitrate over all tracks, kbit/s.
  double receive_kbps;
  // Pictures and audio blocks pushed before the publishing connection was up (dropped; the
  // first picture after is a keyframe).
  uint64_t dropped_before_connected;
  // Freezes over all video tracks: no new picture for more than three frame
  // intervals and more than one interval + 150 ms.
  uint64_t freezes;
  // Total length of those freezes, ms.
  double freeze_ms;
  // Keyframe requests this client sent for the pictures it receives.
  uint64_t keyframe_requests_sent;
  // Packets this client asked for again (NACK entries, repeats included).
  uint64_t nacks_sent;
  // Packets repaired by retransmission.
  uint64_t packets_recovered;
  // Audio blocks rebuilt from in-band FEC.
  uint64_t audio_fec_frames;
  // Audio concealed, ms.
  double audio_concealed_ms;
  // Largest current jitter-buffer delay over the video tracks, ms.
  double video_buffer_delay_ms;
  // The publishing connection's uplink estimate (congestion control), kbit/s; 0 before
  // the first picture went out.
  double uplink_estimate_kbps;
  // The bitrate the video encoder aims at now (it follows the estimate), kbit/s; 0
  // without video.
  double video_target_kbps;
  // Audio frames played from a copy in a later packet (redundant audio), their own
  // packet lost.
  uint64_t audio_copy_frames;
} madang_stats;

// What one remote track delivered (part of a `STATS` event).
typedef struct {
  // The track id ("identity/camera", "identity/microphone").
  const char *track;
  // A video track (otherwise audio).
  bool video;
  // RTP packets received.
  uint64_t packets;
  // Packets that never arrived.
  uint64_t packets_lost;
  // Pictures displayed, or audio frames played from their own packet.
  uint64_t frames_decoded;
  // Pictures dropped (missing packets, decoder errors); audio frames concealed or skipped.
  uint64_t frames_lost;
  // Keyframe requests sent for this track.
  uint64_t keyframe_requests;
  // Packets asked for again (NACK entries, repeats included).
  uint64_t nacks_sent;
  // Packets repaired by retransmission.
  uint64_t packets_recovered;
  // Freezes: no new picture for more than three frame
  // intervals and more than one interval + 150 ms.
  uint64_t freezes;
  // Total length of the freezes, ms.
  double freeze_ms;
  // Audio frames rebuilt from in-band FEC.
  uint64_t audio_fec_frames;
  // Audio concealed, ms.
  double audio_concealed_ms;
  // Current jitter-buffer (video) or playout-buffer (audio) delay, ms.
  double buffer_delay_ms;
  // Inter-arrival jitter, ms; negative while unknown.
  double jitter_ms;
  // Received bitrate, kbit/s.
  double kbps;
  // Audio frames played from a copy in a later packet (redundant audio), their own
  // packet lost.
  uint64_t audio_copy_frames;
} madang_track_stats;

// One thing that happened, filled by `madang_client_poll_event`. Strings are never NULL
// (empty when a field does not apply). Everything it points to belongs to madang and stays
// valid until the next call on the same client.
typedef struct {
  // What happened; says which fields apply.
  madang_event_kind kind;
  // A participant's identity.
  const char *participant;
  // A display name.
  const char *name;
  // A track id ("identity/camera", "identity/microphone", …).
  const char *track;
  // Room name, role, leave reason, data payload or error code (see the kinds).
  const char *text;
  // Data topic, or an error's detail.
  const char *topic;
  // Active speaker's audio level, 0.0–1.0.
  float level;
  // Track muted.
  bool muted;
  // Video paused by the server (`VIDEO_PAUSED`).
  bool paused;
  // A picture (`VIDEO_FRAME`, `GRID_FRAME`).
  madang_video_frame video;
  // Audio (`AUDIO_FRAME`).
  madang_audio_frame audio;
  // Counters (`STATS`).
  madang_stats stats;
  // Per remote track counters (`STATS`): `track_count` of them, valid until the next call
  // on the same client; NULL with a count of 0 otherwise.
  const madang_track_stats *tracks;
  // Entries in `tracks`.
  size_t track_count;
} madang_event;

// Every code, in number order.
#define madang_result_ALL { MADANG_RESULT_OK, MADANG_RESULT_NULL_ARGUMENT, MADANG_RESULT_INVALID_UTF8, MADANG_RESULT_BUFFER_TOO_SMALL, MADANG_RESULT_INVALID_ADDRESS, MADANG_RESULT_INVALID_ARGUMENT, MADANG_RESULT_IO, MADANG_RESULT_ADDRESS_IN_USE, MADANG_RESULT_PANIC, MADANG_RESULT_TIMEOUT, MADANG_RESULT_CLOSED, MADANG_RESULT_NOT_CONNECTED, MADANG_RESULT_ALREADY_CONNECTED, MADANG_RESULT_CONNECT_FAILED, MADANG_RESULT_REFUSED, MADANG_RESULT_INVALID_FRAME, MADANG_RESULT_MEDIA, MADANG_RESULT_NOT_PUBLISHING, MADANG_RESULT_EMPTY, MADANG_RESULT_NO_SECRET, MADANG_RESULT_PERMISSION_DENIED, }

#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

// The library version as a NUL-terminated string with static lifetime; never NULL.
const char *madang_version(void);

// A human-readable, NUL-terminated, static description of a result code (a
// `madang_result`); never NULL, also for numbers that are not a code.
const char *madang_result_message(uint32_t result);

// Creates a client from `config` (copied; the caller still frees it) with threads of its own
// for the network. It does not connect yet. Free it with `madang_client_free`.
//
// Errors: NULL arguments; `MADANG_RESULT_IO` when threads cannot be started.
//
// # Safety
// `config` must come from `madang_client_config_new`; `out_client` writable.
madang_result madang_client_new(const madang_client_config *config, madang_client **out_client);

// Connects to the server, joins the room and sets up publishing; blocks until the server
// accepted the join (at most 10 s). Then `MADANG_EVENT_JOINED` is the first event, followed
// by `PARTICIPANT_JOINED` and `TRACK_PUBLISHED` for whoever is already there.
//
// Errors: `MADANG_RESULT_CONNECT_FAILED` (server unreachable), `MADANG_RESULT_REFUSED` (bad
// token, wrong room, room full, bad name), `MADANG_RESULT_TIMEOUT` (no answer),
// `MADANG_RESULT_MEDIA` (WebRTC or encoder setup), `MADANG_RESULT_ALREADY_CONNECTED`.
//
// # Safety
// `client` must come from `madang_client_new`.
madang_result madang_client_connect(madang_client *client);

// Encodes and sends one picture on the camera track. The planes are copied during the call.
// Pictures should come at the configured frame rate; `pts_us` should increase.
//
// Errors: NULL (frame or a plane); `MADANG_RESULT_INVALID_FRAME` when the size differs from
// the configured one, dimensions are odd, or a stride is shorter than its plane's row;
// `MADANG_RESULT_NOT_PUBLISHING` without video in the config; `MADANG_RESULT_NOT_CONNECTED`,
// `MADANG_RESULT_CLOSED`; `MADANG_RESULT_MEDIA` when encoding or sending fails.
//
// # Safety
// `client` must come from `madang_client_new`; `frame` must point to a frame whose planes
// hold the bytes its fields promise.
madang_result madang_client_push_video_frame(madang_client *client,
                                             const madang_video_frame *frame);

// Encodes and sends one block of 48 kHz PCM on the microphone track: `samples_per_channel`
// 480 (10 ms) or 960 (20 ms), `channels` 1 or 2 (interleaved; stereo is mixed down to the
// mono track). Copied during the call.
//
// Errors: NULL; `MADANG_RESULT_INVALID_FRAME` for other lengths or channel counts;
// `MADANG_RESULT_NOT_PUBLISHING` without audio in the config; `MADANG_RESULT_NOT_CONNECTED`,
// `MADANG_RESULT_CLOSED`, `MADANG_RESULT_MEDIA`.
//
// # Safety
// `client` must come from `madang_client_new`; `samples` must hold
// `samples_per_channel * channels` values.
madang_result madang_client_push_audio_frame(madang_client *client,
                                             const int16_t *samples,
                                             uint32_t samples_per_channel,
                                             uint32_t channels,
                                             int64_t pts_us);

// Sends an application message (UTF-8 text, e.g. JSON) on `topic` to everyone else in the
// room, reliably and in order. Binary data should be base64-encoded.
//
// Errors: NULL, invalid UTF-8, `MADANG_RESULT_NOT_CONNECTED`, `MADANG_RESULT_CLOSED`.
//
// # Safety
// `client` must come from `madang_client_new`; `topic` and `payload` NUL-terminated.
madang_result madang_client_send_data(madang_client *client,
                                      const char *topic,
                                      const char *payload);

// Tells the client that the local network changed (a phone moved from LTE to Wi-Fi, a
// laptop got a new address): both connections move to new UDP sockets bound on
// `local_ip` (an IPv4 or IPv6 address in text; NULL keeps the address they use now) and
// restart ICE, keeping every stream, so that media resumes once the new path answers.
// Call it when the platform reports a change; the client does not watch the network.
//
// Errors: NULL client, invalid UTF-8, `MADANG_RESULT_INVALID_ADDRESS` (not an IP
// address), `MADANG_RESULT_IO` (no socket could be bound there),
// `MADANG_RESULT_NOT_CONNECTED`, `MADANG_RESULT_CLOSED`.
//
// # Safety
// `client` must come from `madang_client_new`; `local_ip` NULL or NUL-terminated.
madang_result madang_client_network_changed(madang_client *client, const char *local_ip);

// Raises (`raised` true) or lowers this viewer's hand to ask to be heard; the room's
// hosts get `MADANG_EVENT_HANDS`. Only viewers raise a hand (others get a
// `MADANG_EVENT_ERROR` "permission_denied").
//
// Errors: NULL, `MADANG_RESULT_NOT_CONNECTED`, `MADANG_RESULT_CLOSED`.
//
// # Safety
// `client` must come from `madang_client_new`.
madang_result madang_client_raise_hand(madang_client *client, bool raised);

// Host only: sends `identity`'s raised hand back (it gets `MADANG_EVENT_HAND_LOWERED`).
// The server refuses it from anyone but a host (`MADANG_EVENT_ERROR` "permission_denied")
// and for someone not in the room ("unknown_participant").
//
// Errors: NULL, invalid UTF-8, `MADANG_RESULT_NOT_CONNECTED`, `MADANG_RESULT_CLOSED`.
//
// # Safety
// `client` must come from `madang_client_new`; `identity` NUL-terminated.
madang_result madang_client_lower_hand(madang_client *client, const char *identity);

// Host only: lets viewer `identity` in as a speaker (everyone gets
// `MADANG_EVENT_ROLE_CHANGED`; a madang client then publishes). Refused as
// `madang_client_lower_hand` is.
//
// Errors: NULL, invalid UTF-8, `MADANG_RESULT_NOT_CONNECTED`, `MADANG_RESULT_CLOSED`.
//
// # Safety
// `client` must come from `madang_client_new`; `identity` NUL-terminated.
madang_result madang_client_promote(madang_client *client, const char *identity);

// Host only: makes speaker `identity` a viewer again; its tracks end for everyone.
//
// Errors: NULL, invalid UTF-8, `MADANG_RESULT_NOT_CONNECTED`, `MADANG_RESULT_CLOSED`.
//
// # Safety
// `client` must come from `madang_client_new`; `identity` NUL-terminated.
madang_result madang_client_demote(madang_client *client, const char *identity);

// Host only: mutes `identity`'s microphone for everyone (`MADANG_EVENT_TRACK_MUTED`, to
// it too; it may unmute itself).
//
// Errors: NULL, invalid UTF-8, `MADANG_RESULT_NOT_CONNECTED`, `MADANG_RESULT_CLOSED`.
//
// # Safety
// `client` must come from `madang_client_new`; `identity` NUL-terminated.
madang_result madang_client_mute_participant(madang_client *client, const char *identity);

// Host only: starts (`on` true) or stops recording the room, on a server that records
// (`madang serve --record DIR`); everyone gets `MADANG_EVENT_RECORDING`. The server
// refuses it from anyone but a host, and where it does not record (`MADANG_EVENT_ERROR`
// "permission_denied").
//
// Errors: NULL, `MADANG_RESULT_NOT_CONNECTED`, `MADANG_RESULT_CLOSED`.
//
// # Safety
// `client` must come from `madang_client_new`.
madang_result madang_client_record(madang_client *client, bool on);

// Host only: removes `identity` from the room (hosts cannot be removed).
//
// Errors: NULL, invalid UTF-8, `MADANG_RESULT_NOT_CONNECTED`, `MADANG_RESULT_CLOSED`.
//
// # Safety
// `client` must come from `madang_client_new`; `identity` NUL-terminated.
madang_result madang_client_remove_participant(madang_client *client, const char *identity);

// Changes the arrangement of the composited grid (a `madang_layout_mode`). Grid receive mode
// only.
//
// Errors: `MADANG_RESULT_INVALID_ARGUMENT` for an unknown mode or a client receiving
// per-participant frames; `MADANG_RESULT_NOT_CONNECTED`, `MADANG_RESULT_CLOSED`.
//
// # Safety
// `client` must come from `madang_client_new`.
madang_result madang_client_set_layout(madang_client *client, uint32_t mode);

// Changes the size of the composited grid (even, 16..=8192). Grid receive mode only. The
// previous event's picture is released.
//
// Errors: `MADANG_RESULT_INVALID_ARGUMENT` for a bad size or a client receiving
// per-participant frames; `MADANG_RESULT_NOT_CONNECTED`, `MADANG_RESULT_CLOSED`.
//
// # Safety
// `client` must come from `madang_client_new`.
madang_result madang_client_set_viewport(madang_client *client, uint32_t width, uint32_t height);

// Waits up to `timeout_ms` for the next event and writes it to `out_event`. Everything the
// event points to (strings, planes, samples) stays valid until the next call on this client.
// Call it on the thread that owns the client; madang never calls back into C.
//
// Errors: `MADANG_RESULT_TIMEOUT` when nothing happened; `MADANG_RESULT_CLOSED` after the
// session ended (`DISCONNECTED` was returned, or the client left);
// `MADANG_RESULT_NOT_CONNECTED`.
//
// # Safety
// `client` must come from `madang_client_new`; `out_event` must be writable.
madang_result madang_client_poll_event(madang_client *client,
                                       madang_event *out_event,
                                       uint32_t timeout_ms);

// Leaves the room: tells the server and closes the connections. Afterwards polls return
// `MADANG_RESULT_CLOSED`. Leaving twice, or before connecting, is not an error.
//
// # Safety
// `client` must come from `madang_client_new`.
madang_result madang_client_leave(madang_client *client);

// Leaves the room if still in it, stops the client's threads and frees it. NULL is a no-op.
//
// # Safety
// `client` must be NULL or come from `madang_client_new`, and not be used afterwards.
void madang_client_free(madang_client *client);

// Creates a client configuration for the server at `url` (e.g. "ws://127.0.0.1:8080/signal")
// with a `token` from the server (or its token service). Defaults: no publishing, per-
// participant frames, stats every second. Free it with `madang_client_config_free`.
//
// Errors: NULL arguments, invalid UTF-8, `MADANG_RESULT_INVALID_ARGUMENT` for a URL that
// does not start with ws:// or wss:// or an empty token.
//
// # Safety
// `url` and `token` must be NUL-terminated; `out_config` writable.
madang_result madang_client_config_new(const char *url,
                                       const char *token,
                                       madang_client_config **out_config);

// Trusts the certificates in the PEM file at `path` for a `wss://` server, besides the
// web's public roots: a self-signed certificate or a city's own CA. NULL trusts the public
// roots only again.
//
// Errors: `MADANG_RESULT_IO` when the file cannot be read, `MADANG_RESULT_INVALID_ARGUMENT`
// when it holds no PEM certificate.
//
// # Safety
// `config` must come from `madang_client_config_new`; `path` must be NULL or
// NUL-terminated.
madang_result madang_client_config_set_trusted_certificates(madang_client_config *config,
                                                            const char *path);

// Sets the display name the others see instead of the token's (1 to 64 characters).
//
// Errors: NULL, invalid UTF-8, `MADANG_RESULT_INVALID_ARGUMENT` for an empty or too long name.
//
// # Safety
// `config` must come from `madang_client_config_new`; `name` must be NUL-terminated.
madang_result madang_client_config_set_name(madang_client_config *config, const char *name);

// Publishes a camera track of `width`×`height` (even, 16..=8192) at `fps` (1..=60) and
// `bitrate_kbps` H.264 (0 picks one for the size; else 50..=20000). Frames are then pushed
// with `madang_client_push_video_frame`.
//
// Errors: `MADANG_RESULT_INVALID_ARGUMENT` for values out of range.
//
// # Safety
// `config` must come from `madang_client_config_new`.
madang_result madang_client_config_set_video(madang_client_config *config,
                                             uint32_t width,
                                             uint32_t height,
                                             uint32_t fps,
                                             uint32_t bitrate_kbps);

// Sends the camera set with `madang_client_config_set_video` as simulcast (`enabled`
// true): the full size and halves of it while at least 240 wide (at most three layers, the
// bitrate given being the full size's), each its own stream, so that the server sends each
// receiver the size its link and its tile take. Off by default. Frames are pushed at the
// full size as before; madang scales them.
//
// Errors: `MADANG_RESULT_INVALID_ARGUMENT` before `madang_client_config_set_video`.
//
// # Safety
// `config` must come from `madang_client_config_new`.
madang_result madang_client_config_set_simulcast(madang_client_config *config, bool enabled);

// Publishes a microphone track (`enabled` true) or not. Audio is pushed with
// `madang_client_push_audio_frame` and sent as Opus.
//
// # Safety
// `config` must come from `madang_client_config_new`.
madang_result madang_client_config_set_audio(madang_client_config *config, bool enabled);

// Receives each participant's pictures as `MADANG_EVENT_VIDEO_FRAME` (the default).
//
// # Safety
// `config` must come from `madang_client_config_new`.
madang_result madang_client_config_receive_frames(madang_client_config *config);

// Receives the room as one composited picture of `width`×`height` (even, 16..=8192) in
// `mode` (a `madang_layout_mode`), as `MADANG_EVENT_GRID_FRAME` at `fps` (1..=60) instead of
// per-participant pictures. The client tells the server the size of each tile as the grid
// changes (the protocol's `layout`): a simulcast publisher is forwarded at no larger a
// layer than its tile needs, one not on the grid not at all.
//
// Errors: `MADANG_RESULT_INVALID_ARGUMENT` for values out of range or an unknown mode.
//
// # Safety
// `config` must come from `madang_client_config_new`.
madang_result madang_client_config_receive_grid(madang_client_config *config,
                                                uint32_t width,
                                                uint32_t height,
                                                uint32_t mode,
                                                uint32_t fps);

// Sets how often `MADANG_EVENT_STATS` comes, in ms (0 turns it off; default 1000).
//
// # Safety
// `config` must come from `madang_client_config_new`.
madang_result madang_client_config_set_stats_interval(madang_client_config *config,
                                                      uint32_t interval_ms);

// Frees a client configuration. NULL is a no-op.
//
// # Safety
// `config` must be NULL or come from `madang_client_config_new`, and not be used afterwards.
void madang_client_config_free(madang_client_config *config);

// Sets how much madang logs (`MADANG_LOG_OFF` … `MADANG_LOG_TRACE`). Lines then wait in a
// queue of 1024 (the oldest are dropped first) until read with `madang_log_pop`. Any thread.
//
// Errors: `MADANG_RESULT_INVALID_ARGUMENT` for an unknown level; `MADANG_RESULT_IO` when the
// process already has another log sink installed.
madang_result madang_log_set_level(uint32_t level);

// Takes the oldest waiting log line: copies it NUL-terminated into `buf` (`len` bytes), its
// length to `out_len` and its level to `out_level`. Lines dropped because nobody read them
// are reported as one line saying how many. Any thread; never blocks.
//
// Errors: `MADANG_RESULT_EMPTY` when no line waits; `MADANG_RESULT_BUFFER_TOO_SMALL` when the
// line does not fit (it stays queued; 1024 bytes always suffice for the notice of dropped
// lines, most lines are shorter than 512).
//
// # Safety
// `buf` must have `len` writable bytes; `out_len` and `out_level` must be writable.
madang_result madang_log_pop(madang_log_level *out_level, char *buf, size_t len, size_t *out_len);

// Creates a server configuration: loopback, any free ports, no token secret. Before
// `madang_server_start`, set a secret (`madang_server_config_set_secret`) or, for local
// testing only, ask for development mode (`madang_server_config_set_dev`); otherwise the
// start fails with `MADANG_RESULT_NO_SECRET`. Free it with `madang_server_config_free`.
//
// # Safety
// `out_config` must point to a writable pointer.
madang_result madang_server_config_new(madang_server_config **out_config);

// Sets the HTTP/WebSocket and UDP addresses, e.g. "127.0.0.1:8080" and "127.0.0.1:7880"
// (port 0 picks a free one).
//
// # Safety
// `config` must come from `madang_server_config_new`; the strings must be NUL-terminated.
madang_result madang_server_config_set_addresses(madang_server_config *config,
                                                 const char *http,
                                                 const char *udp);

// Sets the address announced to clients as the media address (with the UDP port), e.g.
// "203.0.113.7": needed when the UDP address is 0.0.0.0, and behind a 1:1 NAT (bind the
// private address, announce the public one). NULL goes back to announcing the bound address.
//
// Errors: `MADANG_RESULT_INVALID_ADDRESS` for a string that is not an IP address.
//
// # Safety
// `config` must come from `madang_server_config_new`; `ip` must be NULL or NUL-terminated.
madang_result madang_server_config_set_advertise_ip(madang_server_config *config, const char *ip);

// Makes `room` a broadcast room (call once per room): only hosts publish at first; a
// token's speaker joins as a viewer, raises its hand and publishes once a host promotes it
// (`madang_client_promote`).
//
// Errors: NULL, invalid UTF-8, `MADANG_RESULT_INVALID_ARGUMENT` for an empty name.
//
// # Safety
// `config` must come from `madang_server_config_new`; `room` NUL-terminated.
madang_result madang_server_config_add_broadcast_room(madang_server_config *config,
                                                      const char *room);

// Records rooms into the directory `dir` (created at the start if needed; the start fails
// with `MADANG_RESULT_PERMISSION_DENIED` or `MADANG_RESULT_IO` when it cannot be written):
// one fragmented MP4 per participant under a directory per room, as `madang serve
// --record`. Every room from its start, unless `madang_server_config_add_record_room`
// names some; hosts start and stop recording any room (`madang_client_record`).
//
// Errors: NULL, invalid UTF-8, `MADANG_RESULT_INVALID_ARGUMENT` for an empty path.
//
// # Safety
// `config` must come from `madang_server_config_new`; `dir` NUL-terminated.
madang_result madang_server_config_set_record(madang_server_config *config, const char *dir);

// Records `room` from its start (call once per room), and no other room unless a host asks.
// Needs `madang_server_config_set_record` first (else `MADANG_RESULT_INVALID_ARGUMENT`).
//
// Errors: NULL, invalid UTF-8, `MADANG_RESULT_INVALID_ARGUMENT` for an empty name.
//
// # Safety
// `config` must come from `madang_server_config_new`; `room` NUL-terminated.
madang_result madang_server_config_add_record_room(madang_server_config *config, const char *room);

// Sets the token secret and turns development mode off (no token endpoint).
//
// # Safety
// `config` must come from `madang_server_config_new`; `secret` must be NUL-terminated.
madang_result madang_server_config_set_secret(madang_server_config *config, const char *secret);

// Serves HTTP and the signal WebSocket over TLS (`https://`, `wss://`) with the
// certificate chain and private key in the PEM files `cert_path` and `key_path`; the signal
// URL then starts with `wss://`. NULL for both turns TLS off again.
//
// Errors: `MADANG_RESULT_IO` when a file cannot be read (an unusable certificate or key
// fails `madang_server_start` with `MADANG_RESULT_INVALID_ARGUMENT`).
//
// # Safety
// `config` must come from `madang_server_config_new`; the paths must be NULL or
// NUL-terminated.
madang_result madang_server_config_set_tls(madang_server_config *config,
                                           const char *cert_path,
                                           const char *key_path);

// Development mode on (`dev` non-zero) or off: on, the server signs tokens with the public
// development secret unless a secret was set, and serves `/dev/token`, which mints tokens
// for anyone — local testing only. Setting a secret afterwards turns it off.
//
// # Safety
// `config` must come from `madang_server_config_new`.
madang_result madang_server_config_set_dev(madang_server_config *config, int32_t dev);

// Frees a configuration. NULL is a no-op.
//
// # Safety
// `config` must be NULL or come from `madang_server_config_new`, and not be used afterwards.
void madang_server_config_free(madang_server_config *config);

// Starts a room server with `config` (which stays owned by the caller) on threads of its
// own. On success writes the server to `out_server`; stop and free it with
// `madang_server_free`.
//
// # Safety
// `config` must come from `madang_server_config_new`; `out_server` must be writable.
madang_result madang_server_start(const madang_server_config *config, madang_server **out_server);

// Writes the server's WebSocket URL (NUL-terminated) into `buf` of `len` bytes and its length
// to `out_len`.
//
// # Safety
// `server` must be live; `buf` must have `len` writable bytes; `out_len` must be writable.
madang_result madang_server_signal_url(const madang_server *server,
                                       char *buf,
                                       size_t len,
                                       size_t *out_len);

// Mints a token for `room` signed with the server's secret, valid `ttl_seconds`. `role` is
// "host", "speaker" or "viewer". Writes it NUL-terminated to `buf` and its length to `out_len`.
//
// # Safety
// `server` must be live; strings NUL-terminated; `buf` with `len` writable bytes.
madang_result madang_server_token(const madang_server *server,
                                  const char *room,
                                  const char *identity,
                                  const char *name,
                                  const char *role,
                                  uint32_t ttl_seconds,
                                  char *buf,
                                  size_t len,
                                  size_t *out_len);

// Number of participants currently joined, written to `out_count`.
//
// # Safety
// `server` must be live; `out_count` writable.
madang_result madang_server_participants(const madang_server *server, uint32_t *out_count);

// Stops the server (participants are told it shuts down), joins its threads and frees it.
// NULL is a no-op.
//
// # Safety
// `server` must be NULL or come from `madang_server_start`, and not be used afterwards.
void madang_server_free(madang_server *server);

#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus

#endif  /* MADANG_H */
