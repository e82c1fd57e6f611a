/* The host backend's confinement mechanics: finding a cgroup hierarchy we
 * may write (v2 with delegated controllers, else v1), making one cgroup per
 * GPU instance with its limits and listing its members; and the mapping of
 * compute slices onto CPU cores. */
#include "backend/host_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- small file helpers ------------------------------------------------ */

/* 0 or the errno of the failed open/write (cgroup files take one write). */
static int write_text(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    return errno;
  size_t len = strlen(text);
  ssize_t put;
  do
    put = write(fd, text, len);
  while (put < 0 && errno == EINTR);
  int e = put < 0 ? errno : put == (ssize_t)len ? 0 : EIO;
  close(fd);
  return e;
}

/* word in a list separated by spaces, commas or newlines */
static bool has_word(const char *list, const char *word) {
  size_t wl = strlen(word);
  for (const char *p = list; (p = strstr(p, word)) != NULL; p += wl) {
    bool start = p == list || strchr(" ,\n", p[-1]);
    bool end = p[wl] == '\0' || strchr(" ,\n", p[wl]);
    if (start && end)
      return true;
  }
  return false;
}

static bool file_in(const char *dir, const char *name, char *buf, size_t size) {
  char path[GS__PATH_MAX + 64];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  return gs__read_text(path, buf, size);
}

/* ---- detection --------------------------------------------------------- */

/* Our cgroup path in one hierarchy: v1 by controller name, v2 by "0::". */
static bool self_cgroup(const char *controller, char *out, size_t size) {
  FILE *f = fopen("/proc/self/cgroup", "re");
  if (!f)
    return false;
  char line[GS__PATH_MAX + 128];
  bool found = false;
  while (!found && fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = '\0';
    char *c1 = strchr(line, ':');
    char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c2)
      continue;
    *c2 = '\0';
    bool match = controller ? has_word(c1 + 1, controller)
                            : strcmp(line, "0:") == 0 && c1[1] == '\0';
    if (match && strlen(c2 + 1) < size) {
      memcpy(out, c2 + 1, strlen(c2 + 1) + 1);
      found = true;
    }
  }
  fclose(f);
  return found;
}

/* mountinfo escapes spaces and the like as \ooo */
static void unescape(char *s) {
  char *w = s;
  for (char *r = s; *r; r++) {
    if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] && r[3]) {
      *w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
      r += 3;
    } else {
      *w++ = *r;
    }
  }
  *w = '\0';
}

/* The writable mount of fstype ("cgroup" with `controller`, or "cgroup2"):
 * its root inside the hierarchy and its mount point. */
static bool find_mount(const char *fstype, const char *controller, char *root,
                       char *point, size_t size) {
  FILE *f = fopen("/proc/self/mountinfo", "re");
  if (!f)
    return false;
  char line[2 * GS__PATH_MAX];
  bool found = false;
  while (!found && fgets(line, sizeof line, f)) {
    char *field[6], *save = NULL, *tok = strtok_r(line, " \n", &save);
    unsigned n = 0;
    for (; tok && n < 6; tok = strtok_r(NULL, " \n", &save))
      field[n++] = tok;
    while (tok && strcmp(tok, "-") != 0)
      tok = strtok_r(NULL, " \n", &save); /* optional fields */
    char *type = tok ? strtok_r(NULL, " \n", &save) : NULL;
    char *source = type ? strtok_r(NULL, " \n", &save) : NULL;
    char *super = source ? strtok_r(NULL, " \n", &save) : NULL;
    if (n < 6 || !super || strcmp(type, fstype) != 0 ||
        has_word(field[5], "ro") ||
        (controller && !has_word(super, controller)))
      continue;
    unescape(field[3]);
    unescape(field[4]);
    if (strlen(field[3]) < size && strlen(field[4]) < size) {
      memcpy(root, field[3], strlen(field[3]) + 1);
      memcpy(point, field[4], strlen(field[4]) + 1);
      found = true;
    }
  }
  fclose(f);
  return found;
}

