/* The device plugin's loop: every interval it reads the layout again (new
 * profiles get a resource, lists that changed go to ListAndWatch, the CDI
 * spec is rewritten) and looks at kubelet.sock and its own sockets: a new
 * kubelet.sock (the kubelet restarted) or a removed socket of its own
 * means serving and registering again, as the kubelet expects. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "k8s/plugin_int.h"

const char *gs_k8s_default_prefix(const char *backend) {
  if (strcmp(backend, "mig") == 0)
    return "nvidia.com/mig-";
  if (strcmp(backend, "soft") == 0)
    return "gpuslice.dev/soft-";
  return "gpuslice.dev/host-";
}

void gs__dp_log(const gs__dp_t *dp, const char *fmt, ...) {
  char line[1024];
  va_list ap;
  if (!dp->opt.log)
    return;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  dp->opt.log(dp->opt.log_data, line);
}

static pid_t backend_busy(gs__dp_t *dp, const gs_k8s_instance_t *in) {
  gs_process_t procs[4];
  size_t n = 0;
  gs_error_t err;
  if (dp->be->ops->processes(dp->be, in->dev, in->gi_id, procs, 4, &n, &err) !=
      GS_OK)
    return 0;
  for (size_t i = 0; i < n && i < 4; i++)
    if (procs[i].ci_id == in->ci_id)
      return procs[i].pid;
  return 0;
}

static gs__dp_resource_t *resource_for(gs__dp_t *dp, const char *profile) {
  for (unsigned i = 0; i < dp->n_res; i++)
    if (strcmp(dp->res[i].profile, profile) == 0)
      return &dp->res[i];
  if (dp->n_res == GS__DP_MAX_RESOURCES)
    return NULL;
  gs__dp_resource_t *r = &dp->res[dp->n_res++];
  memset(r, 0, sizeof *r);
  snprintf(r->profile, sizeof r->profile, "%s", profile);
  gs__dp_resource_name(dp->opt.resource_prefix, profile, r->name,
                       sizeof r->name);
  const char *slash = strrchr(r->name, '/');
  snprintf(r->endpoint, sizeof r->endpoint, "gpuslice-%s.sock",
           slash ? slash + 1 : r->name);
  gs_buf_init(&r->last_list, GS_LIMIT_GRPC_MESSAGE);
  return r;
}

/* Instances that left while allocated stay listed, Unhealthy. */
static void note_gone(gs__dp_t *dp, const gs_k8s_inventory_t *before) {
  for (unsigned i = 0; i < before->n; i++) {
    const gs_k8s_instance_t *in = &before->inst[i];
    bool held = false, listed = false;
    for (unsigned a = 0; a < dp->n_allocated; a++)
      held |= strcmp(dp->allocated[a], in->uuid) == 0;
    for (unsigned g = 0; g < dp->n_gone; g++)
      listed |= strcmp(dp->gone[g].uuid, in->uuid) == 0;
    if (!held || listed || gs__dp_find(dp, in->uuid) ||
        dp->n_gone == GS__DP_MAX_GONE)
      continue;
    gs__dp_gone_t *g = &dp->gone[dp->n_gone++];
    snprintf(g->uuid, sizeof g->uuid, "%s", in->uuid);
    snprintf(g->profile, sizeof g->profile, "%s", in->profile);
    gs__dp_log(dp,
               "instance %s (%s) left the layout while allocated: "
               "Unhealthy",
               in->uuid, in->profile);
  }
  for (unsigned g = 0; g < dp->n_gone;) /* back again: healthy as any */
    if (gs__dp_find(dp, dp->gone[g].uuid))
      dp->gone[g] = dp->gone[--dp->n_gone];
    else
      g++;
}

static void write_cdi(gs__dp_t *dp) {
  char path[1024];
  gs_error_t err;
  if (!dp->opt.cdi_dir)
    return;
  snprintf(path, sizeof path, "%s/%s", dp->opt.cdi_dir, GS_CDI_FILE);
  json_t *spec = gs_cdi_spec(dp->inv, &dp->opt.inventory);
  if (gs_cdi_write(spec, path, GS_CDI_JSON, &err) != GS_OK)
    gs__dp_log(dp, "CDI spec: %s", err.msg);
  json_decref(spec);
}

void gs__dp_refresh(gs__dp_t *dp) {
  gs_k8s_inventory_t *next = malloc(sizeof *next);
  gs_error_t err;
  gs_k8s_options_t kopt = dp->opt.inventory;
  kopt.old = dp->inv;
  if (!next || gs_k8s_inventory_read(dp->be, &kopt, next, &err) != GS_OK) {
    gs__dp_log(dp, "reading the layout: %s", next ? err.msg : "no memory");
    free(next);
    return;
  }
  gs_k8s_inventory_t *before = dp->inv;
  bool changed = before->n != next->n;
  for (unsigned i = 0; !changed && i < next->n; i++)
    changed = strcmp(before->inst[i].uuid, next->inst[i].uuid) != 0;
  dp->inv = next;
  note_gone(dp, before);
  free(before);
  for (unsigned i = 0; i < next->n; i++)
    resource_for(dp, next->inst[i].profile);
  if (changed)
    write_cdi(dp);
  for (unsigned i = 0; i < dp->n_res; i++)
    if (dp->res[i].server)
      gs__dp_server_publish(dp, &dp->res[i]);
}

