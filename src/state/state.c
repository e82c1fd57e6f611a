/* The state file of the software backends: a JSON document (jansson) with
 * a strict schema, an flock()ed lock file beside it, and replacement by
 * write-temporary, fsync, rename, fsync-directory. */
#include "gpuslice/state.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/fdio.h"
#include "core/test_hooks.h"

#define STATE_VERSION 1
#define STATE_ID_MAX 65535u /* IDs and profile IDs; NVML's are far smaller */
#define STATE_TMP_PREFIX GS_STATE_FILE ".tmp."

/* ---- decoding ---------------------------------------------------------- */

/* Where a schema error is: a JSON path such as devices[0].gpu_instances[1]
 * (jansson keeps no positions for values, only for syntax errors). */
typedef struct decoder_s {
  char what[512];
} decoder_t;

static int schema_error(decoder_t *d, const char *where, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int schema_error(decoder_t *d, const char *where, const char *fmt, ...) {
  char what[384];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  snprintf(d->what, sizeof d->what, "%s at %s", what, where);
  return GS_ECORRUPT;
}

/* Rejects keys outside `allowed` (NULL-terminated) and checks the object. */
static int check_object(decoder_t *d, const json_t *obj, const char *where,
                        const char *const *allowed) {
  if (!json_is_object(obj))
    return schema_error(d, where, "expected an object");
  const char *key;
  json_t *value;
  json_object_foreach((json_t *)obj, key, value) {
    (void)value;
    const char *const *a = allowed;
    while (*a && strcmp(*a, key) != 0)
      a++;
    if (!*a)
      return schema_error(d, where, "unknown key \"%s\"", key);
  }
  return GS_OK;
}

static int get_uint(decoder_t *d, const json_t *obj, const char *key,
                    const char *where, unsigned min, unsigned max,
                    unsigned *out) {
  json_t *v = json_object_get(obj, key);
  if (!v)
    return schema_error(d, where, "missing key \"%s\"", key);
  if (!json_is_integer(v))
    return schema_error(d, where, "\"%s\" must be an integer", key);
  json_int_t n = json_integer_value(v);
  if (n < (json_int_t)min || n > (json_int_t)max)
    return schema_error(d, where, "\"%s\" is %lld, outside %u..%u", key,
                        (long long)n, min, max);
  *out = (unsigned)n;
  return GS_OK;
}

/* Names travel into paths (procs/<uuid>, cgroup directories), so only
 * letters, digits, '-' and '_' are allowed. `extra` adds characters. */
static bool name_ok(const char *s, const char *extra) {
  if (!*s)
    return false;
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
                 (c >= 'A' && c <= 'Z');
    if (!alnum && c != '-' && c != '_' && !strchr(extra, c))
      return false;
  }
  return true;
}

static int get_name(decoder_t *d, const json_t *obj, const char *key,
                    const char *where, const char *extra, char *out,
                    size_t size) {
  json_t *v = json_object_get(obj, key);
  if (!v)
    return schema_error(d, where, "missing key \"%s\"", key);
  if (!json_is_string(v))
    return schema_error(d, where, "\"%s\" must be a string", key);
  const char *s = json_string_value(v);
  if (json_string_length(v) >= size)
    return schema_error(d, where, "\"%s\" is longer than %zu characters", key,
                        size - 1);
  if (!name_ok(s, extra) || strlen(s) != json_string_length(v))
    return schema_error(d, where, "\"%s\" has an empty or illegal value", key);
  memcpy(out, s, json_string_length(v) + 1);
  return GS_OK;
}

static int get_array(decoder_t *d, const json_t *obj, const char *key,
                     const char *where, size_t max, json_t **out) {
  json_t *v = json_object_get(obj, key);
  if (!v)
    return schema_error(d, where, "missing key \"%s\"", key);
  if (!json_is_array(v))
    return schema_error(d, where, "\"%s\" must be an array", key);
  if (json_array_size(v) > max)
    return schema_error(d, where, "\"%s\" has %zu entries, more than %zu", key,
                        json_array_size(v), max);
  *out = v;
  return GS_OK;
}

