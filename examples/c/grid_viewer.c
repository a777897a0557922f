/*
 * Watches a madang room as one composited picture (the grid madang lays out and draws) and
 * writes it to a Y4M file any player or ffmpeg reads. Publishes nothing.
 *
 *   grid_viewer URL TOKEN OUT.y4m [SECONDS [WIDTH HEIGHT [FPS]]]
 *   grid_viewer ws://127.0.0.1:8080/signal "$TOKEN" room.y4m 10 1280 720 15
 *   ffplay room.y4m
 *
 * Output: "joined <room> as <identity>", one "participant ..." line per person, and at the
 * end "wrote <n> frames <w>x<h> to <file>".
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "madang.h"

static int check(madang_result r, const char *what) {
  if (r != MADANG_RESULT_OK) {
    fprintf(stderr, "%s: %s (%d)\n", what, madang_result_message(r), (int)r);
    return 0;
  }
  return 1;
}

/* Writes `rows` rows of `width` bytes from a plane with `stride` bytes per row. */
static int write_plane(FILE *out, const uint8_t *plane, uint32_t width, uint32_t rows,
                       uint32_t stride) {
  for (uint32_t r = 0; r < rows; r++)
    if (fwrite(plane + (size_t)r * stride, 1, width, out) != width) return 0;
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s URL TOKEN OUT.y4m [SECONDS [WIDTH HEIGHT [FPS]]]\n", argv[0]);
    return 2;
  }
  const char *url = argv[1], *token = argv[2], *path = argv[3];
  double seconds = argc > 4 ? atof(argv[4]) : 10.0;
  uint32_t width = argc > 6 ? (uint32_t)atoi(argv[5]) : 640;
  uint32_t height = argc > 6 ? (uint32_t)atoi(argv[6]) : 360;
  uint32_t fps = argc > 7 ? (uint32_t)atoi(argv[7]) : 15;

  madang_client_config *config = NULL;
  madang_client *client = NULL;
  if (!check(madang_client_config_new(url, token, &config), "config")) return 1;
  int ok = check(madang_client_config_receive_grid(config, width, height,
                                                   MADANG_LAYOUT_GALLERY, fps),
                 "grid") &&
           check(madang_client_config_set_stats_interval(config, 0), "stats") &&
           check(madang_client_new(config, &client), "client");
  madang_client_config_free(config);
  if (!ok) return 1;
  if (!check(madang_client_connect(client), "connect")) {
    madang_client_free(client);
    return 1;
  }
  FILE *out = fopen(path, "wb");
  if (out == NULL) {
    perror(path);
    madang_client_free(client);
    return 1;
  }
  fprintf(out, "YUV4MPEG2 W%u H%u F%u:1 Ip A1:1 C420jpeg\n", width, height, fps);

  unsigned long frames = 0, wanted = (unsigned long)(seconds * fps);
  int disconnected = 0;
  while (ok && !disconnected && frames < wanted) {
    madang_event ev;
    madang_result r = madang_client_poll_event(client, &ev, 1000);
    if (r == MADANG_RESULT_TIMEOUT) continue;
    if (!check(r, "poll")) break;
    switch (ev.kind) {
      case MADANG_EVENT_JOINED:
        printf("joined %s as %s\n", ev.text, ev.participant);
        break;
      case MADANG_EVENT_PARTICIPANT_JOINED:
        printf("participant %s \"%s\"\n", ev.participant, ev.name);
        break;
      case MADANG_EVENT_GRID_FRAME: {
        const madang_video_frame *f = &ev.video;
        ok = fputs("FRAME\n", out) >= 0 &&
             write_plane(out, f->y, f->width, f->height, f->stride_y) &&
             write_plane(out, f->u, f->width / 2, f->height / 2, f->stride_u) &&
             write_plane(out, f->v, f->width / 2, f->height / 2, f->stride_v);
        frames++;
        break;
      }
      case MADANG_EVENT_DISCONNECTED:
        printf("disconnected\n");
        disconnected = 1;
        break;
      default:
        break;
    }
  }
  if (fclose(out) != 0) ok = 0;
  check(madang_client_leave(client), "leave");
  madang_client_free(client);
  printf("wrote %lu frames %ux%u to %s\n", frames, width, height, path);
  return ok && !disconnected ? 0 : 1;
}