/* The directory of our own cgroup in one hierarchy, if mounted here. */
static bool self_dir(const char *fstype, const char *controller, char *out,
                     size_t size) {
  char path[GS__PATH_MAX], root[GS__PATH_MAX], point[GS__PATH_MAX];
  if (!self_cgroup(controller, path, sizeof path) ||
      !find_mount(fstype, controller, root, point, sizeof root))
    return false;
  const char *rel = path;
  size_t rl = strlen(root);
  if (strcmp(root, "/") != 0) {
    if (strncmp(path, root, rl) != 0 || (path[rl] != '/' && path[rl] != '\0'))
      return false; /* our cgroup is outside what is mounted */
    rel = path + rl;
  }
  int len = snprintf(out, size, "%s%s", point, rel);
  while (len > 1 && out[len - 1] == '/')
    out[--len] = '\0';
  return len > 0 && (size_t)len < size;
}

/* A v2 controller is usable below dir when dir offers it and its subtree
 * has it enabled (or we may enable it: not possible while dir itself holds
 * processes, unless it is the root). */
static bool v2_usable(const char *dir, const char *controller) {
  char buf[512], path[GS__PATH_MAX + 64], plus[32];
  if (!file_in(dir, "cgroup.controllers", buf, sizeof buf) ||
      !has_word(buf, controller))
    return false;
  if (file_in(dir, "cgroup.subtree_control", buf, sizeof buf) &&
      has_word(buf, controller))
    return true;
  snprintf(path, sizeof path, "%s/cgroup.subtree_control", dir);
  snprintf(plus, sizeof plus, "+%s", controller);
  return write_text(path, plus) == 0;
}

static void use_v2(gs__cgroup_t *cg, const char *dir) {
  if (v2_usable(dir, "memory")) {
    cg->mem = GS__CG_V2;
    snprintf(cg->mem_dir, sizeof cg->mem_dir, "%s", dir);
  }
  if (v2_usable(dir, "cpu")) {
    cg->cpu = GS__CG_V2;
    snprintf(cg->cpu_dir, sizeof cg->cpu_dir, "%s", dir);
  }
}

static void use_v1(gs__cgroup_t *cg, gs__cg_kind_t *kind, char *out,
                   const char *dir, const char *probe) {
  char path[GS__PATH_MAX + 64];
  snprintf(path, sizeof path, "%s/%s", dir, probe);
  if (*kind == GS__CG_NONE && access(path, F_OK) == 0 &&
      access(dir, W_OK) == 0) {
    *kind = GS__CG_V1;
    snprintf(out, sizeof cg->mem_dir, "%s", dir);
  }
}

void gs__cgroup_detect(gs__cgroup_t *cg, const char *root) {
  memset(cg, 0, sizeof *cg);
  if (root && strcmp(root, "none") == 0) {
    cg->disabled = true;
    snprintf(cg->why, sizeof cg->why, "cgroups disabled");
    return;
  }
  char dir[GS__PATH_MAX], probe[64];
  if (root) {
    if (file_in(root, "cgroup.controllers", probe, sizeof probe))
      use_v2(cg, root);
    use_v1(cg, &cg->mem, cg->mem_dir, root, "memory.limit_in_bytes");
    use_v1(cg, &cg->cpu, cg->cpu_dir, root, "cpu.cfs_quota_us");
  } else {
    if (self_dir("cgroup2", NULL, dir, sizeof dir))
      use_v2(cg, dir);
    if (self_dir("cgroup", "memory", dir, sizeof dir))
      use_v1(cg, &cg->mem, cg->mem_dir, dir, "memory.limit_in_bytes");
    if (self_dir("cgroup", "cpu", dir, sizeof dir))
      use_v1(cg, &cg->cpu, cg->cpu_dir, dir, "cpu.cfs_quota_us");
  }
  if (cg->mem == GS__CG_NONE)
    snprintf(cg->why, sizeof cg->why,
             "no writable cgroup memory controller here");
}

/* ---- instance cgroups -------------------------------------------------- */

/* <base>/gpuslice/<uuid>, created, with `controller` enabled for the
 * children of <base>/gpuslice on v2. */
