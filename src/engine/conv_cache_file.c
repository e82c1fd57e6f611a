/* The conv choice cache's file: a fixed 168-byte header (host byte order;
 * the records are raw structs of this build anyway), then n records; read
 * all or nothing, written by rename of a synced temporary file. */
#include "engine/conv_cache_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/fdio.h"

static const char magic[8] = {'G', 'S', 'C', 'O', 'N', 'V', 'C', '\n'};

/* Header offsets. */
enum {
  H_MAGIC = 0,
  H_VERSION = 8,
  H_KEY = 12,
  H_CHOICE = 16,
  H_CC_MAJOR = 20,
  H_CC_MINOR = 24,
  H_SMS = 28,
  H_DRIVER = 32,
  H_CUDNN = 40,
  H_CUBLASLT = 48,
  H_COUNT = 56,
  H_SUM = 64,
  H_GPU = 72
};
_Static_assert(H_GPU + sizeof(((gs__ccf_ident_t *)0)->gpu) ==
                   GS__CCF_HEADER_BYTES,
               "the header ends with the GPU name");

/* ---- the table ----------------------------------------------------------- */

void gs__ccf_table_init(gs__ccf_table_t *t, size_t key_size,
                        size_t choice_size) {
  memset(t, 0, sizeof *t);
  t->key_size = key_size;
  t->choice_size = choice_size;
}

void gs__ccf_table_free(gs__ccf_table_t *t) {
  free(t->rec);
  t->rec = NULL;
  t->n = t->cap = 0;
}

unsigned char *gs__ccf_table_find(const gs__ccf_table_t *t, const void *key) {
  size_t rs = t->key_size + t->choice_size;
  for (size_t i = 0; i < t->n; i++)
    if (memcmp(t->rec + i * rs, key, t->key_size) == 0)
      return t->rec + i * rs + t->key_size;
  return NULL;
}

int gs__ccf_table_put(gs__ccf_table_t *t, const void *key, const void *choice,
                      gs_error_t *err) {
  size_t rs = t->key_size + t->choice_size;
  unsigned char *at = gs__ccf_table_find(t, key);
  if (!at && t->n == GS__CCF_MAX_ENTRIES)
    return gs_error_set(err, GS_ELIMIT,
                        "the conv cache holds %d choices at most",
                        GS__CCF_MAX_ENTRIES);
  if (!at && t->n == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 64;
    unsigned char *grown = realloc(t->rec, cap * rs);
    if (!grown)
      return gs_error_set(err, GS_ENOMEM, "conv cache: %zu choices", cap);
    t->rec = grown;
    t->cap = cap;
  }
  if (!at) {
    memcpy(t->rec + t->n * rs, key, t->key_size);
    at = t->rec + t->n++ * rs + t->key_size;
  }
  memcpy(at, choice, t->choice_size);
  return GS_OK;
}

/* ---- the image ----------------------------------------------------------- */

