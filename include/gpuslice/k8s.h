/* Instances as container devices: a CDI spec (the Container Device
 * Interface the container toolkit, podman and containerd read) and the
 * kubelet device plugin (v1beta1) that advertises them to Kubernetes. */
#ifndef GPUSLICE_K8S_H
#define GPUSLICE_K8S_H

#include <jansson.h>
#include <stdbool.h>

#include "gpuslice/backend.h"

/* The CDI kind of every gpuslice device; names under it are
 * "DEV:GI" (a GI of one CI, the toolkit's GPU:MIG form with the stable GI
 * ID), "DEV:GI:CI" and the instance UUID. */
#define GS_CDI_KIND "gpuslice.dev/instance"
#define GS_CDI_DEFAULT_DIR "/var/run/cdi"
#define GS_CDI_FILE "gpuslice.json"
#define GS_K8S_MAX_INSTANCES 256
#define GS_K8S_MAX_NODES 8

/* One compute instance as a container sees it. */
typedef struct gs_k8s_instance_s {
  unsigned dev, gi_id, ci_id;
  bool single_ci;                        /* its GI has no other CI */
  char profile[GS_PROFILE_NAME_MAX + 8]; /* "1g.10gb", "1c.2g.20gb" */
  char uuid[GS_UUID_MAX];                /* the CI's: the plugin's device ID */
  char gpu_uuid[GS_UUID_MAX];
  unsigned n_nodes; /* device nodes on the host (mig, soft) */
  char node[GS_K8S_MAX_NODES][64];
  char mps_pipe[256]; /* soft under MPS: the daemon's pipe directory */
  /* What `gpuslice run -i` sets; n_env 0 with confine_error set when the
   * backend could not say (the instance then is unhealthy). */
  gs_confinement_t conf;
  char confine_error[256];
} gs_k8s_instance_t;

typedef struct gs_k8s_inventory_s {
  char backend[8]; /* "mig", "soft", "host" */
  unsigned n;
  gs_k8s_instance_t inst[GS_K8S_MAX_INSTANCES];
} gs_k8s_inventory_t;

typedef struct gs_k8s_options_s {
  /* NVIDIA's /proc/driver/nvidia (GPU minors, MIG capability minors);
   * NULL = that path. Tests point it at a fake tree. */
  const char *nvidia_proc;
  /* Host backend: argv[0] of the CDI hook and the global options it
   * needs ("--backend host --state-dir DIR"), in the order given. */
  const char *hook_path;
  unsigned n_hook_args;
  const char *hook_args[8];
  unsigned n_hook_env; /* "NAME=VALUE" the hook runs with */
  const char *hook_env[8];
  /* Instance UUIDs already read (old): their env is kept, not asked for
   * again, so the plugin never restarts a dead MPS daemon on its own. */
  const gs_k8s_inventory_t *old;
} gs_k8s_options_t;

/* Reads every compute instance of the backend's devices. The env of each
 * comes from the backend's confine in a child process (what `run -i`
 * would set; for soft under MPS this starts the GPU's daemon). Caller
 * owns *inv. */
int gs_k8s_inventory_read(gs_backend_t *be, const gs_k8s_options_t *opt,
                          gs_k8s_inventory_t *inv, gs_error_t *err);

/* The instance's health now: false with why set when its GPU instance is
 * gone from *live (may be NULL: not checked), its env could not be read
 * or (soft, MPS) the pipe directory's daemon is dead. */
bool gs_k8s_instance_healthy(const gs_k8s_instance_t *in,
                             const gs_k8s_inventory_t *live, char *why,
                             size_t size);

/* A faulted GPU (gpu_health.c): critical XID events and GPUs NVML
 * reports lost (GPU_IS_LOST, RESET_REQUIRED). open loads NVML (NULL: the
 * driver's) and registers for XID events: NULL when NVML cannot be
 * loaded (logged); without the event calls only lost GPUs are seen. poll
 * reads what came (1 ms wait); faulted says whether the instance's GPU
 * (mig: or its own MIG instance, when the event names one) faulted. */
typedef struct gs_k8s_gpu_health_s gs_k8s_gpu_health_t;
gs_k8s_gpu_health_t *gs_k8s_gpu_health_open(const char *nvml_library,
                                            void (*log)(void *, const char *),
                                            void *log_data);
void gs_k8s_gpu_health_poll(gs_k8s_gpu_health_t *h);
bool gs_k8s_gpu_faulted(const gs_k8s_gpu_health_t *h,
                        const gs_k8s_instance_t *in, bool mig, char *why,
                        size_t size);
