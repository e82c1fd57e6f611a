/* The device plugin's parts: the resources and their devices (plugin_rpc.c
 * answers the unary calls from them, pure and fuzzed), the servers on the
 * plugin's sockets (plugin.c), registration with the kubelet (kubelet.c)
 * and the watch of the layout and of kubelet.sock (plugin_watch.c). */
#ifndef GS_K8S_PLUGIN_INT_H
#define GS_K8S_PLUGIN_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>
#include <uv.h>

#include "core/buf.h"
#include "gpuslice/k8s.h"

#define GS__DP_MAX_RESOURCES 32
#define GS__DP_MAX_GONE 64
#define GS__DP_API_VERSION "v1beta1"

typedef struct gs__dp_s gs__dp_t;
typedef struct gs__dp_server_s gs__dp_server_t;

typedef struct gs__dp_resource_s {
  char name[160];     /* "nvidia.com/mig-1g.10gb" */
  char profile[48];   /* "1g.10gb" */
  char endpoint[200]; /* socket file name inside the plugin directory */
  gs__dp_server_t *server;
  bool registered, registering; /* a Register call is in flight */
  gs_buf_t last_list;           /* the ListAndWatch message last sent */
} gs__dp_resource_t;

/* An instance that left the layout while a pod held it: advertised
 * Unhealthy until it is back or the plugin restarts. */
typedef struct gs__dp_gone_s {
  char uuid[GS_UUID_MAX];
  char profile[48];
} gs__dp_gone_t;

struct gs__dp_s {
  gs_k8s_device_plugin_options_t opt;
  gs_backend_t *be;
  gs_k8s_inventory_t *inv; /* the layout as last read */
  gs_k8s_options_t kopt;
  unsigned n_res;
  gs__dp_resource_t res[GS__DP_MAX_RESOURCES];
  unsigned n_allocated;
  char allocated[GS_K8S_MAX_INSTANCES][GS_UUID_MAX];
  unsigned n_gone;
  gs__dp_gone_t gone[GS__DP_MAX_GONE];
  /* Whether an instance runs processes now (pid of one, 0 if none); the
   * plugin asks the backend, tests and the fuzz harness stub it. */
  pid_t (*busy)(gs__dp_t *dp, const gs_k8s_instance_t *in);
  uv_loop_t *loop;
  uv_timer_t timer;
  /* The kubelet.sock last seen: a socket made anew (another inode or
   * change time, or seen gone in between) is a restarted kubelet. */
  bool kubelet_seen, kubelet_lost;
  dev_t kubelet_dev;
  ino_t kubelet_ino;
  struct timespec kubelet_ctime;
  bool stopping;
  gs_k8s_gpu_health_t *gpus; /* NULL: no fault watch (host, no NVML) */
};

/* The resource name of a profile: prefix + profile, '+' made '.'. */
void gs__dp_resource_name(const char *prefix, const char *profile, char *out,
                          size_t size);
/* The ListAndWatch message of a resource now, serialized into out. */
int gs__dp_list(gs__dp_t *dp, const gs__dp_resource_t *res, gs_buf_t *out);
/* A unary call by its :path. Returns the gRPC status; with 0 *out holds
 * the serialized answer, otherwise msg says why. */
int gs__dp_call(gs__dp_t *dp, const gs__dp_resource_t *res, const char *path,
                const uint8_t *req, size_t len, gs_buf_t *out, char *msg,
                size_t size);
/* An instance's health: gs_k8s_instance_healthy, then its serving worker. */
bool gs__dp_healthy(const gs__dp_t *dp, const gs_k8s_instance_t *in, char *why,
                    size_t size);
/* The instance whose device ID (UUID) is id, or NULL. */
const gs_k8s_instance_t *gs__dp_find(const gs__dp_t *dp, const char *id);

/* Servers: one per resource, on DIR/endpoint. */
int gs__dp_server_start(gs__dp_t *dp, gs__dp_resource_t *res, gs_error_t *err);
void gs__dp_server_stop(gs__dp_resource_t *res);
/* Sends the resource's list to its ListAndWatch streams when it changed. */
void gs__dp_server_publish(gs__dp_t *dp, gs__dp_resource_t *res);

/* Register with the kubelet (asynchronous); res->registered once it said
 * yes. */
void gs__dp_register(gs__dp_t *dp, gs__dp_resource_t *res);

/* Reads the layout again and updates resources, lists and the CDI spec. */
void gs__dp_refresh(gs__dp_t *dp);
void gs__dp_log(const gs__dp_t *dp, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
