/* The MPS control daemons of the soft backend: one per GPU, started by
 * gpuslice with its own pipe and log directories under the state directory
 * (so that a fault on one GPU cannot stall another), stopped once the GPU
 * has no instances; and the arithmetic of MPS's active-thread percentage.
 * MPS static SM partitions (disjoint SMs) are only detected: using them is
 * not implemented yet, so SMs are capped per process, not reserved. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend/soft_int.h"

extern char **environ;

#define MPS_PID_FILE "nvidia-cuda-mps-control.pid"
#define MPS_SOCKET "control"
#define MPS_DEFAULT_PIPE "/tmp/nvidia-mps"
#define MPS_WAIT_MS 10000 /* for the daemon to come up or go, and commands */
#define MPS_POLL_US 10000
#define MPS_OUTPUT_MAX 4096 /* of a command's output kept for messages */
#define MPS_MAX_FDS 65536   /* closed in the child before exec */

/* ---- the active-thread percentage -------------------------------------- */

unsigned gs__mps_sms_at(unsigned percent, unsigned total) {
  if (percent >= 100)
    return total;
  unsigned sms = (unsigned)((unsigned long long)percent * total / 100);
  return sms & ~1u; /* whole TPCs */
}

unsigned gs__mps_percentage(unsigned want, unsigned total) {
  for (unsigned p = 1; p < 100; p++)
    if (gs__mps_sms_at(p, total) >= want)
      return p;
  return 100;
}

/* ---- directories and the daemon's pid ---------------------------------- */

/* The daemon binds PIPE/control and PIPE/control_privileged: the longer
 * must fit a unix socket's sun_path. */
#define MPS_LONGEST_SOCKET "control_privileged"

static bool socket_fits(const char *pipe) {
  return strlen(pipe) + sizeof "/" MPS_LONGEST_SOCKET <=
         sizeof((struct sockaddr_un *)0)->sun_path;
}

/* The pipe directory lives under the state directory; where that path is
 * too long for the daemon's sockets (a deep temporary directory), under
 * /tmp/gpuslice-mps-HASH instead, HASH taken from the state directory, so
 * every gpuslice process of that state directory finds the same place. */
int gs__mps_dirs(const gs__soft_t *s, unsigned dev, char *pipe, char *log,
                 gs_error_t *err) {
  const char *base = s->core.state_dir, *uuid = s->gpu[dev].uuid;
  int a = snprintf(pipe, GS__PATH_MAX, "%s/mps/%s/pipe", base, uuid);
  int b = snprintf(log, GS__PATH_MAX, "%s/mps/%s/log", base, uuid);
  if (a >= 0 && a < GS__PATH_MAX && !socket_fits(pipe)) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *c = base; *c; c++)
      h = (h ^ (uint8_t)*c) * 16777619u;
    a = snprintf(pipe, GS__PATH_MAX, "/tmp/gpuslice-mps-%08x/%s/pipe", h, uuid);
  }
  if (a < 0 || b < 0 || a >= GS__PATH_MAX || b >= GS__PATH_MAX ||
      !socket_fits(pipe))
    return gs_error_set(err, GS_EINVAL,
                        "MPS pipe directory %s is too long for the daemon's "
                        "sockets (%zu characters, at most %zu); use a shorter "
                        "--state-dir",
                        pipe, strlen(pipe) + sizeof MPS_LONGEST_SOCKET,
                        sizeof((struct sockaddr_un *)0)->sun_path - 1);
  return GS_OK;
}

void gs__mps_off_dir(const gs__soft_t *s, char *buf, size_t size) {
  snprintf(buf, size, "%s/mps/off", s->core.state_dir);
}

static bool alive(pid_t pid) {
  return pid > 0 && gs__proc_stat(pid, NULL, NULL);
}

static pid_t read_pid(const char *dir) {
  char path[GS__PATH_MAX + 64], text[32];
  snprintf(path, sizeof path, "%s/%s", dir, MPS_PID_FILE);
  if (!gs__read_text(path, text, sizeof text))
    return 0;
  long pid = strtol(text, NULL, 10);
  return pid > 0 && pid <= INT32_MAX ? (pid_t)pid : 0;
}

