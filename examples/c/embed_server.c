/*
 * Embeds a madang room server in a C program: start it on loopback with the token secret in
 * MADANG_SECRET (development mode without one), recording the room named on the command line
 * into MADANG_RECORD_DIR when that is set, print its signalling URL and a viewer token, then
 * stop it. Every call's result is checked.
 *
 *   cc -std=c11 -Wall -Wextra -I ffi/include examples/c/embed_server.c \
 *      -L target/release -lmadang_ffi -lstdc++ -lpthread -ldl -lm -o embed_server
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "madang.h"

static int check(madang_result r, const char *what) {
  if (r != MADANG_RESULT_OK) {
    fprintf(stderr, "%s: %s (%d)\n", what, madang_result_message(r), (int)r);
    return 0;
  }
  return 1;
}

int main(int argc, char **argv) {
  const char *room = argc > 1 ? argv[1] : "disaster-room";
  madang_server_config *config = NULL;
  madang_server *server = NULL;
  char url[256];
  char token[1024];
  char tiny[4];
  size_t len = 0;
  uint32_t participants = 99;
  int ok = 1;

  printf("madang %s\n", madang_version());
  if (!check(madang_server_config_new(&config), "config")) return 1;

  /* A bad address is refused with its own code. */
  if (madang_server_config_set_addresses(config, "nowhere", "127.0.0.1:0") !=
      MADANG_RESULT_INVALID_ADDRESS) {
    fprintf(stderr, "bad address was accepted\n");
    ok = 0;
  }
  ok = ok && check(madang_server_config_set_addresses(config, "127.0.0.1:0", "127.0.0.1:0"),
                   "addresses");
  /* Without a token secret the server does not start. */
  if (ok && madang_server_start(config, &server) != MADANG_RESULT_NO_SECRET) {
    fprintf(stderr, "a server without a secret started\n");
    ok = 0;
  }
  /* The secret from the environment; without one, development mode (its public secret and a
   * token endpoint anyone can use: local testing only). */
  if (ok && getenv("MADANG_SECRET") && *getenv("MADANG_SECRET")) {
    ok = check(madang_server_config_set_secret(config, getenv("MADANG_SECRET")), "secret");
  } else if (ok) {
    printf("no MADANG_SECRET: development mode\n");
    ok = check(madang_server_config_set_dev(config, 1), "dev mode");
  }
  /* Recording: only the room named, from its start (hosts may start it in others). */
  if (ok && getenv("MADANG_RECORD_DIR") && *getenv("MADANG_RECORD_DIR")) {
    if (madang_server_config_add_record_room(config, room) != MADANG_RESULT_INVALID_ARGUMENT) {
      fprintf(stderr, "a record room without a directory was accepted\n");
      ok = 0;
    }
    ok = ok && check(madang_server_config_set_record(config, getenv("MADANG_RECORD_DIR")),
                     "record") &&
         check(madang_server_config_add_record_room(config, room), "record room");
    if (ok) printf("recording %s into %s\n", room, getenv("MADANG_RECORD_DIR"));
  }
  ok = ok && check(madang_server_start(config, &server), "start");
  madang_server_config_free(config);
  if (!ok) return 1;

  ok = ok && check(madang_server_signal_url(server, url, sizeof url, &len), "signal url");
  if (ok) printf("signal %s (%zu bytes)\n", url, len);

  if (madang_server_signal_url(server, tiny, sizeof tiny, &len) !=
      MADANG_RESULT_BUFFER_TOO_SMALL) {
    fprintf(stderr, "a 4-byte buffer was accepted\n");
    ok = 0;
  }
  ok = ok && check(madang_server_token(server, room, "center-001", "Senior center 1", "viewer",
                                       3600, token, sizeof token, &len),
                   "token");
  if (ok) printf("token %zu bytes, %d dots\n", len,
                 (int)(strchr(token, '.') != NULL) + (int)(strrchr(token, '.') != strchr(token, '.')));
  if (madang_server_token(server, room, "x", "x", "mayor", 60, token, sizeof token, &len) !=
      MADANG_RESULT_INVALID_ARGUMENT) {
    fprintf(stderr, "unknown role was accepted\n");
    ok = 0;
  }
  ok = ok && check(madang_server_participants(server, &participants), "participants");
  if (ok) printf("participants %u\n", participants);

  madang_server_free(server);
  madang_server_free(NULL);
  printf(ok ? "stopped cleanly\n" : "failed\n");
  return ok ? 0 : 1;
}