void gs_k8s_gpu_health_close(gs_k8s_gpu_health_t *h);
/* XIDs an application causes, which leave the GPU healthy. */
bool gs_k8s_xid_ignored(unsigned long long xid);

/* The CDI spec of the inventory (a new reference). */
json_t *gs_cdi_spec(const gs_k8s_inventory_t *inv, const gs_k8s_options_t *opt);
/* The container edits of one instance (a new reference). */
json_t *gs_cdi_instance_edits(const gs_k8s_inventory_t *inv,
                              const gs_k8s_instance_t *in,
                              const gs_k8s_options_t *opt);

typedef enum { GS_CDI_JSON, GS_CDI_YAML } gs_cdi_format_t;
/* Writes spec to path atomically (a temporary file beside it, then
 * rename), or to stdout when path is "-". */
int gs_cdi_write(json_t *spec, const char *path, gs_cdi_format_t format,
                 gs_error_t *err);
/* json as YAML (libyaml's emitter) into *out (malloc'd, NUL-ended). */
int gs_cdi_yaml(json_t *doc, char **out, size_t *len, gs_error_t *err);

/* The host backend's CDI hook: moves pid (a container's init, from the
 * OCI state) into the instance's cgroups and CPUs, as `run -i` confines
 * itself. */
int gs_cdi_hook_confine(gs_backend_t *be, unsigned gi_id, unsigned ci_id,
                        pid_t pid, gs_error_t *err);

/* gpuslice k8s device-plugin. */
#define GS_K8S_PLUGIN_DIR "/var/lib/kubelet/device-plugins"
typedef struct gs_k8s_device_plugin_options_s {
  const char *plugin_dir;      /* NULL = GS_K8S_PLUGIN_DIR */
  const char *kubelet_socket;  /* NULL = plugin_dir/kubelet.sock */
  const char *resource_prefix; /* NULL = the backend's (k8s.c) */
  const char *cdi_dir;         /* rewrite CDI_DIR/gpuslice.json; NULL: no */
  unsigned interval_ms;        /* layout and kubelet.sock checks; 0 = 1000 */
  void (*log)(void *data, const char *line); /* NULL: quiet */
  void *log_data;
  /* Health the library cannot see (the tool asks `gpuslice serve`): tick
   * runs once per interval, then worker_down says whether the instance's
   * serving worker is down (why set). NULL: not checked. */
  void (*tick)(void *data);
  bool (*worker_down)(void *data, const char *uuid, char *why, size_t size);
  void *health_data;
  gs_k8s_options_t inventory;
  /* NVML for the GPU fault watch (gs_k8s_gpu_health_*; NULL = the
   * driver's); never loaded for the host backend. */
  const char *nvml_library;
} gs_k8s_device_plugin_options_t;

/* The default resource prefix of a backend: "nvidia.com/mig-" (NVIDIA's
 * mixed strategy), "gpuslice.dev/soft-", "gpuslice.dev/host-". */
const char *gs_k8s_default_prefix(const char *backend);

/* Serves the kubelet until SIGINT or SIGTERM: one resource per profile,
 * registered with the kubelet, re-registered when kubelet.sock is made
 * anew or the plugin's socket is removed. */
int gs_k8s_device_plugin_run(gs_backend_t *be,
                             const gs_k8s_device_plugin_options_t *opt,
                             gs_error_t *err);

/* Calls ListAndWatch on a device plugin's socket as the kubelet does and
 * hands each list to on_list (n devices: IDs and "Healthy"/"Unhealthy"),
 * until max_lists lists came or wait_ms passed. GS_OK once a list came. */
typedef void (*gs_k8s_list_fn)(void *data, size_t n, const char *const *ids,
                               const char *const *health);
int gs_k8s_list_devices(const char *socket, unsigned max_lists,
                        unsigned wait_ms, gs_k8s_list_fn on_list, void *data,
                        gs_error_t *err);

/* gpuslice k8s mig-manager: the GPU operator's MIG manager on gpuslice's
 * incremental apply. It watches the node label GS_K8S_MIG_CONFIG_LABEL,
 * (on the API server or in a label file) applies the mig-parted config
 * set it names and reports in
 * GS_K8S_MIG_STATE_LABEL: "pending" while applying, then "success" or
 * "failed" (never "rebooting": no change here needs a reboot). */
