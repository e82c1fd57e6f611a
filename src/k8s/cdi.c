/* The CDI spec of gpuslice's instances (cncf-tags/container-device-interface
 * SPEC.md): one device per compute instance under several names, one per
 * MIG profile class, each with the edits that give a container exactly its
 * instance. Built as a jansson document, written atomically. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fdio.h"
#include "gpuslice/k8s.h"

/* Version 0.5.0 is the lowest whose rules the spec meets (device names
 * that start with a digit; mount types come from 0.4.0): the container
 * toolkit writes the lowest version a spec needs, so that older runtimes
 * (podman 4.3 in Debian 12) read it too. */
#define CDI_VERSION "0.5.0"

static json_t *env_array(const gs_confinement_t *c) {
  json_t *a = json_array();
  char kv[sizeof c->env_name[0] + sizeof c->env_value[0] + 2];
  for (unsigned i = 0; i < c->n_env; i++) {
    snprintf(kv, sizeof kv, "%s=%s", c->env_name[i], c->env_value[i]);
    json_array_append_new(a, json_string(kv));
  }
  return a;
}

static json_t *node_array(const gs_k8s_instance_t *in) {
  json_t *a = json_array();
  for (unsigned i = 0; i < in->n_nodes; i++)
    json_array_append_new(a, json_pack("{s:s}", "path", in->node[i]));
  return a;
}

/* The host backend's edits: a createRuntime hook (run by the runtime in
 * its own namespaces once the container's init exists) that puts that
 * init into the instance's cgroups and CPUs. */
static json_t *host_hook(const gs_k8s_instance_t *in,
                         const gs_k8s_options_t *opt) {
  json_t *args = json_array();
  char id[64];
  const char *path = opt && opt->hook_path ? opt->hook_path : "gpuslice";
  json_array_append_new(args, json_string("gpuslice"));
  for (unsigned i = 0; opt && i < opt->n_hook_args; i++)
    json_array_append_new(args, json_string(opt->hook_args[i]));
  snprintf(id, sizeof id, "%u:%u", in->gi_id, in->ci_id);
  json_array_append_new(args, json_string("cdi"));
  json_array_append_new(args, json_string("hook"));
  json_array_append_new(args, json_string("--instance"));
  json_array_append_new(args, json_string(id));
  json_t *hook = json_pack("{s:s, s:s, s:o, s:i}", "hookName", "createRuntime",
                           "path", path, "args", args, "timeout", 10);
  if (opt && opt->n_hook_env) {
    json_t *env = json_array();
    for (unsigned i = 0; i < opt->n_hook_env; i++)
      json_array_append_new(env, json_string(opt->hook_env[i]));
    json_object_set_new(hook, "env", env);
  }
  return hook;
}

json_t *gs_cdi_instance_edits(const gs_k8s_inventory_t *inv,
                              const gs_k8s_instance_t *in,
                              const gs_k8s_options_t *opt) {
  json_t *e = json_pack("{s:o}", "env", env_array(&in->conf));
  if (strcmp(inv->backend, "host") == 0) {
    json_object_set_new(e, "hooks", json_pack("[o]", host_hook(in, opt)));
    return e;
  }
  json_object_set_new(e, "deviceNodes", node_array(in));
  if (in->mps_pipe[0]) /* the daemon's sockets, where the env says */
    json_object_set_new(e, "mounts",
                        json_pack("[{s:s, s:s, s:s, s:[s, s]}]", "hostPath",
                                  in->mps_pipe, "containerPath", in->mps_pipe,
                                  "type", "none", "options", "rbind", "rw"));
  return e;
}

static void add_device(json_t *devices, const char *name, json_t *edits) {
  json_array_append_new(
      devices, json_pack("{s:s, s:O}", "name", name, "containerEdits", edits));
}

/* "mig-1g.10gb": every MIG instance of a profile, for a container that
 * takes a whole class (the toolkit's "all", narrowed). Soft and host
 * instances have none: an MPS client and a cgroup hold one instance's
 * limits, and a union would have no limit at all. */
