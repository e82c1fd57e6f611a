/* gpuslice worker's multi-instance mode: one process hosts several
 * instances' workers (green isolation: a GPU's green contexts only run side
 * by side inside one process); a control fd lets gpuslice serve add and
 * remove instances while the others keep serving, untouched. */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "worker_hosted.h"

#define REMOVE_DRAIN_MS 5000u /* a removed instance's in-flight requests */
#define CONTROL_LINE_MAX 256
#define WHY_MAX sizeof(((gs_error_t *)0)->msg)
#define GPU_MAX_INSTANCES 7u /* the thread pool is sized for a full GPU */

typedef struct slot_s {
  hosted_t inst;
  gs_worker_t *w;   /* NULL: a free slot */
  pthread_t thread; /* runs w */
  bool running;     /* thread started, not yet joined */
  bool removing;    /* the control thread drains and joins it */
  int rc;
  gs_error_t err;
} slot_t;

/* The process's instances. The slot table, stopping and ctl_busy are
 * under mu; a slot's worker changes only on the control thread (or before
 * it starts), so that thread reads it without the lock. */
typedef struct host_s {
  gs_worker_options_t base;
  slot_t slot[WORKER_MAX_HOSTED];
  pthread_mutex_t mu;
  pthread_cond_t ctl_idle;
  bool ctl_busy, stopping;
  bool device_failed; /* a removed instance's device failed: exit 1 */
  sem_t wake;         /* the main thread: time to stop (signal-safe to post) */
  int ready_fd, control_fd;
  pid_t parent;
} host_t;

static host_t host = {.mu = PTHREAD_MUTEX_INITIALIZER,
                      .ctl_idle = PTHREAD_COND_INITIALIZER};

static void on_signal(int sig) {
  (void)sig;
  sem_post(&host.wake);
}

void worker_report_models(const gs_worker_t *w) {
  const char *name, *reason;
  bool ready;
  for (size_t i = 0; gs_worker_model(w, i, &name, &ready, &reason); i++) {
    if (ready && gs_worker_model_load_note(w, i)[0])
      fprintf(stderr, "gpuslice worker: model %s: %s\n", name,
              gs_worker_model_load_note(w, i));
    const char *v = gs_worker_model_version(w, i);
    if (ready)
      fprintf(stderr, "gpuslice worker: model '%s' is ready (version %s)\n",
              name, v);
    else
      fprintf(stderr, "gpuslice worker: model '%s' is not ready: %s\n", name,
              reason);
  }
}

void worker_note(void *ctx, const char *line) {
  const char *instance = ctx;
  if (instance)
    fprintf(stderr, "gpuslice worker: instance %s: %s\n", instance, line);
  else
    fprintf(stderr, "gpuslice worker: %s\n", line);
}

void worker_report_ready(void) {
  fprintf(stderr, "gpuslice worker: ready %ld ms after the process started\n",
          cli_process_age_ms());
}

int worker_exit_status(const gs_worker_t *w) {
  const char *why = w ? gs_worker_device_failure(w) : NULL;
  if (!why)
    return CLI_OK;
  fprintf(stderr, "gpuslice worker: stopped, to be restarted: %s\n", why);
  return CLI_FAIL;
}

/* A line for the supervisor on the ready fd; false (and the process
 * stops) when it is gone. */
static bool tell(const char *line) {
  size_t len = strlen(line);
  if (host.ready_fd <= 0)
    return true;
  if (write(host.ready_fd, line, len) == (ssize_t)len &&
      getppid() == host.parent)
    return true;
  fprintf(stderr, "gpuslice worker: the supervisor is gone: stopping\n");
  sem_post(&host.wake);
  return false;
}

/* Loads one instance's models and opens its listeners (free ports): a GPU
 * model plans every batch size at load, seconds, so the first instances
 * load side by side. */
static void *create_slot(void *arg) {
  slot_t *s = arg;
  gs_worker_options_t o = host.base;
  o.port = 0;
  o.grpc_port = 0;
  o.metrics = false;
  o.sm_first = s->inst.sm_first;
  o.sm_count = s->inst.sm_count;
  if (s->inst.rate_limit)
    o.rate_limit = s->inst.rate_limit;
  o.note_ctx = s->inst.id;
  s->rc = gs_worker_create(&s->w, &o, &s->err);
  return NULL;
}