static uint64_t fnv1a(uint64_t h, const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

/* The header (but its own checksum field) and the records. */
static uint64_t checksum(const unsigned char *img, size_t size) {
  uint64_t h = fnv1a(0xcbf29ce484222325ull, img, H_SUM);
  return fnv1a(h, img + H_GPU, size - H_GPU);
}

static uint32_t get32(const unsigned char *img, size_t at) {
  uint32_t v;
  memcpy(&v, img + at, sizeof v);
  return v;
}

static uint64_t get64(const unsigned char *img, size_t at) {
  uint64_t v;
  memcpy(&v, img + at, sizeof v);
  return v;
}

static void read_ident(const unsigned char *img, gs__ccf_ident_t *id) {
  memset(id, 0, sizeof *id);
  id->key_size = get32(img, H_KEY);
  id->choice_size = get32(img, H_CHOICE);
  id->cc_major = (int32_t)get32(img, H_CC_MAJOR);
  id->cc_minor = (int32_t)get32(img, H_CC_MINOR);
  id->sms = (int32_t)get32(img, H_SMS);
  id->driver = (int32_t)get32(img, H_DRIVER);
  id->cudnn = get64(img, H_CUDNN);
  id->cublaslt = get64(img, H_CUBLASLT);
  memcpy(id->gpu, img + H_GPU, sizeof id->gpu);
}

/* Why the file's ident is not want's, or GS_OK. */
static int ident_matches(const gs__ccf_ident_t *got,
                         const gs__ccf_ident_t *want, gs_error_t *err) {
  if (got->key_size != want->key_size || got->choice_size != want->choice_size)
    return gs_error_set(
        err, GS_EPARSE, "records of %u+%u bytes, this build's are %u+%u",
        got->key_size, got->choice_size, want->key_size, want->choice_size);
  if (strcmp(got->gpu, want->gpu) != 0 || got->cc_major != want->cc_major ||
      got->cc_minor != want->cc_minor || got->sms != want->sms)
    return gs_error_set(
        err, GS_EPARSE,
        "timed on %s (sm_%d%d, %d SMs), this is %s (sm_%d%d, %d SMs)", got->gpu,
        got->cc_major, got->cc_minor, got->sms, want->gpu, want->cc_major,
        want->cc_minor, want->sms);
  if (got->driver != want->driver || got->cudnn != want->cudnn ||
      got->cublaslt != want->cublaslt)
    return gs_error_set(err, GS_EPARSE,
                        "timed with driver %d, cuDNN %llu, cuBLASLt %llu; "
                        "this is driver %d, cuDNN %llu, cuBLASLt %llu",
                        got->driver, (unsigned long long)got->cudnn,
                        (unsigned long long)got->cublaslt, want->driver,
                        (unsigned long long)want->cudnn,
                        (unsigned long long)want->cublaslt);
  return GS_OK;
}

/* The header alone: format, sizes, ident. */
static int check_header(const unsigned char *img, size_t size,
                        const gs__ccf_ident_t *want, gs__ccf_ident_t *got,
                        gs_error_t *err) {
  if (size < GS__CCF_HEADER_BYTES)
    return gs_error_set(err, GS_EPARSE,
                        "%zu bytes, shorter than the %d-byte header", size,
                        GS__CCF_HEADER_BYTES);
  if (memcmp(img + H_MAGIC, magic, sizeof magic) != 0)
    return gs_error_set(err, GS_EPARSE, "not a gpuslice conv cache");
  if (get32(img, H_VERSION) != GS__CCF_VERSION)
    return gs_error_set(err, GS_EPARSE, "format version %u, this build's is %d",
                        get32(img, H_VERSION), GS__CCF_VERSION);
  read_ident(img, got);
  if (!memchr(got->gpu, '\0', sizeof got->gpu))
    return gs_error_set(err, GS_EPARSE, "the GPU name is not terminated");
  if (got->key_size == 0 || got->choice_size == 0 || got->key_size > 4096 ||
      got->choice_size > 4096)
    return gs_error_set(err, GS_EPARSE, "records of %u+%u bytes", got->key_size,
                        got->choice_size);
  return want ? ident_matches(got, want, err) : GS_OK;
}

int gs__ccf_parse(const void *data, size_t size, const gs__ccf_ident_t *want,
                  gs__ccf_ident_t *got, gs__ccf_table_t *out, gs_error_t *err) {
  const unsigned char *img = data;
  gs__ccf_ident_t id;
  gs__ccf_table_init(out, want ? want->key_size : 0,
                     want ? want->choice_size : 0);
  int rc = check_header(img, size, want, &id, err);
  if (rc != GS_OK)
    return rc;
  if (got)
    *got = id;
  gs__ccf_table_init(out, id.key_size, id.choice_size);
  uint64_t n = get64(img, H_COUNT);
  size_t rs = (size_t)id.key_size + id.choice_size;
  if (n > GS__CCF_MAX_ENTRIES)
    return gs_error_set(err, GS_EPARSE, "%llu choices, at most %d",
                        (unsigned long long)n, GS__CCF_MAX_ENTRIES);
  if (size != GS__CCF_HEADER_BYTES + n * rs)
    return gs_error_set(
        err, GS_EPARSE, "%zu bytes where %llu choices take %zu (truncated?)",
        size, (unsigned long long)n, (size_t)(GS__CCF_HEADER_BYTES + n * rs));
  if (checksum(img, size) != get64(img, H_SUM))
    return gs_error_set(err, GS_EPARSE, "its checksum does not match");
  for (size_t i = 0; rc == GS_OK && i < n; i++) {
    const unsigned char *r = img + GS__CCF_HEADER_BYTES + i * rs;
    rc = gs__ccf_table_put(out, r, r + id.key_size, err);
  }
  if (rc != GS_OK)
    gs__ccf_table_free(out);
  return rc;
}

int gs__ccf_encode(const gs__ccf_ident_t *ident, const gs__ccf_table_t *t,
                   unsigned char **out, size_t *size, gs_error_t *err) {
  size_t rs = t->key_size + t->choice_size;
  if (t->key_size != ident->key_size || t->choice_size != ident->choice_size)
    return gs_error_set(err, GS_EINVAL, "conv cache records do not fit it");
  *size = GS__CCF_HEADER_BYTES + t->n * rs;
  unsigned char *img = calloc(1, *size);
  if (!img)
    return gs_error_set(err, GS_ENOMEM, "conv cache image: %zu bytes", *size);
  uint32_t u32[] = {GS__CCF_VERSION,           ident->key_size,
                    ident->choice_size,        (uint32_t)ident->cc_major,
                    (uint32_t)ident->cc_minor, (uint32_t)ident->sms,
                    (uint32_t)ident->driver};
  uint64_t n = t->n;
  memcpy(img + H_MAGIC, magic, sizeof magic);
  memcpy(img + H_VERSION, u32, sizeof u32); /* H_VERSION .. H_DRIVER */
  memcpy(img + H_CUDNN, &ident->cudnn, 8);
  memcpy(img + H_CUBLASLT, &ident->cublaslt, 8);
  memcpy(img + H_COUNT, &n, 8);
  memcpy(img + H_GPU, ident->gpu, sizeof ident->gpu);
  img[H_GPU + sizeof ident->gpu - 1] = '\0';
  if (t->n)
    memcpy(img + GS__CCF_HEADER_BYTES, t->rec, t->n * rs);
  uint64_t sum = checksum(img, *size);
  memcpy(img + H_SUM, &sum, 8);
  *out = img;
  return GS_OK;
}
_Static_assert(H_VERSION + 7 * 4 == H_DRIVER + 4, "u32 fields in a row");

/* ---- files --------------------------------------------------------------- */

int gs__ccf_load(const char *path, const gs__ccf_ident_t *want,
                 gs__ccf_table_t *out, gs_error_t *err) {
  gs__ccf_table_init(out, want->key_size, want->choice_size);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return errno == ENOENT
               ? gs_error_set(err, GS_ENOTFOUND, "%s: no such file", path)
               : gs_error_sys(err, errno, "cannot open %s", path);
  gs_buf_t img;
  gs_buf_init(&img, GS_LIMIT_CONV_CACHE_FILE);
  struct stat st;
  int rc = GS_OK;
  if (fstat(fd, &st) != 0) {
    rc = gs_error_sys(err, errno, "cannot stat %s", path);
  } else if (!S_ISREG(st.st_mode)) {
    rc = gs_error_set(err, GS_EPARSE, "%s: not a regular file", path);
  } else if ((rc = gs_buf_read_fd(&img, fd)) == GS_ESYSTEM) {
    rc = gs_error_sys(err, errno, "cannot read %s", path);
  } else if (rc != GS_OK) { /* over the limit, or out of memory */
    gs_buf_error(&img, err);
    gs_error_prefix(err, "%s: ", path);
  }
  if (rc == GS_OK)
    rc = gs__ccf_parse(img.data, img.len, want, NULL, out, err);
  gs_buf_free(&img);
  close(fd);
  return rc;
}

/* mkdir -p of path's directory. */
static int make_parent(const char *path, gs_error_t *err) {
  char dir[4096];
  if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir)
    return gs_error_set(err, GS_ELIMIT, "conv cache path too long: %s", path);
  char *slash = strrchr(dir, '/');
  if (!slash || slash == dir)
    return GS_OK;
  *slash = '\0';
  for (char *p = dir + 1; *p; p++) {
    if (*p != '/')
      continue;
    *p = '\0';
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
      return gs_error_sys(err, errno, "cannot create %s", dir);
    *p = '/';
  }
  if (mkdir(dir, 0755) != 0 && errno != EEXIST)
    return gs_error_sys(err, errno, "cannot create %s", dir);
  return GS_OK;
}