#define GS_K8S_MIG_CONFIG_LABEL "nvidia.com/mig.config"
#define GS_K8S_MIG_STATE_LABEL "nvidia.com/mig.config.state"
/* Which config the state is about (written beside it; gpuslice's own). */
#define GS_K8S_MIG_APPLIED_LABEL "gpuslice.dev/mig.config.applied"
/* In a pod: the service account's token and the cluster's CA. */
#define GS_K8S_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
#define GS_K8S_SA_TOKEN GS_K8S_SA_DIR "/token"
#define GS_K8S_SA_CA GS_K8S_SA_DIR "/ca.crt"
typedef struct gs_k8s_mig_manager_options_s {
  const char *config_file; /* the mig-parted file, read anew each apply */
  /* The node's labels as "KEY=VALUE" lines ('#' comments), and where the
   * state labels are written (the same form, replaced atomically;
   * NULL = LABEL_FILE.state). */
  const char *label_file;
  const char *state_file;
  /* With no label file: the Node NODE on this API server ("https://H:P"),
   * its label read with GET and the state labels merge-PATCHed, with the
   * bearer token in token_file (NULL: the service account's, if there)
   * and the CA bundle ca_file (NULL: the system's). Errors talking to it
   * are logged and retried at the next check. */
  const char *api_server;
  const char *token_file;
  const char *ca_file;
  const char *node; /* the Node (API server); for the log; NULL: "this node" */
  unsigned interval_ms;                      /* label checks; 0 = 1000 */
  void (*log)(void *data, const char *line); /* NULL: quiet */
  void *log_data;
  /* After a change that succeeded (the CLI refreshes the CDI spec). */
  void (*changed)(void *data);
  void *changed_data;
} gs_k8s_mig_manager_options_t;

/* Reads one label from a label file: 1 found (value copied), 0 not there,
 * negative on a read error (err set). */
int gs_k8s_label_read(const char *path, const char *key, char *value,
                      size_t size, gs_error_t *err);

/* Applies config set `name` of config_file to the backend's devices as one
 * transaction (gs_change_run: only what differs changes; a failure rolls
 * back). */
int gs_k8s_mig_apply(gs_backend_t *be, const char *config_file,
                     const char *name, gs_error_t *err);

/* Watches the label until SIGINT or SIGTERM: each new value is applied
 * once (a failure is retried only when the label changes). */
int gs_k8s_mig_manager_run(gs_backend_t *be,
                           const gs_k8s_mig_manager_options_t *opt,
                           gs_error_t *err);

/* gpuslice k8s metrics: each instance's usage for Prometheus. */
typedef struct gs_k8s_metrics_options_s {
  /* NVML for per-process SM utilisation and the GPUs' indices (NULL =
   * libnvidia-ml.so.1); never loaded for the host backend. Without it
   * the SM series are left out, the rest stays. */
  const char *nvml_library;
  gs_k8s_options_t inventory;
  /* Health as the device plugin sees it (its options of the same names):
   * tick once per scrape, then worker_down per instance. NULL: not
   * checked. */
  void (*tick)(void *data);
  bool (*worker_down)(void *data, const char *uuid, char *why, size_t size);
  void *health_data;
  /* gs_k8s_metrics_run: where to listen (host NULL = 0.0.0.0; port 0 =
   * any free one, said in the log) and the log (NULL: quiet). */
  const char *host;
  unsigned port;
  void (*log)(void *data, const char *line);
  void *log_data;
} gs_k8s_metrics_options_t;

typedef struct gs_k8s_metrics_s gs_k8s_metrics_t;

/* A collector for be's instances (be stays the caller's and must outlive
 * it). Destroy with gs_k8s_metrics_destroy. */
int gs_k8s_metrics_create(gs_k8s_metrics_t **out, gs_backend_t *be,
                          const gs_k8s_metrics_options_t *opt, gs_error_t *err);
/* One scrape: the layout read anew and each instance's info, health,
 * processes, memory and SM (or CPU) use now, as Prometheus text (*text
 * malloc'd, the caller frees it). */
int gs_k8s_metrics_scrape(gs_k8s_metrics_t *m, char **text, size_t *len,
                          gs_error_t *err);
void gs_k8s_metrics_destroy(gs_k8s_metrics_t *m);
/* Serves GET /metrics (a scrape each) over HTTP until SIGINT or SIGTERM;
 * other paths 404, other methods 405. */
int gs_k8s_metrics_run(gs_backend_t *be, const gs_k8s_metrics_options_t *opt,
                       gs_error_t *err);

#endif