static void *run_slot(void *arg) {
  slot_t *s = arg;
  s->rc = gs_worker_run(s->w, &s->err);
  pthread_mutex_lock(&host.mu);
  bool removed = s->removing;
  pthread_mutex_unlock(&host.mu);
  if (!removed)
    sem_post(&host.wake); /* one ends: all end, the supervisor restarts */
  return NULL;
}

/* Under mu. */
static int start_slot(slot_t *s) {
  if (pthread_create(&s->thread, NULL, run_slot, s) != 0)
    return -1;
  s->running = true;
  return 0;
}

static void announce(const slot_t *s, char *line, size_t size) {
  fprintf(stderr, "gpuslice worker: instance %s (SMs %u+%u) on http %u\n",
          s->inst.id, s->inst.sm_first, s->inst.sm_count, gs_worker_port(s->w));
  worker_report_models(s->w);
  snprintf(line, size, "ready id=%s http=%u grpc=%u\n", s->inst.id,
           gs_worker_port(s->w), gs_worker_grpc_port(s->w));
}

/* ---- the control channel ----------------------------------------------- */

/* Why the process cannot take instance id on those SMs; "" when it can
 * (*free_slot then is its slot). Under mu. */
static void check_add(const char *id, unsigned first, unsigned count,
                      slot_t **free_slot, char *why, size_t size) {
  *free_slot = NULL;
  why[0] = '\0';
  if (count == 0)
    snprintf(why, size, "no SMs given");
  for (unsigned i = 0; i < WORKER_MAX_HOSTED && !why[0]; i++) {
    const slot_t *s = &host.slot[i];
    if (!s->w) {
      if (!*free_slot)
        *free_slot = &host.slot[i];
    } else if (strcmp(s->inst.id, id) == 0) {
      snprintf(why, size, "it is hosted here already");
    } else if (first < s->inst.sm_first + s->inst.sm_count &&
               s->inst.sm_first < first + count) {
      snprintf(why, size, "SMs %u+%u overlap instance %s's %u+%u", first, count,
               s->inst.id, s->inst.sm_first, s->inst.sm_count);
    }
  }
  if (!why[0] && !*free_slot)
    snprintf(why, size, "this process hosts %d instances already",
             WORKER_MAX_HOSTED);
}

static void add_failed(const char *id, char *why) {
  char line[WHY_MAX + 96];
  for (char *p = why; *p; p++)
    if (*p == '\n')
      *p = ' '; /* one line on the ready fd */
  fprintf(stderr, "gpuslice worker: instance %s not added: %s\n", id, why);
  snprintf(line, sizeof line, "failed id=%s %s\n", id, why);
  tell(line);
}

static void add_instance(const char *id, unsigned first, unsigned count,
                         unsigned rate) {
  char why[WHY_MAX], line[160];
  slot_t *s;
  pthread_mutex_lock(&host.mu);
  check_add(id, first, count, &s, why, sizeof why);
  if (!why[0]) {
    memset(s, 0, sizeof *s);
    snprintf(s->inst.id, sizeof s->inst.id, "%s", id);
    s->inst.sm_first = first;
    s->inst.sm_count = count;
    s->inst.rate_limit = rate;
  }
  pthread_mutex_unlock(&host.mu);
  if (why[0]) {
    add_failed(id, why);
    return;
  }
  create_slot(s);
  if (s->rc != GS_OK) {
    snprintf(why, sizeof why, "%s", s->err.msg);
    s->w = NULL;
    add_failed(id, why);
    return;
  }
  announce(s, line, sizeof line);
  pthread_mutex_lock(&host.mu);
  int rc = host.stopping ? -1 : start_slot(s);
  pthread_mutex_unlock(&host.mu);
  if (rc != 0) {
    gs_worker_destroy(s->w);
    s->w = NULL;
    snprintf(why, sizeof why, "%s",
             host.stopping ? "the process is stopping"
                           : "cannot start a thread to serve it");
    add_failed(id, why);
    return;
  }
  tell(line);
}

/* Drains the instance's requests, closes its listeners, frees its
 * sessions (and their green context). */