static int make_group(const char *base, gs__cg_kind_t kind,
                      const char *controller, const char *uuid, char *out,
                      size_t size, gs_error_t *err) {
  char top[GS__PATH_MAX + 16];
  snprintf(top, sizeof top, "%s/gpuslice", base);
  if (mkdir(top, 0755) != 0 && errno != EEXIST)
    return gs_error_sys(err, errno, "creating cgroup %s", top);
  if (kind == GS__CG_V2) {
    char path[GS__PATH_MAX + 64], plus[32];
    snprintf(path, sizeof path, "%s/cgroup.subtree_control", top);
    snprintf(plus, sizeof plus, "+%s", controller);
    int e = write_text(path, plus);
    if (e != 0)
      return gs_error_sys(err, e, "enabling %s in %s", controller, path);
  }
  if ((size_t)snprintf(out, size, "%s/%s", top, uuid) >= size)
    return gs_error_set(err, GS_EINVAL, "cgroup path %s/%s is too long", top,
                        uuid);
  if (mkdir(out, 0755) != 0 && errno != EEXIST)
    return gs_error_sys(err, errno, "creating cgroup %s", out);
  return GS_OK;
}

static int set_file(const char *dir, const char *name, const char *value,
                    bool optional, gs_error_t *err) {
  char path[GS__PATH_MAX + 64];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  int e = write_text(path, value);
  if (e == 0 || (optional && e == ENOENT))
    return GS_OK;
  return gs_error_sys(err, e, "writing '%s' to %s", value, path);
}

static int set_memory(gs__cg_kind_t kind, const char *dir, uint64_t bytes,
                      gs_error_t *err) {
  char value[32];
  snprintf(value, sizeof value, "%" PRIu64, bytes);
  if (kind == GS__CG_V2) {
    int rc = set_file(dir, "memory.max", value, false, err);
    /* Like GPU memory, an instance's memory does not spill to swap. */
    return rc ? rc : set_file(dir, "memory.swap.max", "0", true, err);
  }
  int rc = set_file(dir, "memory.limit_in_bytes", value, false, err);
  /* memsw exists only with swap accounting; it must be >= the limit. */
  return rc ? rc
            : set_file(dir, "memory.memsw.limit_in_bytes", value, true, err);
}

static int set_quota(gs__cg_kind_t kind, const char *dir, uint64_t quota_us,
                     gs_error_t *err) {
  char value[64];
  if (kind == GS__CG_V2) {
    snprintf(value, sizeof value, "%" PRIu64 " %u", quota_us,
             GS__CPU_PERIOD_US);
    return set_file(dir, "cpu.max", value, false, err);
  }
  snprintf(value, sizeof value, "%u", GS__CPU_PERIOD_US);
  int rc = set_file(dir, "cpu.cfs_period_us", value, false, err);
  snprintf(value, sizeof value, "%" PRIu64, quota_us);
  return rc ? rc : set_file(dir, "cpu.cfs_quota_us", value, false, err);
}

int gs__cgroup_enter(const gs__cgroup_t *cg, const char *uuid,
                     uint64_t memory_bytes, uint64_t quota_us, pid_t pid,
                     gs_error_t *err) {
  char mem[GS__PATH_MAX + 128] = "", cpu[GS__PATH_MAX + 128] = "";
  char pidtext[32];
  snprintf(pidtext, sizeof pidtext, "%ld", (long)pid);
  int rc = GS_OK;
  if (cg->mem != GS__CG_NONE) {
    rc = make_group(cg->mem_dir, cg->mem, "memory", uuid, mem, sizeof mem, err);
    if (rc == GS_OK)
      rc = set_memory(cg->mem, mem, memory_bytes, err);
  }
  if (rc == GS_OK && quota_us > 0 && cg->cpu != GS__CG_NONE) {
    rc = make_group(cg->cpu_dir, cg->cpu, "cpu", uuid, cpu, sizeof cpu, err);
    if (rc == GS_OK)
      rc = set_quota(cg->cpu, cpu, quota_us, err);
  }
  if (rc == GS_OK && mem[0])
    rc = set_file(mem, "cgroup.procs", pidtext, false, err);
  if (rc == GS_OK && cpu[0] && strcmp(cpu, mem) != 0)
    rc = set_file(cpu, "cgroup.procs", pidtext, false, err);
  return rc;
}

void gs__cgroup_remove(const gs__cgroup_t *cg, const char *uuid) {
  char path[GS__PATH_MAX + 128];
  if (cg->mem != GS__CG_NONE) {
    snprintf(path, sizeof path, "%s/gpuslice/%s", cg->mem_dir, uuid);
    rmdir(path);
  }
  if (cg->cpu != GS__CG_NONE) {
    snprintf(path, sizeof path, "%s/gpuslice/%s", cg->cpu_dir, uuid);
    rmdir(path);
  }
}

