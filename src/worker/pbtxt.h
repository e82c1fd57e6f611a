/* The C side of the config.pbtxt shim (pbtxt.cc): libprotobuf's TextFormat
 * parses Triton's ModelConfig text and hands back its binary encoding, which
 * model_config.c decodes with protobuf-c. Nothing of C++ leaks through. */
#ifndef GS_WORKER_PBTXT_H
#define GS_WORKER_PBTXT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  GS__PBTXT_OK = 0,
  GS__PBTXT_SYNTAX,      /* msg: "FILE:LINE:COLUMN: what the parser saw" */
  GS__PBTXT_UNSUPPORTED, /* msg: "FILE:LINE:COLUMN: field X is not ..." */
  GS__PBTXT_NOMEM
} gs__pbtxt_status_t;

/* Parses text (len bytes, protobuf text format of inference.ModelConfig);
 * on success *out holds the binary encoding (malloc'd, the caller frees).
 * Every field set in the text must be listed in supported (NULL-ended
 * dotted paths, "dynamic_batching.max_queue_delay_microseconds"): a listed
 * message field with no listed children is accepted whole. file names the
 * text in msg, which holds the reason on failure. */
gs__pbtxt_status_t gs__pbtxt_model_config(const char *text, size_t len,
                                          const char *file,
                                          const char *const *supported,
                                          uint8_t **out, size_t *out_len,
                                          char *msg, size_t msg_size);

/* gs__pbtxt_model_config for Triton's ModelConfig as JSON (a load
 * request's "config" override); msg names no line. */
gs__pbtxt_status_t gs__pbtxt_model_config_json(const char *json, size_t len,
                                               const char *file,
                                               const char *const *supported,
                                               uint8_t **out, size_t *out_len,
                                               char *msg, size_t msg_size);

#ifdef __cplusplus
}
#endif

#endif