static void remove_instance(const char *id) {
  char line[CONTROL_LINE_MAX];
  slot_t *s = NULL;
  pthread_mutex_lock(&host.mu);
  for (unsigned i = 0; i < WORKER_MAX_HOSTED && !s; i++)
    if (host.slot[i].w && host.slot[i].running &&
        strcmp(host.slot[i].inst.id, id) == 0)
      s = &host.slot[i];
  if (s)
    s->removing = true;
  pthread_mutex_unlock(&host.mu);
  if (!s) { /* its add failed: nothing to remove, but answered alike */
    snprintf(line, sizeof line, "removed id=%s (it was not hosted)\n", id);
    tell(line);
    return;
  }
  gs_worker_drain(s->w, REMOVE_DRAIN_MS);
  pthread_join(s->thread, NULL);
  /* its device failed meanwhile: the process's one context is gone too */
  bool failed = worker_exit_status(s->w) != CLI_OK;
  gs_worker_destroy(s->w);
  pthread_mutex_lock(&host.mu);
  s->w = NULL;
  s->running = s->removing = false;
  host.device_failed |= failed;
  pthread_mutex_unlock(&host.mu);
  if (failed)
    sem_post(&host.wake);
  fprintf(stderr, "gpuslice worker: instance %s removed\n", id);
  snprintf(line, sizeof line, "removed id=%s\n", id);
  tell(line);
}

/* "add ID FIRST COUNT [RATE]" and nothing more; *rate 0 without RATE. */
static bool parse_add(const char *line, char id[64], unsigned *first,
                      unsigned *count, unsigned *rate) {
  int end = 0;
  char tail;
  *rate = 0;
  if (sscanf(line, "add %63s %u %u%n", id, first, count, &end) != 3)
    return false;
  const char *rest = line + end;
  return sscanf(rest, " %c", &tail) != 1 ||
         sscanf(rest, "%u %c", rate, &tail) == 1;
}

/* One command; false once the process is stopping. */
static bool control_line(const char *line) {
  char id[64], tail;
  unsigned first, count, rate;
  pthread_mutex_lock(&host.mu);
  bool stopping = host.stopping;
  host.ctl_busy = !stopping;
  pthread_mutex_unlock(&host.mu);
  if (stopping)
    return false;
  if (parse_add(line, id, &first, &count, &rate))
    add_instance(id, first, count, rate);
  else if (sscanf(line, "remove %63s %c", id, &tail) == 1)
    remove_instance(id);
  else {
    fprintf(stderr, "gpuslice worker: unknown control line '%.100s'\n", line);
    tell("failed id=- unknown control line\n");
  }
  pthread_mutex_lock(&host.mu);
  host.ctl_busy = false;
  pthread_cond_broadcast(&host.ctl_idle);
  pthread_mutex_unlock(&host.mu);
  return true;
}

/* Reads lines until the supervisor closes the channel (it is gone: its
 * death signal ends this process) or the process stops. */
static void *control_main(void *arg) {
  char buf[CONTROL_LINE_MAX];
  size_t len = 0;
  (void)arg;
  for (;;) {
    ssize_t got = read(host.control_fd, buf + len, sizeof buf - 1 - len);
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0)
      return NULL;
    len += (size_t)got;
    buf[len] = '\0';
    char *nl;
    while ((nl = strchr(buf, '\n')) != NULL) {
      *nl = '\0';
      if (!control_line(buf))
        return NULL;
      size_t used = (size_t)(nl + 1 - buf);
      memmove(buf, nl + 1, len - used + 1);
      len -= used;
    }
    if (len + 1 >= sizeof buf) {
      fprintf(stderr, "gpuslice worker: a control line is over %d bytes\n",
              CONTROL_LINE_MAX);
      len = 0;
    }
  }
}

/* ---- the process ------------------------------------------------------- */

