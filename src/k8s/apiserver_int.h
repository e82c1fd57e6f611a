/* A minimal Kubernetes API server client for the mig-manager: one Node's
 * labels read (GET) and written (merge PATCH) over HTTPS with the pod's
 * service account token (libcurl). */
#ifndef GS_K8S_APISERVER_INT_H
#define GS_K8S_APISERVER_INT_H

#include <stddef.h>

#include "gpuslice/error.h"
#include "gpuslice/k8s.h"

typedef struct gs__k8s_api_s gs__k8s_api_t;

/* server: "https://HOST:PORT" (or http:// for a test stand-in); token_file
 * is read anew for each request (service account tokens are rotated);
 * NULL, or the default path absent, sends no token. ca_file NULL: the
 * system's CAs. The strings are copied. Free with gs__k8s_api_destroy. */
int gs__k8s_api_create(gs__k8s_api_t **out, const char *server,
                       const char *token_file, const char *ca_file,
                       const char *node, gs_error_t *err);
void gs__k8s_api_destroy(gs__k8s_api_t *api);

/* GET /api/v1/nodes/NODE: 1 and the label's value copied, 0 when the node
 * has no such label, a negative error code (err set) otherwise. */
int gs__k8s_api_label_get(gs__k8s_api_t *api, const char *key, char *value,
                          size_t size, gs_error_t *err);

/* PATCH /api/v1/nodes/NODE (application/merge-patch+json) setting the
 * n labels keys[i]=values[i]. */
int gs__k8s_api_labels_patch(gs__k8s_api_t *api, const char *const *keys,
                             const char *const *values, size_t n,
                             gs_error_t *err);

#endif