static int decode_ci(decoder_t *d, const json_t *obj, const char *where,
                     gs_ci_t *ci) {
  static const char *const keys[] = {"id", "profile", "start", "uuid", NULL};
  int rc = check_object(d, obj, where, keys);
  if (rc == GS_OK)
    rc = get_uint(d, obj, "id", where, 0, STATE_ID_MAX, &ci->id);
  if (rc == GS_OK)
    rc = get_uint(d, obj, "profile", where, 0, STATE_ID_MAX, &ci->profile_id);
  if (rc == GS_OK)
    rc = get_uint(d, obj, "start", where, 0, GS_MAX_SLICES - 1, &ci->start);
  if (rc == GS_OK)
    rc = get_name(d, obj, "uuid", where, "", ci->uuid, sizeof ci->uuid);
  return rc;
}

static int decode_gi(decoder_t *d, const json_t *obj, const char *where,
                     unsigned memory_slices, gs_gi_t *gi) {
  static const char *const keys[] = {"id",   "profile",           "start",
                                     "uuid", "compute_instances", NULL};
  json_t *cis = NULL;
  int rc = check_object(d, obj, where, keys);
  if (rc == GS_OK)
    rc = get_uint(d, obj, "id", where, 1, STATE_ID_MAX, &gi->id);
  if (rc == GS_OK)
    rc = get_uint(d, obj, "profile", where, 0, STATE_ID_MAX, &gi->profile_id);
  if (rc == GS_OK)
    rc = get_uint(d, obj, "start", where, 0, memory_slices - 1, &gi->start);
  if (rc == GS_OK)
    rc = get_name(d, obj, "uuid", where, "", gi->uuid, sizeof gi->uuid);
  if (rc == GS_OK)
    rc = get_array(d, obj, "compute_instances", where, GS_MAX_CIS, &cis);
  if (rc != GS_OK)
    return rc;
  gi->n_ci = 0;
  size_t i;
  json_t *v;
  json_array_foreach(cis, i, v) {
    char at[192];
    snprintf(at, sizeof at, "%s.compute_instances[%zu]", where, i);
    gs_ci_t *ci = &gi->ci[gi->n_ci];
    if ((rc = decode_ci(d, v, at, ci)) != GS_OK)
      return rc;
    for (unsigned j = 0; j < gi->n_ci; j++)
      if (gi->ci[j].id == ci->id)
        return schema_error(d, at, "duplicate compute instance ID %u", ci->id);
    gi->n_ci++;
  }
  return GS_OK;
}

/* GIs are kept ascending by start (gs_layout_t's order), whatever order a
 * hand-edited file lists them in. */
static void sort_gis(gs_layout_t *layout) {
  for (unsigned i = 1; i < layout->n_gi; i++) {
    gs_gi_t key = layout->gi[i];
    unsigned j = i;
    while (j > 0 && (layout->gi[j - 1].start > key.start ||
                     (layout->gi[j - 1].start == key.start &&
                      layout->gi[j - 1].id > key.id))) {
      layout->gi[j] = layout->gi[j - 1];
      j--;
    }
    layout->gi[j] = key;
  }
}

