/* gpuslice k8s mig-manager: applies the mig-parted config set named by the
 * node label nvidia.com/mig.config (read from the API server's Node, or a
 * label file) with the incremental, transactional apply of src/apply, and
 * writes the GPU operator's state label (pending, success, failed) back. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gpuslice/apply.h"
#include "gpuslice/k8s.h"
#include "k8s/apiserver_int.h"

#define LABEL_VALUE_MAX 256

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig) {
  stop_signal = sig;
}

static void mm_log(const gs_k8s_mig_manager_options_t *opt, const char *fmt,
                   ...) __attribute__((format(printf, 2, 3)));

static void mm_log(const gs_k8s_mig_manager_options_t *opt, const char *fmt,
                   ...) {
  char line[1400];
  va_list ap;
  if (!opt->log)
    return;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  opt->log(opt->log_data, line);
}

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t')
    s++;
  size_t n = strlen(s);
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' ||
               s[n - 1] == '\r'))
    s[--n] = '\0';
  return s;
}

int gs_k8s_label_read(const char *path, const char *key, char *value,
                      size_t size, gs_error_t *err) {
  FILE *f = fopen(path, "r");
  if (!f) {
    if (errno == ENOENT)
      return 0;
    return -gs_error_sys(err, errno, "label file %s", path);
  }
  char line[1024];
  int found = 0;
  while (fgets(line, sizeof line, f)) {
    char *s = trim(line), *eq = strchr(s, '=');
    if (*s == '#' || !eq)
      continue;
    *eq = '\0';
    if (strcmp(trim(s), key) != 0)
      continue;
    const char *v = trim(eq + 1);
    if (strlen(v) >= size) {
      found = -gs_error_set(err, GS_EINVAL, "%s: label %s is longer than %zu",
                            path, key, size - 1);
      break;
    }
    snprintf(value, size, "%s", v);
    found = 1; /* the last one wins, as a re-labelled node's does */
  }
  fclose(f);
  return found;
}

/* STATE_FILE replaced atomically: the state and the config it is about. */
static int write_state(const char *path, const char *config, const char *state,
                       gs_error_t *err) {
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  FILE *f = fopen(tmp, "w");
  if (!f)
    return gs_error_sys(err, errno, "state file %s", tmp);
  fprintf(f, "%s=%s\n%s=%s\n", GS_K8S_MIG_APPLIED_LABEL, config,
          GS_K8S_MIG_STATE_LABEL, state);
  int bad = ferror(f);
  if (fclose(f) != 0 || bad) {
    unlink(tmp);
    return gs_error_sys(err, errno ? errno : EIO, "writing %s", tmp);
  }
  if (rename(tmp, path) != 0) {
    int e = errno;
    unlink(tmp);
    return gs_error_sys(err, e, "renaming %s to %s", tmp, path);
  }
  return GS_OK;
}

static int load_devices(gs_backend_t *be, gs_device_t *devs, unsigned *n,
                        gs_error_t *err) {
  unsigned count = 0;
  int rc = be->ops->device_count(be, &count, err);
  if (rc != GS_OK)
    return rc;
  if (count > GS_MAX_DEVICES)
    count = GS_MAX_DEVICES;
  for (unsigned d = 0; d < count && rc == GS_OK; d++)
    rc = be->ops->device_get(be, d, &devs[d], err);
  *n = count;
  return rc;
}

typedef struct mm_job_s {
  gs_config_t cfg;
  gs_device_t devs[GS_MAX_DEVICES];
  gs_want_t want[GS_MAX_DEVICES];
  bool selected[GS_MAX_DEVICES];
  gs_apply_report_t report;
} mm_job_t;

int gs_k8s_mig_apply(gs_backend_t *be, const char *config_file,
                     const char *name, gs_error_t *err) {
  unsigned n_devs = 0;
  mm_job_t *job = calloc(1, sizeof *job);
  if (!job)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  int rc = gs_config_load_file(&job->cfg, config_file, err);
  const gs_config_set_t *set = NULL;
  if (rc == GS_OK && !(set = gs_config_find(&job->cfg, name, err)))
    rc = err->code;
  if (rc == GS_OK)
    rc = load_devices(be, job->devs, &n_devs, err);
  if (rc == GS_OK)
    rc = gs_want_from_config(&job->cfg, set, job->devs, n_devs, job->want,
                             job->selected, err);
  gs_change_t change = {.kind = GS_CHANGE_APPLY,
                        .want = job->want,
                        .selected = job->selected,
                        .n_devs = n_devs};
  if (rc == GS_OK)
    rc = gs_change_run(be, &change, &job->report, err);
  if (rc != GS_OK)
    gs_error_prefix(err, "config '%s' of %s: ", name, config_file);
  gs_config_release(&job->cfg);
  free(job);
  return rc;
}

static void sleep_ms(unsigned ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL); /* a signal cuts it short: the loop then stops */
}

/* Where the label is read and the state written: a label file and its
 * state file, or the Node object on the API server. */
typedef struct mm_source_s {
  const char *label_file;
  char state_file[4096];
  gs__k8s_api_t *api; /* non-NULL: the API server */
} mm_source_t;