/* The directory holding path, synced so that the rename survives a crash. */
static void sync_parent(const char *path) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash)
    *slash = '\0';
  int fd = open(slash ? (dir[0] ? dir : "/") : ".",
                O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
}

/* t plus the records of the file at path (same ident) that t lacks. */
static int merged(const char *path, const gs__ccf_ident_t *ident,
                  const gs__ccf_table_t *t, gs__ccf_table_t *out,
                  gs_error_t *err) {
  gs__ccf_table_t old;
  gs_error_t ignored;
  size_t rs = t->key_size + t->choice_size;
  gs__ccf_table_init(out, t->key_size, t->choice_size);
  gs__ccf_table_init(&old, t->key_size, t->choice_size);
  int rc = GS_OK;
  for (size_t i = 0; rc == GS_OK && i < t->n; i++)
    rc = gs__ccf_table_put(out, t->rec + i * rs, t->rec + i * rs + t->key_size,
                           err);
  if (rc == GS_OK && gs__ccf_load(path, ident, &old, &ignored) == GS_OK) {
    for (size_t i = 0; i < old.n; i++) {
      const unsigned char *r = old.rec + i * rs;
      if (!gs__ccf_table_find(out, r) &&
          gs__ccf_table_put(out, r, r + t->key_size, &ignored) != GS_OK)
        break; /* full: t's records are in */
    }
  }
  gs__ccf_table_free(&old);
  return rc;
}

