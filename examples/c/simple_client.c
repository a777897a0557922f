/*
 * Joins a madang room from C: publishes a moving pattern drawn here and a tone, says hello on
 * the data channel, counts the pictures it receives from each participant, prints stats, and
 * leaves after N seconds.
 *
 *   simple_client URL TOKEN [SECONDS [WIDTH HEIGHT [FPS [MOVE_AFTER LOCAL_IP]]]]
 *   simple_client ws://127.0.0.1:8080/signal "$(madang token --room hall --identity c1)" 10
 *
 * With MOVE_AFTER and LOCAL_IP, the client acts out a change of network (a phone from LTE to
 * Wi-Fi) MOVE_AFTER seconds in: it tells madang its new local address, and both connections
 * restart ICE from there while the call goes on. With MADANG_RECORD=1 in the environment and a
 * host's token, it asks the server to record the room (`madang serve --record DIR`).
 *
 * Output (one line per fact, for people and scripts):
 *   joined <room> as <identity>
 *   participant <identity> "<name>"
 *   data <from> <topic> <payload>
 *   stats sent=<frames> keyframes=<n> rtt_ms=<ms> decoded=<n> lost=<n> kbps=<n> early=<n>
 *         freezes=<n> freeze_ms=<ms> nacks=<n> recovered=<n> concealed_ms=<ms>
 *         uplink_kbps=<n> video_target_kbps=<n>
 *     (early: pushed before the connection was up, dropped; recovered: packets repaired by
 *     retransmission; uplink: the congestion-control estimate the encoder follows)
 *   track <id> video|audio decoded=<n> lost=<n> freezes=<n> recovered=<n>
 *         keyframe_requests=<n> delay_ms=<ms>   (one per remote track, after each stats line)
 *   network changed to <ip>
 *   recording started|stopped [by <identity>]   (the room's recording; also at join)
 *   signal lost: reconnecting / signal back   (the WebSocket dropped; the call went on)
 *   received <identity> frames=<n> size=<w>x<h> longest_gap_ms=<ms>
 *   left cleanly
 */
#define _POSIX_C_SOURCE 199309L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "madang.h"

#define MAX_PEERS 64

struct peer {
  char identity[128];
  unsigned long frames;
  uint32_t width, height;
  int64_t last_us, longest_gap_us; /* when the last picture came; the longest wait between two */
};

static struct peer peers[MAX_PEERS];
static int peer_count = 0;

static struct peer *peer(const char *identity) {
  for (int i = 0; i < peer_count; i++)
    if (strcmp(peers[i].identity, identity) == 0) return &peers[i];
  if (peer_count == MAX_PEERS) return NULL;
  struct peer *p = &peers[peer_count++];
  snprintf(p->identity, sizeof p->identity, "%s", identity);
  return p;
}

static int64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int check(madang_result r, const char *what) {
  if (r != MADANG_RESULT_OK) {
    fprintf(stderr, "%s: %s (%d)\n", what, madang_result_message(r), (int)r);
    return 0;
  }
  return 1;
}

