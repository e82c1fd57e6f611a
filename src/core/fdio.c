/* gs_write_all (fdio.h). */
#include "core/fdio.h"

#include <errno.h>
#include <unistd.h>

int gs_write_all(int fd, const void *data, size_t n) {
  const char *p = data;
  while (n > 0) {
    ssize_t put = write(fd, p, n);
    if (put < 0 && errno == EINTR)
      continue;
    if (put < 0)
      return -1;
    p += put;
    n -= (size_t)put;
  }
  return 0;
}