void gs__cgroup_pids(const gs__cgroup_t *cg, const char *uuid, bool use_cpu,
                     pid_t *out, size_t max, size_t *n) {
  *n = 0;
  const char *base = cg->mem != GS__CG_NONE              ? cg->mem_dir
                     : use_cpu && cg->cpu != GS__CG_NONE ? cg->cpu_dir
                                                         : NULL;
  if (!base)
    return;
  char path[GS__PATH_MAX + 128];
  snprintf(path, sizeof path, "%s/gpuslice/%s/cgroup.procs", base, uuid);
  FILE *f = fopen(path, "re");
  if (!f)
    return; /* not created yet: nothing ever ran there */
  long pid;
  while (fscanf(f, "%ld", &pid) == 1) {
    if (*n < max)
      out[*n] = (pid_t)pid;
    (*n)++;
  }
  fclose(f);
}

static bool read_u64(const char *base, const char *uuid, const char *file,
                     const char *key, uint64_t *out) {
  char path[GS__PATH_MAX + 160], text[4096];
  snprintf(path, sizeof path, "%s/gpuslice/%s/%s", base, uuid, file);
  if (!gs__read_text(path, text, sizeof text))
    return false;
  const char *at = text;
  if (key) { /* "key value" lines (cpu.stat) */
    size_t kl = strlen(key);
    for (at = text; at && !(strncmp(at, key, kl) == 0 && at[kl] == ' ');
         at = strchr(at, '\n'), at = at ? at + 1 : NULL)
      ;
    if (!at)
      return false;
    at += kl + 1;
  }
  char *end;
  unsigned long long v = strtoull(at, &end, 10);
  if (end == at)
    return false;
  *out = v;
  return true;
}

void gs__cgroup_usage(const gs__cgroup_t *cg, const char *uuid, bool use_cpu,
                      gs_gi_usage_t *out) {
  memset(out, 0, sizeof *out);
  if (cg->mem == GS__CG_V2)
    out->has_memory =
        read_u64(cg->mem_dir, uuid, "memory.current", NULL, &out->memory_bytes);
  else if (cg->mem == GS__CG_V1)
    out->has_memory = read_u64(cg->mem_dir, uuid, "memory.usage_in_bytes", NULL,
                               &out->memory_bytes);
  /* v2 keeps cpu.stat in every cgroup, the cpu controller on or not */
  const char *v2 = cg->mem == GS__CG_V2              ? cg->mem_dir
                   : use_cpu && cg->cpu == GS__CG_V2 ? cg->cpu_dir
                                                     : NULL;
  uint64_t ns;
  if (v2)
    out->has_cpu = read_u64(v2, uuid, "cpu.stat", "usage_usec", &out->cpu_usec);
  else if (use_cpu && cg->cpu == GS__CG_V1 &&
           read_u64(cg->cpu_dir, uuid, "cpuacct.usage", NULL, &ns)) {
    out->has_cpu = true;
    out->cpu_usec = ns / 1000;
  }
}

/* ---- CPU geometry ------------------------------------------------------ */

void gs__host_core_range(unsigned cores, unsigned slices, unsigned first,
                         unsigned count, unsigned *lo, unsigned *hi) {
  *lo = first * cores / slices;
  if (count == 0)
    *hi = *lo;
  else if (cores >= slices)
    *hi = (first + count) * cores / slices;
  else /* the last slice's shared core is included */
    *hi = (first + count - 1) * cores / slices + 1;
}

unsigned gs__host_gi_first_slice(unsigned mem_start, unsigned g,
                                 unsigned slices) {
  unsigned last = g < slices ? slices - g : 0;
  return mem_start < last ? mem_start : last;
}

void gs__cpulist_format(const int *cpus, unsigned n, char *buf, size_t size) {
  size_t len = 0;
  buf[0] = '\0';
  for (unsigned i = 0; i < n && len < size; i++) {
    unsigned j = i;
    while (j + 1 < n && cpus[j + 1] == cpus[j] + 1)
      j++;
    int put = j > i ? snprintf(buf + len, size - len, "%s%d-%d", len ? "," : "",
                               cpus[i], cpus[j])
                    : snprintf(buf + len, size - len, "%s%d", len ? "," : "",
                               cpus[i]);
    if (put < 0)
      break;
    len += (size_t)put;
    i = j;
  }
}