static bool socket_there(const char *path, struct stat *st) {
  return stat(path, st) == 0 && S_ISSOCK(st->st_mode);
}

/* Serves what is not served (with or without a kubelet: `gpuslice k8s
 * devices` reads a node's plugin without one), registers what is not
 * registered while kubelet.sock is there, and starts over on a new one. */
static void check_kubelet(gs__dp_t *dp) {
  struct stat st;
  char path[512];
  gs_error_t err;
  bool kubelet = socket_there(dp->opt.kubelet_socket, &st);
  if (!kubelet && dp->kubelet_seen)
    dp->kubelet_lost = true; /* an inode may be reused by the next one */
  bool restarted = kubelet && dp->kubelet_seen &&
                   (dp->kubelet_lost || st.st_dev != dp->kubelet_dev ||
                    st.st_ino != dp->kubelet_ino ||
                    st.st_ctim.tv_sec != dp->kubelet_ctime.tv_sec ||
                    st.st_ctim.tv_nsec != dp->kubelet_ctime.tv_nsec);
  if (restarted)
    gs__dp_log(dp, "kubelet.sock was made anew: registering again");
  if (kubelet) {
    dp->kubelet_seen = true;
    dp->kubelet_lost = false;
    dp->kubelet_dev = st.st_dev;
    dp->kubelet_ino = st.st_ino;
    dp->kubelet_ctime = st.st_ctim;
  }
  for (unsigned i = 0; i < dp->n_res; i++) {
    gs__dp_resource_t *r = &dp->res[i];
    snprintf(path, sizeof path, "%s/%s", dp->opt.plugin_dir, r->endpoint);
    bool mine = r->server && socket_there(path, &st);
    if (!mine || restarted) {
      gs__dp_server_stop(r);
      r->registered = false;
      gs_buf_free(&r->last_list);
      if (gs__dp_server_start(dp, r, &err) != GS_OK) {
        gs__dp_log(dp, "%s: %s", r->name, err.msg);
        continue;
      }
      gs__dp_server_publish(dp, r);
    }
    if (kubelet && !r->registered && !r->registering)
      gs__dp_register(dp, r);
  }
}

static volatile sig_atomic_t stop_signal;
static void on_signal(int sig) {
  stop_signal = sig;
}

static void on_tick(uv_timer_t *t) {
  gs__dp_t *dp = t->data;
  if (stop_signal) {
    gs__dp_log(dp, "signal %d: stopping", (int)stop_signal);
    uv_timer_stop(t);
    uv_close((uv_handle_t *)t, NULL);
    for (unsigned i = 0; i < dp->n_res; i++)
      gs__dp_server_stop(&dp->res[i]);
    return;
  }
  if (dp->opt.tick)
    dp->opt.tick(dp->opt.health_data);
  gs_k8s_gpu_health_poll(dp->gpus);
  gs__dp_refresh(dp);
  check_kubelet(dp);
}

int gs_k8s_device_plugin_run(gs_backend_t *be,
                             const gs_k8s_device_plugin_options_t *opt,
                             gs_error_t *err) {
  char kubelet[512];
  uv_loop_t loop;
  gs__dp_t *dp = calloc(1, sizeof *dp);
  if (!dp || !(dp->inv = calloc(1, sizeof *dp->inv))) {
    free(dp);
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  }
  dp->opt = *opt;
  dp->be = be;
  dp->busy = backend_busy;
  if (!dp->opt.plugin_dir)
    dp->opt.plugin_dir = GS_K8S_PLUGIN_DIR;
  if (!dp->opt.kubelet_socket) {
    snprintf(kubelet, sizeof kubelet, "%s/kubelet.sock", dp->opt.plugin_dir);
    dp->opt.kubelet_socket = kubelet;
  }
  if (!dp->opt.resource_prefix)
    dp->opt.resource_prefix = gs_k8s_default_prefix(be->ops->name);
  snprintf(dp->inv->backend, sizeof dp->inv->backend, "%s", be->ops->name);
  if (strcmp(be->ops->name, "host") != 0)
    dp->gpus = gs_k8s_gpu_health_open(dp->opt.nvml_library, dp->opt.log,
                                      dp->opt.log_data);
  uv_loop_init(&loop);
  dp->loop = &loop;
  stop_signal = 0;
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  signal(SIGPIPE, SIG_IGN);
  uv_timer_init(&loop, &dp->timer);
  dp->timer.data = dp;
  unsigned ms = dp->opt.interval_ms ? dp->opt.interval_ms : 1000;
  uv_timer_start(&dp->timer, on_tick, 0, ms);
  gs__dp_log(dp, "serving %s instances from %s (kubelet: %s)", be->ops->name,
             dp->opt.plugin_dir, dp->opt.kubelet_socket);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  for (unsigned i = 0; i < dp->n_res; i++)
    gs_buf_free(&dp->res[i].last_list);
  gs_k8s_gpu_health_close(dp->gpus);
  free(dp->inv);
  free(dp);
  return GS_OK;
}
