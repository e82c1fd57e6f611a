/* The device plugin's answers, from its resources and the layout it last
 * read: the device list with health, Allocate (CDI names, and env, mounts
 * and device nodes for runtimes without CDI), GetPreferredAllocation and
 * the options. Pure: no I/O but the busy check; the fuzz harness feeds it
 * request bytes. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deviceplugin_v1beta1.pb-c.h"
#include "k8s/plugin_int.h"
#include "net/grpc.h"

#define GRPC_FAILED_PRECONDITION 9
#define METHOD(name) "/v1beta1.DevicePlugin/" name

void gs__dp_resource_name(const char *prefix, const char *profile, char *out,
                          size_t size) {
  snprintf(out, size, "%s%s", prefix, profile);
  for (char *p = out; *p; p++)
    if (*p == '+')
      *p = '.';
}

bool gs__dp_healthy(const gs__dp_t *dp, const gs_k8s_instance_t *in, char *why,
                    size_t size) {
  if (!gs_k8s_instance_healthy(in, NULL, why, size))
    return false;
  if (gs_k8s_gpu_faulted(dp->gpus, in, strcmp(dp->inv->backend, "mig") == 0,
                         why, size))
    return false;
  return !(dp->opt.worker_down &&
           dp->opt.worker_down(dp->opt.health_data, in->uuid, why, size));
}

const gs_k8s_instance_t *gs__dp_find(const gs__dp_t *dp, const char *id) {
  for (unsigned i = 0; i < dp->inv->n; i++)
    if (strcmp(dp->inv->inst[i].uuid, id) == 0)
      return &dp->inv->inst[i];
  return NULL;
}

static int pack(const ProtobufCMessage *m, gs_buf_t *out) {
  size_t len = protobuf_c_message_get_packed_size(m);
  gs_buf_reset(out);
  uint8_t *p = gs_buf_reserve(out, len + 1);
  if (!p)
    return GS__GRPC_RESOURCE_EXHAUSTED;
  gs_buf_commit(out, protobuf_c_message_pack(m, p));
  return GS__GRPC_OK;
}

int gs__dp_list(gs__dp_t *dp, const gs__dp_resource_t *res, gs_buf_t *out) {
  V1beta1__ListAndWatchResponse r = V1BETA1__LIST_AND_WATCH_RESPONSE__INIT;
  V1beta1__Device *dev =
      calloc(GS_K8S_MAX_INSTANCES + GS__DP_MAX_GONE, sizeof *dev);
  V1beta1__Device **ptr =
      calloc(GS_K8S_MAX_INSTANCES + GS__DP_MAX_GONE, sizeof *ptr);
  char why[256];
  int rc = dev && ptr ? GS__GRPC_OK : GS__GRPC_RESOURCE_EXHAUSTED;
  for (unsigned i = 0; rc == GS__GRPC_OK && i < dp->inv->n; i++) {
    const gs_k8s_instance_t *in = &dp->inv->inst[i];
    if (strcmp(in->profile, res->profile) != 0)
      continue;
    v1beta1__device__init(&dev[r.n_devices]);
    dev[r.n_devices].id = (char *)in->uuid;
    dev[r.n_devices].health =
        gs__dp_healthy(dp, in, why, sizeof why) ? "Healthy" : "Unhealthy";
    ptr[r.n_devices] = &dev[r.n_devices];
    r.n_devices++;
  }
  for (unsigned g = 0; rc == GS__GRPC_OK && g < dp->n_gone; g++) {
    if (strcmp(dp->gone[g].profile, res->profile) != 0)
      continue;
    v1beta1__device__init(&dev[r.n_devices]);
    dev[r.n_devices].id = dp->gone[g].uuid;
    dev[r.n_devices].health = "Unhealthy";
    ptr[r.n_devices] = &dev[r.n_devices];
    r.n_devices++;
  }
  r.devices = ptr;
  if (rc == GS__GRPC_OK)
    rc = pack(&r.base, out);
  free(dev);
  free(ptr);
  return rc;
}

static int fail(char *msg, size_t size, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *msg, size_t size, int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, size, fmt, ap);
  va_end(ap);
  return status;
}

static void remember(gs__dp_t *dp, const char *uuid) {
  for (unsigned i = 0; i < dp->n_allocated; i++)
    if (strcmp(dp->allocated[i], uuid) == 0)
      return;
  if (dp->n_allocated < GS_K8S_MAX_INSTANCES)
    snprintf(dp->allocated[dp->n_allocated++], GS_UUID_MAX, "%s", uuid);
}

/* Checks one container's IDs: known, of this resource, healthy, not twice
 * in the request, not in use; one per container but on MIG. */
