/* The registry of shared-memory regions (KServe's system and CUDA shared
 * memory extensions): register maps a POSIX shm object or opens a CUDA IPC
 * handle, requests hold regions by reference, unregister defers the unmap
 * until the last request holding the region is done. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "worker/shm.h"

static const char *kind_name(gs__shm_kind_t kind) {
  return kind == GS__SHM_CUDA ? "CUDA" : "system";
}

gs__shm_registry_t *gs__shm_registry_create(void) {
  gs__shm_registry_t *reg = calloc(1, sizeof *reg);
  if (reg && pthread_mutex_init(&reg->lock, NULL) != 0) {
    free(reg);
    return NULL;
  }
  return reg;
}

/* Unmaps r and frees it: its last reference is gone. */
static void region_free(gs__shm_region_t *r) {
  if (r->kind == GS__SHM_SYSTEM && r->map)
    munmap(r->map, r->map_len);
  else if (r->kind == GS__SHM_CUDA && r->dptr)
    gs__shm_cuda_close(r->reg->cuda, r);
  free(r);
}

void gs__shm_registry_destroy(gs__shm_registry_t *reg) {
  if (!reg)
    return;
  for (gs__shm_region_t *r = reg->head, *next; r; r = next) {
    next = r->next;
    region_free(r);
  }
  gs__shm_cuda_destroy(reg->cuda);
  pthread_mutex_destroy(&reg->lock);
  free(reg);
}

/* The registered region called name; under the lock. */
static gs__shm_region_t *find(gs__shm_registry_t *reg, const char *name,
                              gs__shm_region_t ***link) {
  gs__shm_region_t **at = &reg->head;
  for (; *at; at = &(*at)->next)
    if (strcmp((*at)->name, name) == 0)
      break;
  if (link)
    *link = at;
  return *at;
}

int gs__shm_check_bounds(const char *region, uint64_t region_size,
                         uint64_t offset, uint64_t bytes, const char *tensor,
                         gs_error_t *err) {
  /* Triton's rules and words: the offset inside, then the end */
  if (offset >= region_size)
    return gs_error_set(err, GS_EINVAL,
                        "Invalid offset for shared memory region: '%s' "
                        "('%s': offset %llu is past the end of its %llu "
                        "bytes)",
                        region, tensor, (unsigned long long)offset,
                        (unsigned long long)region_size);
  if (bytes > region_size - offset)
    return gs_error_set(err, GS_EINVAL,
                        "Invalid offset + byte size for shared memory "
                        "region: '%s' ('%s': %llu bytes at offset %llu do "
                        "not fit its %llu bytes)",
                        region, tensor, (unsigned long long)bytes,
                        (unsigned long long)offset,
                        (unsigned long long)region_size);
  return GS_OK;
}

static int check_name(const char *name, const char *what, gs_error_t *err) {
  if (!name || !name[0] || strlen(name) >= GS__SHM_NAME_MAX)
    return gs_error_set(err, GS_EINVAL,
                        "a shared memory region needs a %s of 1 to %d bytes",
                        what, GS__SHM_NAME_MAX - 1);
  return GS_OK;
}

/* Maps [offset, offset + byte_size) of the object open on fd into r. */
static int map_region(gs__shm_region_t *r, int fd, gs_error_t *err) {
  struct stat st;
  if (fstat(fd, &st) != 0)
    return gs_error_set(err, GS_ESYSTEM, "fstat of shared memory key '%s': %s",
                        r->key, strerror(errno));
  uint64_t size = st.st_size > 0 ? (uint64_t)st.st_size : 0;
  if (r->offset > size || r->byte_size > size - r->offset)
    return gs_error_set(err, GS_EINVAL,
                        "failed to register shared memory region '%s': "
                        "offset %llu + byte_size %llu is past the end of "
                        "key '%s' (%llu bytes)",
                        r->name, (unsigned long long)r->offset,
                        (unsigned long long)r->byte_size, r->key,
                        (unsigned long long)size);
  uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
  uint64_t start = r->offset / page * page;
  r->map_len = (size_t)(r->offset - start + r->byte_size);
  if (r->map_len == 0)
    return GS_OK; /* an empty region maps nothing */
  void *p = mmap(NULL, r->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
                 (off_t)start);
  if (p == MAP_FAILED)
    return gs_error_set(err, GS_ESYSTEM,
                        "mmap of shared memory key '%s' for region '%s': %s",
                        r->key, r->name, strerror(errno));
  r->map = p;
  r->host = (uint8_t *)p + (r->offset - start);
  return GS_OK;
}

