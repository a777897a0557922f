/*
 * madang.h — C ABI of madang, the embeddable real-time media library.
 *
 * Conventions:
 *   - Every function starts with madang_; handles are opaque and created by *_new or
 *     *_start, released by *_free. Passing NULL to *_free does nothing.
 *   - Functions that can fail return madang_result; out-parameters are written only when the
 *     result is MADANG_RESULT_OK.
 *   - Strings in are NUL-terminated UTF-8, borrowed for the call. Strings out are copied into
 *     a caller buffer with its length; when it is too small the call returns
 *     MADANG_RESULT_BUFFER_TOO_SMALL and writes nothing.
 *   - A handle may move between threads but must not be used by two threads at once.
 *   - madang never lets a Rust panic cross into C: it becomes MADANG_RESULT_PANIC.
 *
 * Link: -lmadang_ffi (static: add -lstdc++ -lpthread -ldl -lm).
 */
#ifndef MADANG_H
#define MADANG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Outcome of a call. The numbers are stable; new codes are only ever added. */
typedef enum madang_result {
  MADANG_RESULT_OK = 0,
  MADANG_RESULT_NULL_ARGUMENT = 1,   /* a required pointer argument was NULL */
  MADANG_RESULT_INVALID_UTF8 = 2,    /* a string argument was not UTF-8 */
  MADANG_RESULT_BUFFER_TOO_SMALL = 3,/* output buffer too small; nothing written */
  MADANG_RESULT_INVALID_ADDRESS = 4, /* an address is not "ip:port" */
  MADANG_RESULT_INVALID_ARGUMENT = 5,/* out of range or not an accepted value */
  MADANG_RESULT_IO = 6,              /* the OS refused (threads, sockets) */
  MADANG_RESULT_ADDRESS_IN_USE = 7,  /* a listening address is taken or unavailable */
  MADANG_RESULT_PANIC = 8            /* internal error caught at the boundary; a bug */
} madang_result;

/* Settings for an embedded room server. */
typedef struct madang_server_config madang_server_config;

/* A running embedded room server with threads of its own. */
typedef struct madang_server madang_server;

/* Library version, static and NUL-terminated; never NULL. */
const char *madang_version(void);

/* Static NUL-terminated description of a result code; never NULL. */
const char *madang_result_message(madang_result result);

/* New configuration: loopback, free ports, development mode (fixed secret, token endpoint). */
madang_result madang_server_config_new(madang_server_config **out_config);

/* HTTP/WebSocket and UDP listening addresses, e.g. "127.0.0.1:8080", "127.0.0.1:7880".
 * Port 0 picks a free port. */
madang_result madang_server_config_set_addresses(madang_server_config *config,
                                                 const char *http,
                                                 const char *udp);

/* Token secret (non-empty); turns development mode off. */
madang_result madang_server_config_set_secret(madang_server_config *config,
                                              const char *secret);

/* Frees a configuration; NULL is a no-op. */
void madang_server_config_free(madang_server_config *config);

/* Starts a server; config stays owned by the caller and may be freed right after. */
madang_result madang_server_start(const madang_server_config *config,
                                  madang_server **out_server);

/* The WebSocket signalling URL, NUL-terminated in buf; its length (without NUL) in out_len. */
madang_result madang_server_signal_url(const madang_server *server,
                                       char *buf,
                                       size_t len,
                                       size_t *out_len);

/* Mints a join token for room. role is "host", "speaker" or "viewer"; ttl_seconds > 0. */
madang_result madang_server_token(const madang_server *server,
                                  const char *room,
                                  const char *identity,
                                  const char *name,
                                  const char *role,
                                  uint32_t ttl_seconds,
                                  char *buf,
                                  size_t len,
                                  size_t *out_len);

/* Number of participants currently joined. */
madang_result madang_server_participants(const madang_server *server, uint32_t *out_count);

/* Stops the server (participants are told), joins its threads and frees it; NULL is a no-op. */
void madang_server_free(madang_server *server);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MADANG_H */