static void add_classes(json_t *devices, const gs_k8s_inventory_t *inv) {
  for (unsigned i = 0; i < inv->n; i++) {
    const gs_k8s_instance_t *in = &inv->inst[i];
    bool first = true;
    for (unsigned k = 0; k < i && first; k++)
      first = strcmp(inv->inst[k].profile, in->profile) != 0;
    if (!first)
      continue;
    char name[96], uuids[4096] = "";
    json_t *nodes = json_array();
    for (unsigned k = i; k < inv->n; k++) {
      const gs_k8s_instance_t *o = &inv->inst[k];
      if (strcmp(o->profile, in->profile) != 0)
        continue;
      size_t len = strlen(uuids);
      snprintf(uuids + len, sizeof uuids - len, "%s%s", len ? "," : "",
               o->uuid);
      for (unsigned n = 0; n < o->n_nodes; n++) {
        bool have = false;
        for (size_t m = 0; m < json_array_size(nodes); m++)
          have |= strcmp(json_string_value(
                             json_object_get(json_array_get(nodes, m), "path")),
                         o->node[n]) == 0;
        if (!have)
          json_array_append_new(nodes, json_pack("{s:s}", "path", o->node[n]));
      }
    }
    char vis[4200], cuda[4200];
    snprintf(vis, sizeof vis, "NVIDIA_VISIBLE_DEVICES=%s", uuids);
    snprintf(cuda, sizeof cuda, "CUDA_VISIBLE_DEVICES=%s", uuids);
    snprintf(name, sizeof name, "mig-%s", in->profile);
    json_t *edits =
        json_pack("{s:[s, s], s:o}", "env", vis, cuda, "deviceNodes", nodes);
    add_device(devices, name, edits);
    json_decref(edits);
  }
}

json_t *gs_cdi_spec(const gs_k8s_inventory_t *inv,
                    const gs_k8s_options_t *opt) {
  json_t *devices = json_array();
  char name[GS_UUID_MAX + 32];
  for (unsigned i = 0; i < inv->n; i++) {
    const gs_k8s_instance_t *in = &inv->inst[i];
    json_t *edits = gs_cdi_instance_edits(inv, in, opt);
    snprintf(name, sizeof name, "%u:%u:%u", in->dev, in->gi_id, in->ci_id);
    add_device(devices, name, edits);
    if (in->single_ci) {
      snprintf(name, sizeof name, "%u:%u", in->dev, in->gi_id);
      add_device(devices, name, edits);
    }
    if (in->uuid[0])
      add_device(devices, in->uuid, edits);
    json_decref(edits);
  }
  if (strcmp(inv->backend, "mig") == 0)
    add_classes(devices, inv);
  return json_pack("{s:s, s:s, s:o}", "cdiVersion", CDI_VERSION, "kind",
                   GS_CDI_KIND, "devices", devices);
}

/* temp file beside path, fsync, rename: a runtime reading the directory
 * sees the old spec or the new one, never half of one. */
static int write_atomic(const char *path, const char *text, size_t len,
                        gs_error_t *err) {
  char tmp[4200];
  int n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  if (n < 0 || (size_t)n >= sizeof tmp)
    return gs_error_set(err, GS_EINVAL, "CDI spec path too long: %s", path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return gs_error_sys(err, errno, "creating %s", tmp);
  int rc = gs_write_all(fd, text, len) == 0 && fsync(fd) == 0 ? 0 : errno;
  if (close(fd) != 0 && rc == 0)
    rc = errno;
  if (rc == 0 && rename(tmp, path) != 0)
    rc = errno;
  if (rc != 0) {
    unlink(tmp);
    return gs_error_sys(err, rc, "writing the CDI spec %s", path);
  }
  return GS_OK;
}

static int add_newline(char **text, size_t *len, gs_error_t *err) {
  char *t = realloc(*text, *len + 2);
  if (!t)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  t[(*len)++] = '\n';
  t[*len] = '\0';
  *text = t;
  return GS_OK;
}

int gs_cdi_write(json_t *spec, const char *path, gs_cdi_format_t format,
                 gs_error_t *err) {
  char *text = NULL;
  size_t len = 0;
  int rc = GS_OK;
  if (format == GS_CDI_YAML) {
    rc = gs_cdi_yaml(spec, &text, &len, err);
  } else {
    text = json_dumps(spec, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    len = text ? strlen(text) : 0;
    if (!text)
      rc = gs_error_set(err, GS_ENOMEM, "out of memory");
    else
      rc = add_newline(&text, &len, err);
  }
  if (rc == GS_OK && !text)
    rc = gs_error_set(err, GS_ENOMEM, "out of memory");
  if (rc == GS_OK && strcmp(path, "-") == 0)
    rc = fwrite(text, 1, len, stdout) == len
             ? GS_OK
             : gs_error_sys(err, errno, "writing the CDI spec to stdout");
  else if (rc == GS_OK)
    rc = write_atomic(path, text, len, err);
  free(text);
  return rc;
}