static gs__shm_region_t *region_new(gs__shm_registry_t *reg, const char *name,
                                    gs__shm_kind_t kind, uint64_t byte_size) {
  gs__shm_region_t *r = calloc(1, sizeof *r);
  if (!r)
    return NULL;
  r->reg = reg;
  r->kind = kind;
  r->byte_size = byte_size;
  r->refs = 1;
  snprintf(r->name, sizeof r->name, "%s", name);
  return r;
}

/* Adds r under name, unless the name is taken or the registry is full
 * (then r is freed). */
static int insert(gs__shm_registry_t *reg, gs__shm_region_t *r,
                  gs_error_t *err) {
  int rc = GS_OK;
  pthread_mutex_lock(&reg->lock);
  if (find(reg, r->name, NULL))
    rc = gs_error_set(err, GS_EEXISTS,
                      "shared memory region '%s' already in manager", r->name);
  else if (reg->n >= GS__SHM_MAX_REGIONS)
    rc = gs_error_set(err, GS_ELIMIT,
                      "cannot register shared memory region '%s': %d "
                      "regions are registered already",
                      r->name, GS__SHM_MAX_REGIONS);
  if (rc == GS_OK) {
    r->next = reg->head;
    reg->head = r;
    reg->n++;
  }
  pthread_mutex_unlock(&reg->lock);
  if (rc != GS_OK)
    region_free(r);
  return rc;
}

static bool taken(gs__shm_registry_t *reg, const char *name) {
  pthread_mutex_lock(&reg->lock);
  bool t = find(reg, name, NULL) != NULL;
  pthread_mutex_unlock(&reg->lock);
  return t;
}

int gs__shm_register_system(gs__shm_registry_t *reg, const char *name,
                            const char *key, uint64_t offset,
                            uint64_t byte_size, gs_error_t *err) {
  int rc = check_name(name, "name", err);
  if (rc == GS_OK)
    rc = check_name(key, "key", err);
  if (rc != GS_OK)
    return rc;
  if (taken(reg, name)) /* before shm_open: the name is the first error */
    return gs_error_set(err, GS_EEXISTS,
                        "shared memory region '%s' already in manager", name);
  gs__shm_region_t *r = region_new(reg, name, GS__SHM_SYSTEM, byte_size);
  if (!r)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  snprintf(r->key, sizeof r->key, "%s", key);
  r->offset = offset;
  int fd = shm_open(key, O_RDWR, 0);
  if (fd < 0) {
    int e = errno;
    rc = gs_error_set(err, e == ENOENT ? GS_ENOTFOUND : GS_EINVAL,
                      "unable to open shared memory key '%s' for region "
                      "'%s': %s",
                      key, name, strerror(e));
    free(r);
    return rc;
  }
  rc = map_region(r, fd, err);
  close(fd);
  if (rc != GS_OK) {
    region_free(r);
    return rc;
  }
  return insert(reg, r, err);
}

int gs__shm_register_cuda(gs__shm_registry_t *reg, const char *name,
                          const void *handle, size_t handle_len,
                          int64_t device_id, uint64_t byte_size,
                          gs_error_t *err) {
  int rc = check_name(name, "name", err);
  if (rc != GS_OK)
    return rc;
  if (handle_len != GS__SHM_CUDA_HANDLE_BYTES)
    return gs_error_set(err, GS_EINVAL,
                        "CUDA shared memory region '%s': raw_handle is %zu "
                        "bytes, a cudaIpcMemHandle_t is %d",
                        name, handle_len, GS__SHM_CUDA_HANDLE_BYTES);
  if (device_id < 0 || device_id > 1023)
    return gs_error_set(err, GS_EINVAL,
                        "CUDA shared memory region '%s': device_id %lld is "
                        "not a device",
                        name, (long long)device_id);
  if (taken(reg, name))
    return gs_error_set(err, GS_EEXISTS,
                        "shared memory region '%s' already in manager", name);
  gs__shm_region_t *r = region_new(reg, name, GS__SHM_CUDA, byte_size);
  if (!r)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  r->device_id = device_id;
  /* register and unregister run on the loop thread only: reg->cuda is
   * written here and read by requests after their region is found. */
  rc = gs__shm_cuda_open(&reg->cuda, r, handle, err);
  if (rc != GS_OK) {
    free(r);
    return rc;
  }
  return insert(reg, r, err);
}

