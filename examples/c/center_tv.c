/*
 * A senior center's box on the city's class: shows the class full screen (the host large,
 * centers talking back beside it, composited by madang), raises its hand when someone
 * presses the button, and puts the center's camera on air when the host lets it in.
 *
 *   center_tv URL TOKEN [SECONDS]
 *   center_tv ws://127.0.0.1:8080/signal "$(madang token --room class --identity center-017 \
 *       --role viewer)" 600
 *
 * The button: a line on standard input ("h" raises the hand, "l" lowers it, "q" quits), or
 * SIGUSR1 (a box wires its button to that). The camera here is a moving test picture; a real
 * box pushes what its capture device gives.
 *
 * Output, one line each: "joined <room> as <identity>", "hand raised", "hand lowered",
 * "on air" (promoted), "off air" (sent back), "removed"; at the end
 * "class frames=<n> camera frames=<m>" and "left cleanly".
 */
#define _POSIX_C_SOURCE 200809L
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "madang.h"

#define CAMERA_W 320
#define CAMERA_H 180
#define CAMERA_FPS 15
#define SCREEN_W 640
#define SCREEN_H 360
#define SCREEN_FPS 10

static volatile sig_atomic_t button_pressed = 0;

static void on_button(int sig) {
  (void)sig;
  button_pressed = 1;
}

static int check(madang_result r, const char *what) {
  if (r != MADANG_RESULT_OK) {
    fprintf(stderr, "%s: %s (%d)\n", what, madang_result_message(r), (int)r);
    return 0;
  }
  return 1;
}

static double now_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* What the button asked for since the last look: 'h', 'l', 'q' or 0. */
static int button(void) {
  if (button_pressed) {
    button_pressed = 0;
    return 'h';
  }
  struct pollfd in = {.fd = STDIN_FILENO, .events = POLLIN};
  if (poll(&in, 1, 0) <= 0 || !(in.revents & POLLIN)) return 0;
  char line[64];
  if (fgets(line, sizeof line, stdin) == NULL) return 0;
  return line[0] == 'h' || line[0] == 'l' || line[0] == 'q' ? line[0] : 0;
}

/* The test camera: a gradient that moves one pixel a frame, and grey chroma. */
static void draw_camera(uint8_t *y, uint8_t *u, uint8_t *v, unsigned long n) {
  for (int row = 0; row < CAMERA_H; row++)
    for (int col = 0; col < CAMERA_W; col++)
      y[row * CAMERA_W + col] = (uint8_t)((col + row + n) & 0xff);
  memset(u, 128, (CAMERA_W / 2) * (CAMERA_H / 2));
  memset(v, 128, (CAMERA_W / 2) * (CAMERA_H / 2));
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s URL TOKEN [SECONDS]\n", argv[0]);
    return 2;
  }
  const char *url = argv[1], *token = argv[2];
  double seconds = argc > 3 ? atof(argv[3]) : 30.0;
  struct sigaction button_action;
  memset(&button_action, 0, sizeof button_action);
  button_action.sa_handler = on_button;
  sigaction(SIGUSR1, &button_action, NULL);

  madang_client_config *config = NULL;
  madang_client *client = NULL;
  if (!check(madang_client_config_new(url, token, &config), "config")) return 1;
  /* The camera is ready for when the host lets the center in; a viewer publishes nothing. */
  int ok = check(madang_client_config_set_video(config, CAMERA_W, CAMERA_H, CAMERA_FPS, 0),
                 "video") &&
           check(madang_client_config_set_audio(config, 0), "audio") &&
           check(madang_client_config_receive_grid(config, SCREEN_W, SCREEN_H,
                                                   MADANG_LAYOUT_BROADCAST, SCREEN_FPS),
                 "grid") &&
           check(madang_client_config_set_stats_interval(config, 0), "stats") &&
           check(madang_client_new(config, &client), "client");
  madang_client_config_free(config);
  if (!ok) return 1;
  if (!check(madang_client_connect(client), "connect")) {
    madang_client_free(client);
    return 1;
  }

  static uint8_t y[CAMERA_W * CAMERA_H], u[CAMERA_W * CAMERA_H / 4], v[CAMERA_W * CAMERA_H / 4];
  char me[256] = "";
  unsigned long class_frames = 0, camera_frames = 0;
  int on_air = 0, over = 0;
  double start = now_seconds(), next_camera = start;
  while (ok && !over && now_seconds() - start < seconds) {
    switch (button()) {
      case 'h':
        if (check(madang_client_raise_hand(client, 1), "raise hand")) printf("hand raised\n");
        break;
      case 'l':
        check(madang_client_raise_hand(client, 0), "lower hand");
        break;
      case 'q':
        over = 1;
        break;
      default:
        break;
    }
    if (on_air && now_seconds() >= next_camera) {
      draw_camera(y, u, v, camera_frames);
      madang_video_frame frame = {CAMERA_W, CAMERA_H, y, u, v, CAMERA_W, CAMERA_W / 2,
                                  CAMERA_W / 2, (int64_t)((now_seconds() - start) * 1e6)};
      if (check(madang_client_push_video_frame(client, &frame), "camera")) camera_frames++;
      next_camera += 1.0 / CAMERA_FPS;
      /* Behind (a busy box): skip the pictures missed rather than push them in a burst. */
      if (next_camera < now_seconds()) next_camera = now_seconds() + 1.0 / CAMERA_FPS;
    }
    /* Every event that is waiting, before the next picture: one per picture fell behind on
     * a slow box (the class's grid pictures alone come 10 a second), and being sent back
     * came seconds late. */
    for (int waited = 0;; waited = 1) {
      madang_event ev;
      madang_result r = madang_client_poll_event(client, &ev, waited ? 0 : 10);
      if (r == MADANG_RESULT_TIMEOUT) break;
      if (!check(r, "poll")) {
        ok = 0;
        break;
      }
      switch (ev.kind) {
        case MADANG_EVENT_JOINED:
          snprintf(me, sizeof me, "%s", ev.participant);
          printf("joined %s as %s\n", ev.text, ev.participant);
          break;
        case MADANG_EVENT_GRID_FRAME:
          /* A real box draws ev.video on its screen here. */
          class_frames++;
          break;
        case MADANG_EVENT_HAND_LOWERED:
          printf("hand lowered\n");
          break;
        case MADANG_EVENT_ROLE_CHANGED:
          if (strcmp(ev.participant, me) == 0) {
            on_air = strcmp(ev.text, "viewer") != 0;
            next_camera = now_seconds();
            printf("%s\n", on_air ? "on air" : "off air");
          }
          break;
        case MADANG_EVENT_ERROR:
          if (strcmp(ev.text, "removed") == 0) printf("removed\n");
          else fprintf(stderr, "server: %s: %s\n", ev.text, ev.topic);
          break;
        case MADANG_EVENT_DISCONNECTED:
          over = 1;
          break;
        default:
          break;
      }
    }
    fflush(stdout);
  }
  printf("class frames=%lu camera frames=%lu\n", class_frames, camera_frames);
  if (check(madang_client_leave(client), "leave")) printf("left cleanly\n");
  madang_client_free(client);
  return ok ? 0 : 1;
}