static int check_ids(gs__dp_t *dp, const gs__dp_resource_t *res,
                     V1beta1__AllocateRequest *rq, char *msg, size_t size) {
  bool mig = strcmp(dp->inv->backend, "mig") == 0;
  char why[256];
  size_t total = 0;
  for (size_t c = 0; c < rq->n_container_requests; c++)
    total += rq->container_requests[c]->n_devices_ids;
  if (total > GS_K8S_MAX_INSTANCES) /* more than a node can have */
    return fail(msg, size, GS__GRPC_INVALID_ARGUMENT,
                "%zu device IDs in one request: at most %u", total,
                GS_K8S_MAX_INSTANCES);
  for (size_t c = 0; c < rq->n_container_requests; c++) {
    V1beta1__ContainerAllocateRequest *cr = rq->container_requests[c];
    if (cr->n_devices_ids == 0)
      return fail(msg, size, GS__GRPC_INVALID_ARGUMENT,
                  "container request %zu names no device", c);
    if (cr->n_devices_ids > 1 && !mig)
      return fail(msg, size, GS__GRPC_INVALID_ARGUMENT,
                  "a container takes one %s instance (its limits are one "
                  "process's), not %zu",
                  dp->inv->backend, cr->n_devices_ids);
    for (size_t k = 0; k < cr->n_devices_ids; k++) {
      const char *id = cr->devices_ids[k];
      const gs_k8s_instance_t *in = gs__dp_find(dp, id);
      if (!in || strcmp(in->profile, res->profile) != 0)
        return fail(msg, size, GS__GRPC_NOT_FOUND,
                    "unknown device ID '%.80s' for resource %s", id, res->name);
      if (!gs__dp_healthy(dp, in, why, sizeof why))
        return fail(msg, size, GRPC_FAILED_PRECONDITION,
                    "device %s is unhealthy: %s", id, why);
      for (size_t c2 = 0; c2 <= c; c2++)
        for (size_t k2 = 0; k2 < rq->container_requests[c2]->n_devices_ids &&
                            (c2 < c || k2 < k);
             k2++)
          if (strcmp(rq->container_requests[c2]->devices_ids[k2], id) == 0)
            return fail(msg, size, GS__GRPC_INVALID_ARGUMENT,
                        "device %s is asked for twice in one request", id);
      pid_t pid = dp->busy ? dp->busy(dp, in) : 0;
      if (pid > 0)
        return fail(msg, size, GRPC_FAILED_PRECONDITION,
                    "device %s is already allocated: process %ld runs on "
                    "instance %u:%u:%u",
                    id, (long)pid, in->dev, in->gi_id, in->ci_id);
    }
  }
  return GS__GRPC_OK;
}

/* Message storage for one container's answer. */
typedef struct answer_s {
  V1beta1__ContainerAllocateResponse r;
  V1beta1__ContainerAllocateResponse__EnvsEntry env[GS_MAX_ENV];
  V1beta1__ContainerAllocateResponse__EnvsEntry *envp[GS_MAX_ENV];
  char vis[2][1024]; /* CUDA_ and NVIDIA_VISIBLE_DEVICES, MIG joined */
  V1beta1__Mount mount, *mountp;
  V1beta1__DeviceSpec node[GS_K8S_MAX_NODES * 4], *nodep[GS_K8S_MAX_NODES * 4];
  V1beta1__CDIDevice cdi[8], *cdip[8];
  char cdi_name[8][GS_UUID_MAX + 32];
} answer_t;

static void add_env(answer_t *a, const char *name, const char *value) {
  for (size_t i = 0; i < a->r.n_envs; i++)
    if (strcmp(a->env[i].key, name) == 0) {
      int v = strcmp(name, "CUDA_VISIBLE_DEVICES") == 0     ? 0
              : strcmp(name, "NVIDIA_VISIBLE_DEVICES") == 0 ? 1
                                                            : -1;
      if (v >= 0) { /* several MIG devices: a comma list */
        size_t len = strlen(a->vis[v]);
        snprintf(a->vis[v] + len, sizeof a->vis[v] - len, ",%s", value);
      }
      return;
    }
  if (a->r.n_envs == GS_MAX_ENV)
    return;
  V1beta1__ContainerAllocateResponse__EnvsEntry *e = &a->env[a->r.n_envs];
  v1beta1__container_allocate_response__envs_entry__init(e);
  e->key = (char *)name;
  e->value = (char *)value;
  int v = strcmp(name, "CUDA_VISIBLE_DEVICES") == 0     ? 0
          : strcmp(name, "NVIDIA_VISIBLE_DEVICES") == 0 ? 1
                                                        : -1;
  if (v >= 0) {
    snprintf(a->vis[v], sizeof a->vis[v], "%s", value);
    e->value = a->vis[v];
  }
  a->envp[a->r.n_envs++] = e;
}