/* Drops the registry's reference to *link's region, unlinking it; the
 * region is freed now or by the last request holding it. Under the lock;
 * returns the region to free after unlocking (or NULL). */
static gs__shm_region_t *unlink_region(gs__shm_registry_t *reg,
                                       gs__shm_region_t **link) {
  gs__shm_region_t *r = *link;
  *link = r->next;
  r->next = NULL;
  reg->n--;
  return --r->refs == 0 ? r : NULL;
}

int gs__shm_unregister(gs__shm_registry_t *reg, gs__shm_kind_t kind,
                       const char *name, gs_error_t *err) {
  gs__shm_region_t *dead[GS__SHM_MAX_REGIONS];
  size_t n_dead = 0;
  (void)err; /* nothing fails: an unknown name is no error, as in Triton */
  pthread_mutex_lock(&reg->lock);
  if (name) {
    gs__shm_region_t **link, *r = find(reg, name, &link);
    if (r && r->kind == kind && (dead[n_dead] = unlink_region(reg, link)))
      n_dead++;
  } else {
    for (gs__shm_region_t **link = &reg->head; *link;) {
      if ((*link)->kind != kind) {
        link = &(*link)->next;
        continue;
      }
      if ((dead[n_dead] = unlink_region(reg, link)))
        n_dead++;
    }
  }
  pthread_mutex_unlock(&reg->lock);
  for (size_t i = 0; i < n_dead; i++)
    region_free(dead[i]);
  return GS_OK;
}

static json_t *region_json(const gs__shm_region_t *r) {
  if (r->kind == GS__SHM_CUDA)
    return json_pack("{s:s, s:I, s:I}", "name", r->name, "device_id",
                     (json_int_t)r->device_id, "byte_size",
                     (json_int_t)r->byte_size);
  return json_pack("{s:s, s:s, s:I, s:I}", "name", r->name, "key", r->key,
                   "offset", (json_int_t)r->offset, "byte_size",
                   (json_int_t)r->byte_size);
}

json_t *gs__shm_status_json(gs__shm_registry_t *reg, gs__shm_kind_t kind,
                            const char *name, gs_error_t *err) {
  json_t *a = json_array();
  if (!a) {
    gs_error_set(err, GS_ENOMEM, "out of memory");
    return NULL;
  }
  pthread_mutex_lock(&reg->lock);
  const gs__shm_region_t *one = name ? find(reg, name, NULL) : NULL;
  if (name && (!one || one->kind != kind)) {
    if (one) /* Triton's words */
      gs_error_set(err, GS_ENOTFOUND,
                   "The region named '%s' is registered as %s shared "
                   "memory, not %s shared memory",
                   name, kind_name(one->kind), kind_name(kind));
    else
      gs_error_set(err, GS_ENOTFOUND,
                   "Unable to find %s shared memory region: '%s'",
                   kind == GS__SHM_CUDA ? "cuda" : "system", name);
    json_decref(a);
    a = NULL;
  }
  for (const gs__shm_region_t *r = reg->head; a && r; r = r->next)
    if (r->kind == kind && (!name || r == one))
      json_array_append_new(a, region_json(r));
  pthread_mutex_unlock(&reg->lock);
  return a;
}

gs__shm_region_t *gs__shm_acquire(gs__shm_registry_t *reg, const char *name,
                                  gs_error_t *err) {
  gs__shm_region_t *r = NULL;
  if (reg) {
    pthread_mutex_lock(&reg->lock);
    if ((r = find(reg, name, NULL)))
      r->refs++;
    pthread_mutex_unlock(&reg->lock);
  }
  if (!r)
    gs_error_set(err, GS_ENOTFOUND, "Unable to find shared memory region: '%s'",
                 name);
  return r;
}

void gs__shm_drop(gs__shm_region_t *r) {
  if (!r)
    return;
  gs__shm_registry_t *reg = r->reg;
  pthread_mutex_lock(&reg->lock);
  bool last = --r->refs == 0;
  pthread_mutex_unlock(&reg->lock);
  if (last) /* unregistered while this request held it */
    region_free(r);
}