/* Loads the first instances side by side; on a failure none stays. */
static int create_first(const hosted_t *hosted, unsigned n) {
  unsigned made = 0;
  int rc = CLI_OK;
  for (; made < n; made++) {
    host.slot[made].inst = hosted[made];
    if (pthread_create(&host.slot[made].thread, NULL, create_slot,
                       &host.slot[made]) != 0)
      break;
  }
  for (unsigned i = 0; i < made; i++)
    pthread_join(host.slot[i].thread, NULL);
  for (unsigned i = 0; i < n && rc == CLI_OK; i++) {
    slot_t *s = &host.slot[i];
    if (i >= made)
      s->rc =
          gs_error_set(&s->err, GS_ESYSTEM, "cannot start a thread to load it");
    if (s->rc != GS_OK) {
      gs_error_prefix(&s->err, "instance %s: ", s->inst.id);
      rc = cli_fail("worker", &s->err);
    }
  }
  for (unsigned i = 0; i < made && rc != CLI_OK; i++) {
    gs_worker_destroy(host.slot[i].w);
    host.slot[i].w = NULL;
  }
  return rc;
}

/* Starts the first instances' loops and says they are ready. */
static int start_first(unsigned n) {
  char lines[WORKER_MAX_HOSTED * 160] = "";
  size_t len = 0;
  int rc = CLI_OK;
  for (unsigned i = 0; i < n; i++) {
    announce(&host.slot[i], lines + len, sizeof lines - len);
    len += strlen(lines + len);
  }
  pthread_mutex_lock(&host.mu);
  for (unsigned i = 0; i < n && rc == CLI_OK; i++)
    if (start_slot(&host.slot[i]) != 0) {
      fprintf(stderr, "gpuslice worker: cannot start a thread\n");
      rc = CLI_FAIL;
      sem_post(&host.wake);
    }
  pthread_mutex_unlock(&host.mu);
  if (rc == CLI_OK) {
    worker_report_ready();
    tell(lines);
  }
  return rc;
}

/* Stops every instance once woken (a signal, one instance ending, the
 * supervisor gone), after the control thread's command in progress. */
static int stop_all(int rc) {
  while (sem_wait(&host.wake) != 0 && errno == EINTR)
    ;
  pthread_mutex_lock(&host.mu);
  host.stopping = true;
  while (host.ctl_busy)
    pthread_cond_wait(&host.ctl_idle, &host.mu);
  for (unsigned i = 0; i < WORKER_MAX_HOSTED; i++)
    if (host.slot[i].running)
      gs_worker_stop(host.slot[i].w);
  pthread_mutex_unlock(&host.mu);
  for (unsigned i = 0; i < WORKER_MAX_HOSTED; i++) {
    slot_t *s = &host.slot[i];
    if (s->running) {
      pthread_join(s->thread, NULL);
      if (s->rc != GS_OK && rc == CLI_OK)
        rc = cli_fail("worker", &s->err);
    }
    /* one instance's device failed: the process's context is gone */
    if (rc == CLI_OK)
      rc = host.device_failed ? CLI_FAIL : worker_exit_status(s->w);
    gs_worker_destroy(s->w);
    s->w = NULL;
  }
  return rc;
}

int worker_host_instances(const gs_worker_options_t *base,
                          const hosted_t *hosted, unsigned n, int ready_fd,
                          int control_fd, pid_t parent) {
  host.base = *base;
  host.ready_fd = ready_fd;
  host.control_fd = control_fd;
  host.parent = parent;
  if (sem_init(&host.wake, 0, 0) != 0) {
    fprintf(stderr, "gpuslice worker: sem_init: %s\n", strerror(errno));
    return CLI_FAIL;
  }
  int rc = create_first(hosted, n);
  if (rc != CLI_OK)
    return rc;
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  rc = start_first(n);
  if (rc == CLI_OK && control_fd > 0) {
    pthread_t ctl;
    if (pthread_create(&ctl, NULL, control_main, NULL) == 0)
      pthread_detach(ctl);
    else {
      fprintf(stderr, "gpuslice worker: cannot start the control thread\n");
      rc = CLI_FAIL;
      sem_post(&host.wake);
    }
  } else if (ready_fd > 0) {
    close(ready_fd); /* no more lines: the supervisor sees the end */
    host.ready_fd = 0;
  }
  return stop_all(rc);
}

unsigned worker_pool_instances(unsigned n_hosted, bool control) {
  return control && n_hosted < GPU_MAX_INSTANCES ? GPU_MAX_INSTANCES : n_hosted;
}