static int decode_device(decoder_t *d, const json_t *obj, const char *where,
                         gs_state_doc_t *doc, unsigned slot) {
  static const char *const keys[] = {
      "index",       "model",         "memory_slices", "uuid",
      "mig_enabled", "gpu_instances", "isolation",     NULL};
  __typeof__(doc->device[0]) *dev = &doc->device[slot];
  json_t *gis = NULL;
  int rc = check_object(d, obj, where, keys);
  if (rc == GS_OK)
    rc = get_uint(d, obj, "index", where, 0, GS_MAX_DEVICES - 1, &dev->index);
  if (rc == GS_OK)
    rc = get_name(d, obj, "model", where, ".+", dev->model, sizeof dev->model);
  if (rc == GS_OK)
    rc = get_uint(d, obj, "memory_slices", where, 1, GS_MAX_SLICES,
                  &dev->memory_slices);
  if (rc == GS_OK && json_object_get(obj, "uuid"))
    rc = get_name(d, obj, "uuid", where, "", dev->uuid, sizeof dev->uuid);
  if (rc == GS_OK && json_object_get(obj, "isolation")) {
    rc = get_name(d, obj, "isolation", where, "", dev->isolation,
                  sizeof dev->isolation);
    if (rc == GS_OK && strcmp(dev->isolation, "mps") != 0 &&
        strcmp(dev->isolation, "process") != 0 &&
        strcmp(dev->isolation, "green") != 0)
      return schema_error(d, where,
                          "\"isolation\" is \"%s\", not mps, process "
                          "or green",
                          dev->isolation);
  }
  if (rc != GS_OK)
    return rc;
  json_t *mig = json_object_get(obj, "mig_enabled");
  if (!json_is_boolean(mig))
    return schema_error(d, where, "\"mig_enabled\" must be true or false");
  if ((rc = get_array(d, obj, "gpu_instances", where, GS_MAX_GIS, &gis)))
    return rc;
  for (unsigned j = 0; j < slot; j++)
    if (doc->device[j].index == dev->index)
      return schema_error(d, where, "duplicate device index %u", dev->index);

  gs_layout_init(&dev->layout);
  dev->layout.mig_enabled = json_is_true(mig);
  if (!dev->layout.mig_enabled && json_array_size(gis) > 0)
    return schema_error(d, where,
                        "GPU instances listed with mig_enabled false");
  size_t i;
  json_t *v;
  json_array_foreach(gis, i, v) {
    char at[128];
    snprintf(at, sizeof at, "%s.gpu_instances[%zu]", where, i);
    gs_gi_t *gi = &dev->layout.gi[dev->layout.n_gi];
    if ((rc = decode_gi(d, v, at, dev->memory_slices, gi)) != GS_OK)
      return rc;
    for (unsigned j = 0; j < dev->layout.n_gi; j++)
      if (dev->layout.gi[j].id == gi->id)
        return schema_error(d, at, "duplicate GPU instance ID %u", gi->id);
    dev->layout.n_gi++;
  }
  sort_gis(&dev->layout);
  return GS_OK;
}

/* UUIDs name directories and cgroups, so they must be unique file-wide. */
static int check_uuids(decoder_t *d, const gs_state_doc_t *doc) {
  const char *seen[GS_MAX_DEVICES * GS_MAX_GIS * (GS_MAX_CIS + 1)];
  size_t n = 0;
  for (unsigned i = 0; i < doc->n_devices; i++) {
    const gs_layout_t *l = &doc->device[i].layout;
    for (unsigned g = 0; g < l->n_gi; g++) {
      seen[n++] = l->gi[g].uuid;
      for (unsigned c = 0; c < l->gi[g].n_ci; c++)
        seen[n++] = l->gi[g].ci[c].uuid;
    }
  }
  for (size_t a = 0; a < n; a++)
    for (size_t b = a + 1; b < n; b++)
      if (strcmp(seen[a], seen[b]) == 0)
        return schema_error(d, "devices", "duplicate uuid \"%s\"", seen[a]);
  return GS_OK;
}

static void sort_devices(gs_state_doc_t *doc) {
  for (unsigned i = 1; i < doc->n_devices; i++)
    for (unsigned j = i;
         j > 0 && doc->device[j - 1].index > doc->device[j].index; j--) {
      __typeof__(doc->device[0]) tmp = doc->device[j];
      doc->device[j] = doc->device[j - 1];
      doc->device[j - 1] = tmp;
    }
}

static int decode_root(decoder_t *d, const json_t *root, gs_state_doc_t *doc) {
  static const char *const keys[] = {"version", "backend", "devices", NULL};
  unsigned version = 0;
  json_t *devs = NULL;
  int rc = check_object(d, root, "the top level", keys);
  if (rc == GS_OK)
    rc = get_uint(d, root, "version", "the top level", 0, STATE_ID_MAX,
                  &version);
  if (rc == GS_OK && version != STATE_VERSION)
    return schema_error(
        d, "the top level",
        "unsupported version %u (this gpuslice reads version %d)", version,
        STATE_VERSION);
  if (rc == GS_OK)
    rc = get_name(d, root, "backend", "the top level", "", doc->backend,
                  sizeof doc->backend);
  if (rc == GS_OK && strcmp(doc->backend, "host") != 0 &&
      strcmp(doc->backend, "soft") != 0)
    return schema_error(d, "the top level",
                        "unknown backend \"%s\" (host and soft keep state)",
                        doc->backend);
  if (rc == GS_OK)
    rc = get_array(d, root, "devices", "the top level", GS_MAX_DEVICES, &devs);
  if (rc != GS_OK)
    return rc;
  size_t i;
  json_t *v;
  json_array_foreach(devs, i, v) {
    char at[32];
    snprintf(at, sizeof at, "devices[%zu]", i);
    if ((rc = decode_device(d, v, at, doc, doc->n_devices)) != GS_OK)
      return rc;
    doc->n_devices++;
  }
  sort_devices(doc);
  return check_uuids(d, doc);
}