int gs__ccf_save(const char *path, const gs__ccf_ident_t *ident,
                 const gs__ccf_table_t *t, gs_error_t *err) {
  static atomic_uint seq;
  gs__ccf_table_t all;
  unsigned char *img = NULL;
  size_t size = 0;
  char tmp[4200];
  int fd = -1;
  gs__ccf_table_init(&all, t->key_size, t->choice_size);
  int rc = make_parent(path, err);
  if (rc == GS_OK)
    rc = merged(path, ident, t, &all, err);
  if (rc == GS_OK)
    rc = gs__ccf_encode(ident, &all, &img, &size, err);
  gs__ccf_table_free(&all);
  if (rc != GS_OK)
    goto out;
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%u", path, (long)getpid(),
           atomic_fetch_add(&seq, 1));
  fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    rc = gs_error_sys(err, errno, "cannot create %s", tmp);
    goto out;
  }
  if (gs_write_all(fd, img, size) != 0 || fsync(fd) != 0)
    rc = gs_error_sys(err, errno, "cannot write %s", tmp);
  if (close(fd) != 0 && rc == GS_OK)
    rc = gs_error_sys(err, errno, "cannot write %s", tmp);
  if (rc == GS_OK && rename(tmp, path) != 0)
    rc = gs_error_sys(err, errno, "cannot rename %s to %s", tmp, path);
  if (rc != GS_OK)
    unlink(tmp);
  else
    sync_parent(path);
out:
  free(img);
  return rc;
}
