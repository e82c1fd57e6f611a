/* Triton's config.pbtxt read into what the worker serves (model_config.c):
 * the fields gpuslice supports, checked against the ONNX model once it is
 * loaded, and Triton's autocomplete for a model without a config. */
#ifndef GS_WORKER_MODEL_CONFIG_H
#define GS_WORKER_MODEL_CONFIG_H

#include "worker/worker_int.h"

/* An input or output the config declares. */
typedef struct gs__config_tensor_s {
  char name[128];
  gs_dtype_t dtype; /* GS_DTYPE_INVALID: not given */
  int rank;         /* dims given, without the batch dimension; -1: none */
  int64_t dims[GS_TENSOR_MAX_RANK];
  char label_filename[256]; /* an output's labels file, in dir; "": none */
  int format; /* an input's format: Triton's enum, 0 FORMAT_NONE */
  /* reshape: the model's shape of the tensor (without the batch
   * dimension) where requests use dims; -1: none */
  int reshape_rank;
  int64_t reshape[GS_TENSOR_MAX_RANK];
} gs__config_tensor_t;

typedef enum {
  GS__VERSIONS_LATEST = 0, /* the latest num_versions (Triton's default: 1) */
  GS__VERSIONS_ALL,
  GS__VERSIONS_SPECIFIC
} gs__version_policy_t;

#define GS__CONFIG_MAX_VERSIONS 16

typedef struct gs__model_config_s {
  unsigned max_batch_size;
  gs__batching_t batching;
  gs__placement_t placement;
  uint64_t memory_budget_bytes;
  size_t n_inputs, n_outputs;
  gs__config_tensor_t inputs[GS__INFER_MAX_TENSORS];
  gs__config_tensor_t outputs[GS__INFER_MAX_TENSORS];
  gs__version_policy_t version_policy;
  unsigned latest_versions;
  size_t n_versions;
  long long versions[GS__CONFIG_MAX_VERSIONS];
  char dir[4096]; /* the config file's directory (label files are in it) */
  gs__seq_config_t sequence; /* sequence_batching */
  /* parameters keys gpuslice does not use ("a, b"; "" none): warned about
   * at load, not refused (Triton passes them to the backend) */
  char unused_parameters[256];
} gs__model_config_t;

/* Defaults: no batching, placement AUTO, warmup -1 (decided by provider),
 * the latest version. */
void gs__model_config_init(gs__model_config_t *cfg);

/* Parses text (config.pbtxt of the model directory named model, file in
 * messages) into cfg. GS_EPARSE for a syntax error or unknown field
 * ("FILE:LINE:COLUMN: ..."), GS_EUNSUPPORTED naming a field gpuslice does
 * not serve, GS_EINVAL for a value out of range. */
int gs__model_config_parse_pbtxt(gs__model_config_t *cfg, const char *model,
                                 const char *file, const char *text, size_t len,
                                 gs_error_t *err);

/* gs__model_config_parse_pbtxt for Triton's ModelConfig as JSON (a load
 * request's "config" parameter, protobuf's JSON mapping). */
int gs__model_config_parse_json(gs__model_config_t *cfg, const char *model,
                                const char *file, const char *text, size_t len,
                                gs_error_t *err);

/* The versions to serve from those present (n of them), per cfg's
 * version_policy, highest first, into picked (*n_picked); GS_ENOTFOUND
 * when it selects none, GS_ELIMIT (naming the count) when more than cap. */
int gs__model_config_pick_versions(const gs__model_config_t *cfg,
                                   const long long *present, size_t n,
                                   long long *picked, size_t cap,
                                   size_t *n_picked, const char *file,
                                   gs_error_t *err);

/* Checks cfg's inputs and outputs against the model's (names, data types,
 * dims) and narrows the model's variable dims to the ones cfg fixes; an
 * FP32 input declared TYPE_FP16 becomes FP16 (clients send FP16). */
int gs__model_config_apply(const gs__model_config_t *cfg, const char *file,
                           gs_tensor_info_t *inputs, size_t n_inputs,
                           gs_tensor_info_t *outputs, size_t n_outputs,
                           gs_error_t *err);

/* Triton's autocomplete for an ONNX model without a config: when the first
 * dimension of every input and output is variable, max_batch_size 4
 * (Triton's default-max-batch-size) and dynamic batching on. */
void gs__model_config_autocomplete(unsigned *max_batch_size,
                                   gs__batching_t *batching,
                                   const gs__model_io_t *io);

/* Replaces each byte of msg that is not valid UTF-8 with '?' (messages
 * quote the file, and end up in JSON). */
void gs__model_config_sanitize(char *msg);

#endif