/* Decodes into doc; on failure d->what says what is wrong and where. */
static int decode(decoder_t *d, gs_state_doc_t *doc, const char *data,
                  size_t len) {
  memset(doc, 0, sizeof *doc);
  if (len > GS_STATE_MAX_BYTES) {
    snprintf(d->what, sizeof d->what, "it is %zu bytes, over the %u-byte limit",
             len, GS_STATE_MAX_BYTES);
    return GS_ECORRUPT;
  }
  json_error_t jerr;
  json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!root) {
    snprintf(d->what, sizeof d->what, "%s at line %d, column %d", jerr.text,
             jerr.line, jerr.column);
    return GS_ECORRUPT;
  }
  int rc = decode_root(d, root, doc);
  json_decref(root);
  if (rc != GS_OK)
    memset(doc, 0, sizeof *doc);
  return rc;
}

int gs_state_decode(gs_state_doc_t *doc, const char *source, const char *data,
                    size_t len, gs_error_t *err) {
  decoder_t d;
  if (decode(&d, doc, data, len) == GS_OK)
    return GS_OK;
  return gs_error_set(err, GS_ECORRUPT,
                      "state file %s is corrupt: %s; fix or remove it by hand",
                      source, d.what);
}

/* ---- encoding ---------------------------------------------------------- */

static json_t *encode_gi(const gs_gi_t *gi) {
  json_t *cis = json_array();
  for (unsigned c = 0; cis && c < gi->n_ci; c++) {
    const gs_ci_t *ci = &gi->ci[c];
    json_array_append_new(
        cis, json_pack("{s:I, s:I, s:I, s:s}", "id", (json_int_t)ci->id,
                       "profile", (json_int_t)ci->profile_id, "start",
                       (json_int_t)ci->start, "uuid", ci->uuid));
  }
  return json_pack("{s:I, s:I, s:I, s:s, s:o}", "id", (json_int_t)gi->id,
                   "profile", (json_int_t)gi->profile_id, "start",
                   (json_int_t)gi->start, "uuid", gi->uuid, "compute_instances",
                   cis);
}

static json_t *encode_doc(const gs_state_doc_t *doc) {
  json_t *devs = json_array();
  for (unsigned i = 0; devs && i < doc->n_devices; i++) {
    const gs_layout_t *l = &doc->device[i].layout;
    json_t *gis = json_array();
    for (unsigned g = 0; gis && g < l->n_gi; g++)
      json_array_append_new(gis, encode_gi(&l->gi[g]));
    json_t *dev = json_pack(
        "{s:I, s:s, s:I, s:b, s:o}", "index", (json_int_t)doc->device[i].index,
        "model", doc->device[i].model, "memory_slices",
        (json_int_t)doc->device[i].memory_slices, "mig_enabled", l->mig_enabled,
        "gpu_instances", gis);
    if (dev && doc->device[i].uuid[0])
      json_object_set_new(dev, "uuid", json_string(doc->device[i].uuid));
    if (dev && doc->device[i].isolation[0])
      json_object_set_new(dev, "isolation",
                          json_string(doc->device[i].isolation));
    json_array_append_new(devs, dev);
  }
  return json_pack("{s:i, s:s, s:o}", "version", STATE_VERSION, "backend",
                   doc->backend, "devices", devs);
}

int gs_state_encode(const gs_state_doc_t *doc, char **out, gs_error_t *err) {
  *out = NULL;
  json_t *root = encode_doc(doc);
  char *text = root ? json_dumps(root, JSON_INDENT(2)) : NULL;
  json_decref(root);
  if (!text)
    return gs_error_set(err, GS_ENOMEM,
                        "encoding the state document: out of memory");
  /* Never write a file this module would refuse to read back. */
  size_t len = strlen(text);
  gs_state_doc_t *check = malloc(sizeof *check);
  decoder_t d;
  int rc = check ? decode(&d, check, text, len) : GS_ENOMEM;
  free(check);
  if (rc != GS_OK) {
    free(text);
    if (rc == GS_ENOMEM)
      return gs_error_set(err, rc,
                          "encoding the state document: out of memory");
    return gs_error_set(err, GS_EINVAL,
                        "refusing to encode an invalid state document: %s",
                        d.what);
  }
  char *with_nl = realloc(text, len + 2);
  if (!with_nl) {
    free(text);
    return gs_error_set(err, GS_ENOMEM,
                        "encoding the state document: out of memory");
  }
  memcpy(with_nl + len, "\n", 2);
  *out = with_nl;
  return GS_OK;
}