/* A diagonal gradient scrolling right, a bright square bouncing, flat chroma bands. */
static void draw(uint8_t *y, uint8_t *u, uint8_t *v, uint32_t w, uint32_t h, uint32_t stride_y,
                 uint32_t stride_c, unsigned long n) {
  for (uint32_t r = 0; r < h; r++)
    for (uint32_t c = 0; c < w; c++) y[r * stride_y + c] = (uint8_t)(16 + ((r + c + n * 4) % 200));
  uint32_t side = h / 4, x0 = (uint32_t)(n * 6) % (w - side), y0 = (uint32_t)(n * 3) % (h - side);
  for (uint32_t r = y0; r < y0 + side; r++) memset(y + r * stride_y + x0, 235, side);
  for (uint32_t r = 0; r < h / 2; r++)
    for (uint32_t c = 0; c < w / 2; c++) {
      u[r * stride_c + c] = (uint8_t)(64 + (c * 128) / (w / 2));
      v[r * stride_c + c] = (uint8_t)(64 + (r * 128) / (h / 2));
    }
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s URL TOKEN [SECONDS [WIDTH HEIGHT [FPS [MOVE_AFTER LOCAL_IP]]]]\n",
            argv[0]);
    return 2;
  }
  const char *url = argv[1], *token = argv[2];
  double seconds = argc > 3 ? atof(argv[3]) : 10.0;
  uint32_t width = argc > 5 ? (uint32_t)atoi(argv[4]) : 320;
  uint32_t height = argc > 5 ? (uint32_t)atoi(argv[5]) : 180;
  uint32_t fps = argc > 6 ? (uint32_t)atoi(argv[6]) : 15;
  double move_after = argc > 8 ? atof(argv[7]) : -1.0;
  const char *move_to = argc > 8 ? argv[8] : NULL;

  printf("madang %s (header %s)\n", madang_version(), MADANG_VERSION_STRING);
  madang_log_set_level(MADANG_LOG_WARN);

  madang_client_config *config = NULL;
  madang_client *client = NULL;
  if (!check(madang_client_config_new(url, token, &config), "config")) return 1;
  int ok = check(madang_client_config_set_name(config, "C client"), "name") &&
           check(madang_client_config_set_video(config, width, height, fps, 0), "video") &&
           check(madang_client_config_set_audio(config, true), "audio") &&
           check(madang_client_new(config, &client), "client");
  madang_client_config_free(config);
  if (!ok) return 1;
  if (!check(madang_client_connect(client), "connect")) {
    madang_client_free(client);
    return 1;
  }

  /* Padded strides, as a camera would deliver them. */
  uint32_t stride_y = (width + 31) & ~31u, stride_c = ((width / 2) + 31) & ~31u;
  uint8_t *planes = malloc((size_t)stride_y * height + 2 * (size_t)stride_c * (height / 2));
  if (planes == NULL) return 1;
  madang_video_frame frame = {
      .width = width,
      .height = height,
      .y = planes,
      .u = planes + (size_t)stride_y * height,
      .v = planes + (size_t)stride_y * height + (size_t)stride_c * (height / 2),
      .stride_y = stride_y,
      .stride_u = stride_c,
      .stride_v = stride_c,
  };
  int16_t tone[960];

  int64_t start = now_us(), end = start + (int64_t)(seconds * 1e6);
  int64_t frame_period = 1000000 / fps, next_frame = start, next_audio = start;
  unsigned long drawn = 0, audio_blocks = 0;
  int said_hello = 0, disconnected = 0;
  int64_t move_at = move_to != NULL ? start + (int64_t)(move_after * 1e6) : -1;
  while (!disconnected && now_us() < end) {
    int64_t t = now_us();
    if (move_at >= 0 && t >= move_at) {
      /* A real application calls this when its platform reports a new network. */
      move_at = -1;
      if (!check(madang_client_network_changed(client, move_to), "network change")) break;
      printf("network changed to %s\n", move_to);
    }
    if (t >= next_frame) {
      draw((uint8_t *)frame.y, (uint8_t *)frame.u, (uint8_t *)frame.v, width, height, stride_y,
           stride_c, drawn++);
      frame.pts_us = t - start;
      if (!check(madang_client_push_video_frame(client, &frame), "push video")) break;
      next_frame += frame_period;
    }
    if (t >= next_audio) {
      for (int i = 0; i < 960; i++)
        tone[i] = (int16_t)(8000 * sin(2 * 3.14159265 * 440 * (audio_blocks * 960 + i) / 48000));
      if (!check(madang_client_push_audio_frame(client, tone, 960, 1, t - start), "push audio"))
        break;
      audio_blocks++;
      next_audio += 20000;
    }
    int64_t wait = (next_frame < next_audio ? next_frame : next_audio) - now_us();
    madang_event ev;
    madang_result r = madang_client_poll_event(client, &ev, wait > 0 ? (uint32_t)(wait / 1000) : 0);
    if (r == MADANG_RESULT_TIMEOUT) continue;
    if (!check(r, "poll")) break;
    struct peer *p;
    switch (ev.kind) {
      case MADANG_EVENT_JOINED:
        printf("joined %s as %s\n", ev.text, ev.participant);
        /* A host may have the server record the room (MADANG_RECORD=1 in the environment). */
        if (getenv("MADANG_RECORD") != NULL && !check(madang_client_record(client, true), "record"))
          disconnected = 1;
        break;
      case MADANG_EVENT_RECORDING:
        printf("recording %s%s%s\n", ev.text, ev.participant[0] ? " by " : "", ev.participant);
        break;
      case MADANG_EVENT_PARTICIPANT_JOINED:
        printf("participant %s \"%s\"\n", ev.participant, ev.name);
        if (!said_hello) {
          said_hello = check(madang_client_send_data(client, "chat", "hello from C"), "data");
        }
        break;
      case MADANG_EVENT_PARTICIPANT_LEFT:
        printf("left %s (%s)\n", ev.participant, ev.text);
        break;
      case MADANG_EVENT_VIDEO_FRAME:
        if ((p = peer(ev.participant)) != NULL) {
          int64_t at = now_us();
          if (p->frames > 0 && at - p->last_us > p->longest_gap_us) p->longest_gap_us = at - p->last_us;
          p->last_us = at;
          p->frames++;
          p->width = ev.video.width;
          p->height = ev.video.height;
        }
        break;
      case MADANG_EVENT_DATA:
        printf("data %s %s %s\n", ev.participant, ev.topic, ev.text);
        break;
      case MADANG_EVENT_VIDEO_PAUSED:
        /* The server's estimate of this link cannot carry that video: its audio goes on. */
        printf("video %s %s\n", ev.track, ev.paused ? "paused by the server" : "resumed");
        break;
      case MADANG_EVENT_STATS:
        printf("stats sent=%llu keyframes=%llu rtt_ms=%.1f decoded=%llu lost=%llu kbps=%.0f "
               "early=%llu freezes=%llu freeze_ms=%.0f nacks=%llu recovered=%llu "
               "concealed_ms=%.0f uplink_kbps=%.0f video_target_kbps=%.0f\n",
               (unsigned long long)ev.stats.video_frames_sent,
               (unsigned long long)ev.stats.keyframes_sent, ev.stats.rtt_ms,
               (unsigned long long)ev.stats.frames_decoded,
               (unsigned long long)ev.stats.frames_lost, ev.stats.receive_kbps,
               (unsigned long long)ev.stats.dropped_before_connected,
               (unsigned long long)ev.stats.freezes, ev.stats.freeze_ms,
               (unsigned long long)ev.stats.nacks_sent,
               (unsigned long long)ev.stats.packets_recovered, ev.stats.audio_concealed_ms,
               ev.stats.uplink_estimate_kbps, ev.stats.video_target_kbps);
        for (size_t i = 0; i < ev.track_count; i++) {
          const madang_track_stats *t = &ev.tracks[i];
          printf("track %s %s decoded=%llu lost=%llu freezes=%llu recovered=%llu "
                 "keyframe_requests=%llu delay_ms=%.0f\n",
                 t->track, t->video ? "video" : "audio", (unsigned long long)t->frames_decoded,
                 (unsigned long long)t->frames_lost, (unsigned long long)t->freezes,
                 (unsigned long long)t->packets_recovered,
                 (unsigned long long)t->keyframe_requests, t->buffer_delay_ms);
        }
        break;
      case MADANG_EVENT_ERROR:
        fprintf(stderr, "server error %s: %s\n", ev.text, ev.topic);
        break;
      case MADANG_EVENT_RECONNECTING:
        printf("signal lost: reconnecting\n");
        break;
      case MADANG_EVENT_RECONNECTED:
        printf("signal back\n");
        break;
      case MADANG_EVENT_DISCONNECTED:
        printf("disconnected\n");
        disconnected = 1;
        break;
      default:
        break;
    }
  }

  for (int i = 0; i < peer_count; i++)
    printf("received %s frames=%lu size=%ux%u longest_gap_ms=%lld\n", peers[i].identity,
           peers[i].frames, peers[i].width, peers[i].height,
           (long long)(peers[i].longest_gap_us / 1000));
  printf("sent frames=%lu audio=%lu\n", drawn, audio_blocks);

  /* Anything madang logged at warning level or worse. */
  char line[1024];
  size_t len;
  madang_log_level level;
  while (madang_log_pop(&level, line, sizeof line, &len) == MADANG_RESULT_OK)
    fprintf(stderr, "log %d: %s\n", (int)level, line);

  ok = check(madang_client_leave(client), "leave");
  madang_client_free(client);
  free(planes);
  if (ok && !disconnected) printf("left cleanly\n");
  return ok && !disconnected ? 0 : 1;
}
