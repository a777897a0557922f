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
 *   - Threads: a handle may move between threads but must not be used by two at once. madang
 *     never calls into C from a thread C did not start.
 *   - A Rust panic never crosses into C: it becomes MADANG_RESULT_PANIC.
 *
 * Link: -lmadang_ffi (static: add -lstdc++ -lpthread -ldl -lm).
 */

#ifndef MADANG_H
#define MADANG_H

#include <stddef.h>
#include <stdint.h>

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
};
#ifndef __cplusplus
#if __STDC_VERSION__ >= 202311L
typedef enum madang_result madang_result;
#else
typedef uint32_t madang_result;
#endif // __STDC_VERSION__ >= 202311L
#endif // __cplusplus

// An embedded room server with its own threads.
typedef struct madang_server madang_server;

// Settings for an embedded room server (loopback and development defaults).
typedef struct madang_server_config madang_server_config;

#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

// The library version as a NUL-terminated string with static lifetime; never NULL.
const char *madang_version(void);

// A human-readable, NUL-terminated, static description of a result code; never NULL.
const char *madang_result_message(madang_result result);

// Creates a server configuration: loopback, any free ports, development mode (a fixed
// secret and a token endpoint). Free it with `madang_server_config_free`.
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

// Sets the token secret and turns development mode off (no token endpoint).
//
// # Safety
// `config` must come from `madang_server_config_new`; `secret` must be NUL-terminated.
madang_result madang_server_config_set_secret(madang_server_config *config, const char *secret);

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