static void add_instance(answer_t *a, const gs_k8s_instance_t *in) {
  for (unsigned i = 0; i < in->conf.n_env; i++)
    add_env(a, in->conf.env_name[i], in->conf.env_value[i]);
  for (unsigned i = 0; i < in->n_nodes; i++) {
    bool have = false;
    for (size_t k = 0; k < a->r.n_devices; k++)
      have |= strcmp(a->node[k].host_path, in->node[i]) == 0;
    if (have || a->r.n_devices == GS_K8S_MAX_NODES * 4)
      continue;
    V1beta1__DeviceSpec *d = &a->node[a->r.n_devices];
    v1beta1__device_spec__init(d);
    d->container_path = d->host_path = (char *)in->node[i];
    d->permissions = "rw";
    a->nodep[a->r.n_devices++] = d;
  }
  if (in->mps_pipe[0] && a->r.n_mounts == 0) {
    v1beta1__mount__init(&a->mount);
    a->mount.container_path = a->mount.host_path = (char *)in->mps_pipe;
    a->mountp = &a->mount;
    a->r.mounts = &a->mountp;
    a->r.n_mounts = 1;
  }
  if (a->r.n_cdi_devices < 8) {
    size_t k = a->r.n_cdi_devices++;
    v1beta1__cdidevice__init(&a->cdi[k]);
    snprintf(a->cdi_name[k], sizeof a->cdi_name[k], "%s=%s", GS_CDI_KIND,
             in->uuid);
    a->cdi[k].name = a->cdi_name[k];
    a->cdip[k] = &a->cdi[k];
  }
}

static int allocate(gs__dp_t *dp, const gs__dp_resource_t *res,
                    V1beta1__AllocateRequest *rq, gs_buf_t *out, char *msg,
                    size_t size) {
  int rc = check_ids(dp, res, rq, msg, size);
  if (rc != GS__GRPC_OK)
    return rc;
  V1beta1__AllocateResponse r = V1BETA1__ALLOCATE_RESPONSE__INIT;
  answer_t *a = calloc(rq->n_container_requests + 1, sizeof *a);
  V1beta1__ContainerAllocateResponse **p =
      calloc(rq->n_container_requests + 1, sizeof *p);
  if (!a || !p) {
    free(a);
    free(p);
    return fail(msg, size, GS__GRPC_RESOURCE_EXHAUSTED, "out of memory");
  }
  for (size_t c = 0; c < rq->n_container_requests; c++) {
    v1beta1__container_allocate_response__init(&a[c].r);
    a[c].r.envs = a[c].envp;
    a[c].r.devices = a[c].nodep;
    a[c].r.cdi_devices = a[c].cdip;
    for (size_t k = 0; k < rq->container_requests[c]->n_devices_ids; k++) {
      const gs_k8s_instance_t *in =
          gs__dp_find(dp, rq->container_requests[c]->devices_ids[k]);
      add_instance(&a[c], in);
      remember(dp, in->uuid);
    }
    p[c] = &a[c].r;
  }
  r.n_container_responses = rq->n_container_requests;
  r.container_responses = p;
  rc = pack(&r.base, out);
  free(a);
  free(p);
  return rc;
}

static bool listed(char **ids, size_t n, const char *id) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(ids[i], id) == 0)
      return true;
  return false;
}

/* must_include first, then the available ones on the GPU of the first
 * pick (instances of one GPU share its PCIe link and NUMA node), then the
 * rest, in the layout's order. */
