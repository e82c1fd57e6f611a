/* Writing a whole byte range to a file descriptor, through short writes
 * and EINTR: the state file, the CDI spec and the conv-choice cache file
 * all write this way before their fsync and rename. */
#ifndef GS_CORE_FDIO_H
#define GS_CORE_FDIO_H

#include <stddef.h>

/* 0 when all n bytes were written; -1 with errno set otherwise. */
int gs_write_all(int fd, const void *data, size_t n);

#endif