/* ---- files and locking ------------------------------------------------- */

/* mkdir -p; the last component gets 0700, parents the usual 0755. */
static int make_dirs(const char *dir, gs_error_t *err) {
  char path[sizeof((gs_state_t *)0)->dir];
  size_t len = strlen(dir);
  memcpy(path, dir, len + 1);
  while (len > 1 && path[len - 1] == '/')
    path[--len] = '\0';
  for (char *p = path + 1;; p++) {
    bool last = *p == '\0';
    if (!last && *p != '/')
      continue;
    *p = '\0';
    struct stat sb;
    if (stat(path, &sb) != 0) {
      if (errno != ENOENT ||
          (mkdir(path, last ? 0700 : 0755) != 0 && errno != EEXIST))
        return gs_error_sys(err, errno, "creating state directory %s", path);
    } else if (!S_ISDIR(sb.st_mode)) {
      return gs_error_set(err, GS_EINVAL,
                          "state directory %s: %s is not a directory", dir,
                          path);
    }
    if (last)
      return GS_OK;
    *p = '/';
  }
}

int gs_state_open(gs_state_t *st, const char *dir, gs_state_lock_t mode,
                  gs_error_t *err) {
  st->lock_fd = -1;
  st->mode = mode;
  size_t len = dir ? strlen(dir) : 0;
  if (len == 0)
    return gs_error_set(err, GS_EINVAL, "no state directory given");
  if (len + sizeof STATE_TMP_PREFIX + 24 > sizeof st->dir)
    return gs_error_set(err, GS_EINVAL,
                        "state directory path is too long (%zu characters)",
                        len);
  memcpy(st->dir, dir, len + 1);
  int rc = make_dirs(dir, err);
  if (rc != GS_OK)
    return rc;
  char path[sizeof st->dir + 16];
  snprintf(path, sizeof path, "%s/%s", dir, GS_STATE_LOCK);
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  /* A reader without write access to the directory can still share-lock. */
  if (fd < 0 && mode == GS_STATE_SHARED && (errno == EACCES || errno == EROFS))
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return gs_error_sys(err, errno, "opening lock file %s", path);
  int op = mode == GS_STATE_EXCLUSIVE ? LOCK_EX : LOCK_SH;
  while (flock(fd, op) != 0) {
    if (errno != EINTR) {
      int e = errno;
      close(fd);
      return gs_error_sys(err, e, "locking %s", path);
    }
  }
  st->lock_fd = fd;
  return GS_OK;
}

void gs_state_close(gs_state_t *st) {
  if (st->lock_fd >= 0)
    close(st->lock_fd); /* closing the last descriptor drops the flock */
  st->lock_fd = -1;
}

int gs_state_load(gs_state_t *st, gs_state_doc_t *doc, bool *existed,
                  gs_error_t *err) {
  *existed = false;
  memset(doc, 0, sizeof *doc);
  if (st->lock_fd < 0)
    return gs_error_set(err, GS_EINVAL, "reading state needs the lock on %s",
                        st->dir);
  char path[sizeof st->dir + 16];
  snprintf(path, sizeof path, "%s/%s", st->dir, GS_STATE_FILE);
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0 && errno == ENOENT)
    return GS_OK;
  if (fd < 0)
    return gs_error_sys(err, errno, "opening state file %s", path);
  int rc = GS_OK;
  gs_buf_t buf;
  gs_buf_init(&buf, GS_LIMIT_STATE_FILE);
  struct stat sb;
  if (fstat(fd, &sb) != 0) {
    rc = gs_error_sys(err, errno, "reading state file %s", path);
    goto out;
  }
  if (!S_ISREG(sb.st_mode)) {
    rc = gs_error_set(err, GS_ECORRUPT,
                      "state file %s is corrupt: it is not a regular file; fix "
                      "or remove it by hand",
                      path);
    goto out;
  }
  if ((uint64_t)sb.st_size > GS_STATE_MAX_BYTES) {
    rc = gs_error_set(err, GS_ECORRUPT,
                      "state file %s is corrupt: it is %lld bytes, over the "
                      "%u-byte limit; fix or remove it by hand",
                      path, (long long)sb.st_size, GS_STATE_MAX_BYTES);
    goto out;
  }
  /* Writers replace the file by rename, so the inode we opened keeps its
   * size; were it to grow anyway, the buffer's limit (the same) holds. */
  rc = gs_buf_read_fd(&buf, fd);
  if (rc == GS_ESYSTEM) {
    rc = gs_error_sys(err, errno, "reading state file %s", path);
  } else if (rc != GS_OK) {
    gs_buf_error(&buf, err);
    gs_error_prefix(err, "reading state file %s: ", path);
    rc = gs_error_code(err, rc == GS_ELIMIT ? GS_ECORRUPT : rc);
  } else {
    *existed = true;
    rc = gs_state_decode(doc, path, buf.data ? buf.data : "", buf.len, err);
  }
