/* Model files sent in a load request (repo_files.c): Triton's
 * "file:VERSION/NAME" load parameters, loaded from a temporary model
 * directory with the request's "config". */
#ifndef GS_WORKER_REPO_FILES_H
#define GS_WORKER_REPO_FILES_H

#include "worker/worker_int.h"

/* gs__repo_load_config from model_dir instead of the repository's
 * directory of name (repo_versions.c). */
int gs__repo_load_from(gs__repo_t *repo, const char *name,
                       const char *model_dir, const char *override,
                       size_t override_len, gs_error_t *err);

/* Whether params (a load request's JSON parameters) hold "file:" keys. */
bool gs__repo_has_files(json_t *params);

/* Loads name from the files in params (each "file:PATH": base64 text),
 * with config (Triton's ModelConfig as JSON; needed). Returns the HTTP
 * status: 200, 400 for a bad request or a model that fails to load, 500
 * (Triton's "failed to poll from model repository") where the files
 * cannot be written; err says why. */
int gs__repo_load_files(gs__repo_t *repo, const char *name, json_t *params,
                        const char *config, size_t config_len, gs_error_t *err);

/* Standard base64 of len bytes, NUL-terminated; malloc'd (NULL: out of
 * memory). gRPC sends a file's bytes, the HTTP route takes base64. */
char *gs__base64_encode(const uint8_t *data, size_t len);

#endif