pid_t gs__mps_daemon_pid(const gs__soft_t *s, unsigned dev) {
  char pipe[GS__PATH_MAX], log[GS__PATH_MAX];
  if (gs__mps_dirs(s, dev, pipe, log, NULL) != GS_OK)
    return 0;
  pid_t pid = read_pid(pipe);
  return alive(pid) ? pid : 0;
}

/* What a daemon that died left: its pid file, socket and the like. */
static void clean_dir(const char *dir) {
  char path[GS__PATH_MAX + 300];
  DIR *d = opendir(dir);
  if (!d)
    return;
  struct dirent *ent;
  while ((ent = readdir(d)) != NULL) {
    if (ent->d_name[0] == '.' && (!ent->d_name[1] || ent->d_name[1] == '.'))
      continue;
    snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
    unlink(path);
  }
  closedir(d);
}

static int make_dir(const char *path, gs_error_t *err) {
  if (mkdir(path, 0700) != 0 && errno != EEXIST)
    return gs_error_sys(err, errno, "creating %s", path);
  return GS_OK;
}

/* mkdir -p of a pipe directory outside the state directory (in /tmp): each
 * level made private, or, if it exists, a directory of ours, never a link
 * or another user's (whose daemon would then be ours to talk to). */
static int make_private_path(const char *path, gs_error_t *err) {
  char buf[GS__PATH_MAX];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *c = buf + 1;; c++) {
    if (*c != '/' && *c)
      continue;
    char keep = *c;
    *c = '\0';
    struct stat st;
    int rc = make_dir(buf, err);
    if (rc != GS_OK)
      return rc;
    if (lstat(buf, &st) != 0)
      return gs_error_sys(err, errno, "checking %s", buf);
    if (!S_ISDIR(st.st_mode) ||
        (strncmp(buf, "/tmp/", 5) == 0 &&
         (st.st_uid != geteuid() || (st.st_mode & 022))))
      return gs_error_set(
          err, GS_EPERM,
          "%s is not a private directory of this user's: the MPS "
          "pipe directory cannot go there",
          buf);
    if (!(*c = keep))
      return GS_OK;
  }
}

static int make_dirs(const gs__soft_t *s, unsigned dev, const char *pipe,
                     const char *log, gs_error_t *err) {
  char path[GS__PATH_MAX + 64];
  snprintf(path, sizeof path, "%s/mps", s->core.state_dir);
  int rc = make_dir(path, err);
  if (rc == GS_OK &&
      (size_t)snprintf(path, sizeof path, "%s/mps/%s", s->core.state_dir,
                       s->gpu[dev].uuid) >= sizeof path)
    rc = gs_error_set(err, GS_ELIMIT, "state directory path too long: %s",
                      s->core.state_dir);
  if (rc == GS_OK)
    rc = make_dir(path, err);
  if (rc == GS_OK)
    rc = strncmp(pipe, "/tmp/gpuslice-mps-", 18) == 0
             ? make_private_path(pipe, err)
             : make_dir(pipe, err);
  return rc == GS_OK ? make_dir(log, err) : rc;
}

/* ---- running the control program --------------------------------------- */

static bool is_mps_variable(const char *entry) {
  return strncmp(entry, "CUDA_MPS_", 9) == 0 ||
         strncmp(entry, "CUDA_VISIBLE_DEVICES=", 21) == 0;
}

/* The caller's environment without CUDA_VISIBLE_DEVICES and CUDA_MPS_*,
 * plus the GPU's own (dev < 0: none). Caller frees the array; the strings
 * live in environ and in vars. */