static int source_read(mm_source_t *src, char *value, size_t size,
                       gs_error_t *err) {
  if (src->api)
    return gs__k8s_api_label_get(src->api, GS_K8S_MIG_CONFIG_LABEL, value, size,
                                 err);
  return gs_k8s_label_read(src->label_file, GS_K8S_MIG_CONFIG_LABEL, value,
                           size, err);
}

static int source_report(mm_source_t *src, const char *config,
                         const char *state, gs_error_t *err) {
  static const char *const keys[] = {GS_K8S_MIG_STATE_LABEL,
                                     GS_K8S_MIG_APPLIED_LABEL};
  const char *values[] = {state, config};
  if (src->api)
    return gs__k8s_api_labels_patch(src->api, keys, values, 2, err);
  return write_state(src->state_file, config, state, err);
}

/* One label value: pending, apply, success or failed. */
static int handle(gs_backend_t *be, const gs_k8s_mig_manager_options_t *opt,
                  mm_source_t *src, const char *config, gs_error_t *err) {
  int rc = source_report(src, config, "pending", err);
  if (rc != GS_OK)
    return rc;
  mm_log(opt, "applying config '%s' on %s", config,
         opt->node ? opt->node : "this node");
  gs_error_t why;
  gs_error_clear(&why);
  int applied = gs_k8s_mig_apply(be, opt->config_file, config, &why);
  if (applied == GS_OK) {
    mm_log(opt, "config '%s' applied", config);
    if (opt->changed)
      opt->changed(opt->changed_data);
  } else {
    mm_log(opt, "failed: %s", why.msg);
  }
  return source_report(src, config, applied == GS_OK ? "success" : "failed",
                       err);
}

static int source_open(mm_source_t *src,
                       const gs_k8s_mig_manager_options_t *opt,
                       gs_error_t *err) {
  memset(src, 0, sizeof *src);
  if (!opt->config_file || (!opt->label_file && !opt->api_server))
    return gs_error_set(err, GS_EINVAL,
                        "mig-manager needs a config file and "
                        "a label file or an API server");
  if (!opt->label_file)
    return gs__k8s_api_create(&src->api, opt->api_server, opt->token_file,
                              opt->ca_file, opt->node, err);
  src->label_file = opt->label_file;
  snprintf(src->state_file, sizeof src->state_file, "%s",
           opt->state_file ? opt->state_file : opt->label_file);
  if (!opt->state_file)
    strncat(src->state_file, ".state",
            sizeof src->state_file - strlen(src->state_file) - 1);
  return GS_OK;
}

/* An API server error is logged (once while it lasts) and retried at the
 * next check: the node's label stays the source of truth. */
static void api_trouble(const gs_k8s_mig_manager_options_t *opt, char *seen,
                        size_t size, const gs_error_t *why) {
  if (strcmp(seen, why->msg) != 0)
    mm_log(opt, "API server: %s (retrying every %u ms)", why->msg,
           opt->interval_ms ? opt->interval_ms : 1000);
  snprintf(seen, size, "%s", why->msg);
}

static void log_start(const gs_k8s_mig_manager_options_t *opt,
                      const mm_source_t *src) {
  if (src->api)
    mm_log(opt, "watching %s of node %s on %s (config file %s)",
           GS_K8S_MIG_CONFIG_LABEL, opt->node, opt->api_server,
           opt->config_file);
  else
    mm_log(opt, "watching %s in %s (config file %s, state in %s)",
           GS_K8S_MIG_CONFIG_LABEL, opt->label_file, opt->config_file,
           src->state_file);
}

int gs_k8s_mig_manager_run(gs_backend_t *be,
                           const gs_k8s_mig_manager_options_t *opt,
                           gs_error_t *err) {
  char value[LABEL_VALUE_MAX], last[LABEL_VALUE_MAX] = "", seen[1024] = "";
  bool have_last = false;
  mm_source_t src;
  int rc = source_open(&src, opt, err);
  if (rc != GS_OK)
    return rc;
  unsigned ms = opt->interval_ms ? opt->interval_ms : 1000;
  struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART */
  stop_signal = 0;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  log_start(opt, &src);
  while (!stop_signal && rc == GS_OK) {
    gs_error_t why;
    gs_error_clear(&why);
    int found = source_read(&src, value, sizeof value, &why);
    if (found == 1 && (!have_last || strcmp(value, last) != 0)) {
      found = -handle(be, opt, &src, value, &why);
      if (found == GS_OK) {
        snprintf(last, sizeof last, "%s", value);
        have_last = true;
      }
    } else if (found == 0 && have_last) {
      mm_log(opt, "label %s removed: layout left as it is",
             GS_K8S_MIG_CONFIG_LABEL);
      have_last = false;
      last[0] = '\0';
    }
    if (found < 0 && !src.api) {
      *err = why;
      rc = -found;
    } else if (found < 0) {
      api_trouble(opt, seen, sizeof seen, &why);
    } else if (seen[0]) {
      mm_log(opt, "API server answering again");
      seen[0] = '\0';
    }
    if (rc == GS_OK && !stop_signal)
      sleep_ms(ms);
  }
  if (rc == GS_OK)
    mm_log(opt, "stopping on signal %d", (int)stop_signal);
  gs__k8s_api_destroy(src.api);
  return rc;
}
