/* dlopen and dlsym as both GPU shims use them. */
#include "gpu/dl_int.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

int gs__dl_open(void **dl, const char *path, const char *what,
                gs_error_t *err) {
  dlerror();
  *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (*dl)
    return GS_OK;
  const char *why = dlerror();
  return gs_error_set(err, GS_ENODEV, "%s not found: dlopen %s: %s", what, path,
                      why ? why : "unknown error");
}

/* dlsym returns an object pointer; C has no cast from it to a function
 * pointer, so the bytes are copied (what POSIX requires to work). */
bool gs__dl_resolve(void *dl, void *fn_slot, const char *sym, const char *old) {
  void *p = dlsym(dl, sym);
  if (!p && old)
    p = dlsym(dl, old);
  memcpy(fn_slot, &p, sizeof p);
  return p != NULL;
}

int gs__dl_open_named(void **dl, char *dst, size_t dst_size, const char *path,
                      const char *what, gs_error_t *err) {
  if (strlen(path) >= dst_size)
    return gs_error_set(err, GS_EINVAL, "%s library path is too long", what);
  snprintf(dst, dst_size, "%s", path);
  return gs__dl_open(dl, path, what, err);
}
