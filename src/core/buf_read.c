/* Reading a file into a gs_buf: the file's own size is never trusted, the
 * buffer's limit is, so a file that grows while read (or lies in fstat, as
 * /proc does) still stops at the limit with the limit's message. */
#include <errno.h>
#include <unistd.h>

#include "core/buf.h"

#define READ_CHUNK ((size_t)64 << 10)

int gs_buf_read_fd(gs_buf_t *b, int fd) {
  for (;;) {
    if (b->failed)
      return b->failed;
    size_t room = b->max - b->len;
    char probe; /* at the limit: one more byte means over it */
    size_t want = room < READ_CHUNK ? room : READ_CHUNK;
    char *tail = want ? gs_buf_reserve(b, want) : &probe;
    if (!tail)
      return b->failed;
    ssize_t got = read(fd, tail, want ? want : 1);
    if (got < 0 && errno == EINTR)
      continue;
    if (got < 0)
      return GS_ESYSTEM;
    if (got == 0)
      return GS_OK;
    if (!want)
      return gs_buf_add(b, &probe, 1); /* fails: over the limit */
    gs_buf_commit(b, (size_t)got);
  }
}