static char **control_env(const gs__soft_t *s, int dev,
                          char vars[3][GS__PATH_MAX + 64], gs_error_t *err) {
  size_t n = 0;
  for (char **e = environ; e && *e; e++)
    n++;
  char **env = calloc(n + 4, sizeof *env);
  if (!env) {
    gs_error_set(err, GS_ENOMEM, "out of memory");
    return NULL;
  }
  size_t k = 0;
  for (char **e = environ; e && *e; e++)
    if (!is_mps_variable(*e))
      env[k++] = *e;
  char pipe[GS__PATH_MAX], log[GS__PATH_MAX];
  if (dev >= 0 && gs__mps_dirs(s, (unsigned)dev, pipe, log, err) != GS_OK) {
    free(env);
    return NULL;
  }
  if (dev >= 0) {
    snprintf(vars[0], sizeof vars[0], "CUDA_VISIBLE_DEVICES=%s",
             s->gpu[dev].uuid);
    snprintf(vars[1], sizeof vars[1], "CUDA_MPS_PIPE_DIRECTORY=%s", pipe);
    snprintf(vars[2], sizeof vars[2], "CUDA_MPS_LOG_DIRECTORY=%s", log);
    for (unsigned i = 0; i < 3; i++)
      env[k++] = vars[i];
  }
  return env;
}

/* Waits up to MPS_WAIT_MS for pid; kills it past that. *status is the
 * exit status, or 128 + the signal that ended it. */
static bool wait_child(pid_t pid, int *status) {
  int ws = 0;
  for (unsigned waited = 0;; waited += MPS_POLL_US / 1000) {
    pid_t got = waitpid(pid, &ws, WNOHANG);
    if (got == pid)
      break;
    if (got < 0 && errno != EINTR)
      return false;
    if (waited >= MPS_WAIT_MS) {
      kill(pid, SIGKILL);
      while (waitpid(pid, &ws, 0) < 0 && errno == EINTR)
        ;
      return false;
    }
    usleep(MPS_POLL_US);
  }
  *status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
  return true;
}

/* In the child: only async-signal-safe calls until exec. */
static void exec_child(const char *prog, char *const argv[], char *const env[],
                       int in, int out, int report, int max_fd) {
  if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
    _exit(127);
  for (int fd = 3; fd < max_fd; fd++)
    if (fd != report)
      close(fd);
  if (strchr(prog, '/'))
    execve(prog, argv, env);
  else
    execvpe(prog, argv, env);
  int e = errno;
  if (write(report, &e, sizeof e) < 0)
    _exit(127);
  _exit(127);
}

/* Runs the control program with args, the GPU's environment (dev < 0:
 * none), `input` on its stdin and its output into the file `output`.
 * *status: its exit status. GS_ENOTFOUND when it cannot be run. */
static int run_control(const gs__soft_t *s, int dev, const char *const *args,
                       const char *input, const char *output, int *status,
                       gs_error_t *err) {
  char vars[3][GS__PATH_MAX + 64];
  char *argv[8] = {(char *)s->mps_control};
  for (unsigned i = 0; args[i] && i + 2 < 8; i++)
    argv[i + 1] = (char *)args[i];
  char **env = control_env(s, dev, vars, err);
  if (!env)
    return err ? err->code : GS_ENOMEM;
  int in[2] = {-1, -1}, report[2] = {-1, -1}, rc = GS_OK;
  int out = open(output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  long open_max = sysconf(_SC_OPEN_MAX);
  int max_fd =
      open_max > 0 && open_max < MPS_MAX_FDS ? (int)open_max : MPS_MAX_FDS;
  if (out < 0) {
    rc = gs_error_sys(err, errno, "creating %s", output);
    goto out;
  }
  /* The input goes into the pipe before the child exists: no SIGPIPE if
   * it never reads. */
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(report, O_CLOEXEC) != 0) {
    rc = gs_error_sys(err, errno, "making pipes for %s", s->mps_control);
    goto out;
  }
  size_t len = input ? strlen(input) : 0;
  if (len && write(in[1], input, len) != (ssize_t)len) {
    rc = gs_error_sys(err, errno, "writing to %s", s->mps_control);
    goto out;
  }
  close(in[1]);
  in[1] = -1;
  pid_t pid = fork();
  if (pid < 0) {
    rc = gs_error_sys(err, errno, "starting %s", s->mps_control);
    goto out;
  }
  if (pid == 0)
    exec_child(s->mps_control, argv, env, in[0], out, report[1], max_fd);
  close(report[1]);
  report[1] = -1;
  int exec_errno = 0;
  ssize_t got;
  while ((got = read(report[0], &exec_errno, sizeof exec_errno)) < 0 &&
         errno == EINTR)
    ;
  if (!wait_child(pid, status))
    rc = gs_error_set(err, GS_EDRIVER, "%s %s did not finish within %d s",
                      s->mps_control, args[0] ? args[0] : "",
                      MPS_WAIT_MS / 1000);
  else if (got == (ssize_t)sizeof exec_errno)
    rc = gs_error_set(err, exec_errno == ENOENT ? GS_ENOTFOUND : GS_ESYSTEM,
                      "cannot run the MPS control program %s: %s; install the "
                      "NVIDIA driver's MPS tools or use --isolation process",
                      s->mps_control, strerror(exec_errno));
out:
  for (unsigned i = 0; i < 2; i++) {
    if (in[i] >= 0)
      close(in[i]);
    if (report[i] >= 0)
      close(report[i]);
  }
  if (out >= 0)
    close(out);
  free(env);
  return rc;
}