out:
  gs_buf_free(&buf);
  close(fd);
  return rc;
}

/* Any temporary file left is from a writer that died: writers hold the
 * exclusive lock, which the caller holds now. */
static void remove_stale_tmp(const gs_state_t *st) {
  DIR *dir = opendir(st->dir);
  if (!dir)
    return; /* the save itself will report an unusable directory */
  struct dirent *ent;
  while ((ent = readdir(dir)) != NULL)
    if (strncmp(ent->d_name, STATE_TMP_PREFIX, strlen(STATE_TMP_PREFIX)) == 0)
      unlinkat(dirfd(dir), ent->d_name, 0);
  closedir(dir);
}

static int sync_dir(const char *dir, gs_error_t *err) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return gs_error_sys(err, errno, "opening state directory %s", dir);
  int rc = fsync(fd) == 0
               ? GS_OK
               : gs_error_sys(err, errno, "syncing state directory %s", dir);
  close(fd);
  return rc;
}

/* A kill test's window inside a save (core/test_hooks.h); none in normal
 * use. */
static void test_pause(void) {
  if (gs__test_hooks.step_delay_us)
    usleep(gs__test_hooks.step_delay_us);
}

int gs_state_save(gs_state_t *st, const gs_state_doc_t *doc, gs_error_t *err) {
  if (st->lock_fd < 0 || st->mode != GS_STATE_EXCLUSIVE)
    return gs_error_set(err, GS_EINVAL,
                        "saving state in %s needs the exclusive lock", st->dir);
  char *text = NULL;
  int rc = gs_state_encode(doc, &text, err);
  if (rc != GS_OK)
    return rc;
  remove_stale_tmp(st);
  char tmp[sizeof st->dir + 64], path[sizeof st->dir + 16];
  snprintf(tmp, sizeof tmp, "%s/" STATE_TMP_PREFIX "%ld", st->dir,
           (long)getpid());
  snprintf(path, sizeof path, "%s/%s", st->dir, GS_STATE_FILE);
  int fd =
      open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    rc = gs_error_sys(err, errno, "creating %s", tmp);
    goto out;
  }
  /* The pauses are a test hook (0 in normal use): a kill in each of them
   * must leave the old file in place. */
  size_t len = strlen(text), half = len / 2;
  bool written = gs_write_all(fd, text, half) == 0;
  test_pause();
  written = written && gs_write_all(fd, text + half, len - half) == 0;
  if (!written || fsync(fd) != 0) {
    rc = gs_error_sys(err, errno, "writing %s", tmp);
    close(fd);
    goto out;
  }
  if (close(fd) != 0) {
    rc = gs_error_sys(err, errno, "writing %s", tmp);
    goto out;
  }
  test_pause();
  if (rename(tmp, path) != 0) {
    rc = gs_error_sys(err, errno, "replacing %s", path);
    goto out;
  }
  test_pause();
  /* The new file is in place once rename succeeded; a failed directory
   * fsync only weakens durability across a power cut, so it must not be
   * reported as a failed (and then "undone") change. */
  (void)sync_dir(st->dir, NULL);
  rc = GS_OK;
out:
  if (rc != GS_OK)
    unlink(tmp); /* harmless when the rename already happened */
  free(text);
  return rc;
}