static int preferred(gs__dp_t *dp, V1beta1__PreferredAllocationRequest *rq,
                     gs_buf_t *out, char *msg, size_t size) {
  V1beta1__PreferredAllocationResponse r =
      V1BETA1__PREFERRED_ALLOCATION_RESPONSE__INIT;
  size_t n = rq->n_container_requests;
  V1beta1__ContainerPreferredAllocationResponse *a = calloc(n + 1, sizeof *a);
  V1beta1__ContainerPreferredAllocationResponse **p = calloc(n + 1, sizeof *p);
  char ***ids = calloc(n + 1, sizeof *ids);
  int rc = a && p && ids ? GS__GRPC_OK : GS__GRPC_RESOURCE_EXHAUSTED;
  for (size_t c = 0; rc == GS__GRPC_OK && c < n; c++) {
    V1beta1__ContainerPreferredAllocationRequest *q = rq->container_requests[c];
    size_t want = q->allocation_size > 0 ? (size_t)q->allocation_size : 0;
    if (q->n_available_deviceids > GS_K8S_MAX_INSTANCES ||
        q->n_must_include_deviceids > GS_K8S_MAX_INSTANCES) {
      rc = fail(msg, size, GS__GRPC_INVALID_ARGUMENT,
                "more than %u device IDs in a preferred allocation request",
                GS_K8S_MAX_INSTANCES);
      break;
    }
    if (want > q->n_available_deviceids || q->n_must_include_deviceids > want) {
      rc = fail(msg, size, GS__GRPC_INVALID_ARGUMENT,
                "allocation size %d does not fit %zu available and %zu "
                "required devices",
                q->allocation_size, q->n_available_deviceids,
                q->n_must_include_deviceids);
      break;
    }
    v1beta1__container_preferred_allocation_response__init(&a[c]);
    ids[c] = calloc(want + 1, sizeof *ids[c]);
    if (!ids[c]) {
      rc = GS__GRPC_RESOURCE_EXHAUSTED;
      break;
    }
    size_t k = 0;
    for (size_t i = 0; i < q->n_must_include_deviceids && k < want; i++)
      if (!listed(ids[c], k, q->must_include_deviceids[i]))
        ids[c][k++] = q->must_include_deviceids[i];
    const gs_k8s_instance_t *first = k ? gs__dp_find(dp, ids[c][0]) : NULL;
    for (int pass = 0; pass < 2; pass++)
      for (unsigned i = 0; i < dp->inv->n && k < want; i++) {
        const gs_k8s_instance_t *in = &dp->inv->inst[i];
        if (!listed(q->available_deviceids, q->n_available_deviceids,
                    in->uuid) ||
            listed(ids[c], k, in->uuid))
          continue;
        if (pass == 0 && first && in->dev != first->dev)
          continue;
        ids[c][k++] = (char *)in->uuid;
        if (!first)
          first = in;
      }
    a[c].n_deviceids = k;
    a[c].deviceids = ids[c];
    p[c] = &a[c];
  }
  r.n_container_responses = n;
  r.container_responses = p;
  if (rc == GS__GRPC_OK)
    rc = pack(&r.base, out);
  for (size_t c = 0; ids && c < n; c++)
    free(ids[c]);
  free(ids);
  free(a);
  free(p);
  return rc;
}

int gs__dp_call(gs__dp_t *dp, const gs__dp_resource_t *res, const char *path,
                const uint8_t *req, size_t len, gs_buf_t *out, char *msg,
                size_t size) {
  ProtobufCMessage *m = NULL;
  int rc;
  msg[0] = '\0';
  if (strcmp(path, METHOD("GetDevicePluginOptions")) == 0) {
    V1beta1__DevicePluginOptions o = V1BETA1__DEVICE_PLUGIN_OPTIONS__INIT;
    o.get_preferred_allocation_available = true;
    return pack(&o.base, out);
  }
  if (strcmp(path, METHOD("PreStartContainer")) == 0) {
    V1beta1__PreStartContainerResponse o =
        V1BETA1__PRE_START_CONTAINER_RESPONSE__INIT;
    return pack(&o.base, out);
  }
  bool alloc = strcmp(path, METHOD("Allocate")) == 0;
  bool pref = strcmp(path, METHOD("GetPreferredAllocation")) == 0;
  if (!alloc && !pref)
    return fail(msg, size, GS__GRPC_UNIMPLEMENTED, "no method %.200s", path);
  m = alloc ? (ProtobufCMessage *)v1beta1__allocate_request__unpack(NULL, len,
                                                                    req)
            : (ProtobufCMessage *)v1beta1__preferred_allocation_request__unpack(
                  NULL, len, req);
  if (!m)
    return fail(msg, size, GS__GRPC_INVALID_ARGUMENT,
                "malformed %s request (%zu bytes)",
                alloc ? "Allocate" : "GetPreferredAllocation", len);
  rc = alloc ? allocate(dp, res, (V1beta1__AllocateRequest *)m, out, msg, size)
             : preferred(dp, (V1beta1__PreferredAllocationRequest *)m, out, msg,
                         size);
  protobuf_c_message_free_unpacked(m, NULL);
  return rc;
}