/* The first line of a command's output, for messages. */
static void first_line(const char *path, char *buf, size_t size) {
  if (!gs__read_text(path, buf, size))
    buf[0] = '\0';
  buf[strcspn(buf, "\n")] = '\0';
}

/* ---- foreign daemons --------------------------------------------------- */

/* Where the control daemon `pid` listens: the default directory when its
 * pid file names it, else CUDA_MPS_PIPE_DIRECTORY from its environment
 * (readable by its owner and root). */
static void pipe_of(pid_t pid, char *buf, size_t size) {
  snprintf(buf, size, "pipe directory unknown");
  if (read_pid(MPS_DEFAULT_PIPE) == pid) {
    snprintf(buf, size, "pipe %s", MPS_DEFAULT_PIPE);
    return;
  }
  char path[64], env[8192];
  snprintf(path, sizeof path, "/proc/%ld/environ", (long)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  ssize_t got = fd >= 0 ? read(fd, env, sizeof env - 1) : -1;
  if (fd >= 0)
    close(fd);
  for (ssize_t at = 0; got > 0 && at < got;
       at += (ssize_t)strlen(env + at) + 1) {
    env[got] = '\0';
    if (strncmp(env + at, "CUDA_MPS_PIPE_DIRECTORY=", 24) == 0) {
      snprintf(buf, size, "pipe %s", env + at + 24);
      return;
    }
  }
}

/* GS_EBUSY when an MPS server runs on the GPU while ours does not: one
 * that another control daemon started. Such a server's clients escape
 * every limit gpuslice sets, so its instances cannot be kept. */
static int check_foreign(gs__soft_t *s, unsigned dev, gs_error_t *err) {
  nvmlProcessInfo_t *info;
  unsigned n;
  gs__soft_gpu_procs(s, dev, &info, &n);
  int rc = GS_OK;
  for (unsigned i = 0; i < n && rc == GS_OK; i++) {
    char comm[64], where[GS__PATH_MAX + 32];
    pid_t server = (pid_t)info[i].pid, control = 0;
    gs__proc_comm(server, comm, sizeof comm);
    if (strncmp(comm, "nvidia-cuda-mps", 15) != 0 ||
        !gs__proc_stat(server, NULL, &control))
      continue;
    pipe_of(control, where, sizeof where);
    rc = gs_error_set(err, GS_EBUSY,
                      "an MPS control daemon not started by gpuslice (pid %ld, "
                      "%s) already runs and serves GPU %u (%s) through its "
                      "server (pid %ld); stop it (echo quit | "
                      "nvidia-cuda-mps-control) or use --isolation process",
                      (long)control, where, s->gpu[dev].nvml_index,
                      s->gpu[dev].uuid, (long)server);
  }
  free(info);
  return rc;
}

/* ---- start and stop ---------------------------------------------------- */

static bool wait_for(pid_t (*probe)(const gs__soft_t *, unsigned),
                     const gs__soft_t *s, unsigned dev, bool want_running) {
  for (unsigned waited = 0; waited <= MPS_WAIT_MS;
       waited += MPS_POLL_US / 1000) {
    if ((probe(s, dev) != 0) == want_running)
      return true;
    usleep(MPS_POLL_US);
  }
  return false;
}

int gs__mps_ensure(gs__soft_t *s, unsigned dev, gs_error_t *err) {
  char pipe[GS__PATH_MAX], log[GS__PATH_MAX], out[GS__PATH_MAX + 32];
  int rc = gs__mps_dirs(s, dev, pipe, log, err);
  if (rc != GS_OK || gs__mps_daemon_pid(s, dev) != 0)
    return rc;
  clean_dir(pipe); /* left by a daemon of ours that died */
  if ((rc = check_foreign(s, dev, err)) != GS_OK ||
      (rc = make_dirs(s, dev, pipe, log, err)) != GS_OK)
    return rc;
  snprintf(out, sizeof out, "%s/gpuslice-start.out", log);
  static const char *const args[] = {"-d", NULL};
  int status = 0;
  if ((rc = run_control(s, (int)dev, args, NULL, out, &status, err)))
    return rc;
  char said[MPS_OUTPUT_MAX];
  first_line(out, said, sizeof said);
  if (status != 0)
    return gs_error_set(err, GS_EDRIVER,
                        "starting the MPS control daemon of GPU %u (%s) "
                        "failed (%s -d exited %d%s%s); its log is in %s",
                        s->gpu[dev].nvml_index, s->gpu[dev].uuid,
                        s->mps_control, status, said[0] ? ": " : "", said, log);
  if (!wait_for(gs__mps_daemon_pid, s, dev, true))
    return gs_error_set(err, GS_EDRIVER,
                        "the MPS control daemon of GPU %u (%s) did not come "
                        "up within %d s (no live pid in %s/%s); its log is in "
                        "%s",
                        s->gpu[dev].nvml_index, s->gpu[dev].uuid,
                        MPS_WAIT_MS / 1000, pipe, MPS_PID_FILE, log);
  return GS_OK;
}

void gs__mps_stop(gs__soft_t *s, unsigned dev) {
  char pipe[GS__PATH_MAX], log[GS__PATH_MAX], out[GS__PATH_MAX + 32];
  if (gs__mps_dirs(s, dev, pipe, log, NULL) != GS_OK ||
      gs__mps_daemon_pid(s, dev) == 0)
    return;
  snprintf(out, sizeof out, "%s/gpuslice-stop.out", log);
  static const char *const args[] = {NULL};
  int status = 0;
  if (run_control(s, (int)dev, args, "quit\n", out, &status, NULL) == GS_OK &&
      wait_for(gs__mps_daemon_pid, s, dev, false))
    clean_dir(pipe);
}

/* Whether text mentions a static partition ("static SM partitioning",
 * "--static-partitioning"), ignoring case. */
static bool mentions_static(const char *text) {
  for (const char *p = text; *p; p++) {
    if (strncasecmp(p, "static", 6) != 0)
      continue;
    for (const char *q = p + 6; *q && q < p + 24; q++)
      if (strncasecmp(q, "partition", 9) == 0)
        return true;
  }
  return false;
}

bool gs__mps_static_partitions(gs__soft_t *s) {
  if (s->static_partitions >= 0)
    return s->static_partitions;
  char dir[GS__PATH_MAX + 16], out[GS__PATH_MAX + 48];
  snprintf(dir, sizeof dir, "%s/mps", s->core.state_dir);
  snprintf(out, sizeof out, "%s/mps/gpuslice-help.out", s->core.state_dir);
  static const char *const args[] = {"-h", NULL};
  int status = 0;
  char *text = malloc(MPS_OUTPUT_MAX * 4);
  s->static_partitions = 0;
  if (text && make_dir(dir, NULL) == GS_OK &&
      run_control(s, -1, args, NULL, out, &status, NULL) == GS_OK &&
      gs__read_text(out, text, MPS_OUTPUT_MAX * 4))
    s->static_partitions = mentions_static(text);
  free(text);
  unlink(out);
  return s->static_partitions;
}
