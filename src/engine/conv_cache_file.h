/* The conv choice cache's file (TensorRT's timing cache, for the CUDA
 * provider's conv choices): a header naming the GPU and software the choices
 * were timed on, then (key, choice) records as opaque bytes. No CUDA here, so
 * that the format is tested and fuzzed without a GPU. */
#ifndef GPUSLICE_ENGINE_CONV_CACHE_FILE_H
#define GPUSLICE_ENGINE_CONV_CACHE_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "gpuslice/error.h"

#define GS__CCF_VERSION 1
#define GS__CCF_HEADER_BYTES 168
#define GS__CCF_MAX_ENTRIES 4096 /* the process cache's own limit */

/* What the choices depend on beyond their keys: the record sizes (the
 * struct layouts), the GPU and the libraries. The key holds the SMs a
 * session runs on but not the GPU's, hence sms. */
typedef struct gs__ccf_ident_s {
  uint32_t key_size, choice_size;
  char gpu[96]; /* cuDeviceGetName, NUL-padded */
  int32_t cc_major, cc_minor, sms, driver;
  uint64_t cudnn, cublaslt; /* cudnnGetVersion, cublasLtGetVersion */
} gs__ccf_ident_t;

/* Records of key_size + choice_size bytes each, keys unique. */
typedef struct {
  size_t key_size, choice_size;
  unsigned char *rec;
  size_t n, cap;
} gs__ccf_table_t;

void gs__ccf_table_init(gs__ccf_table_t *t, size_t key_size,
                        size_t choice_size);
void gs__ccf_table_free(gs__ccf_table_t *t);
/* The choice bytes of key, or NULL. */
unsigned char *gs__ccf_table_find(const gs__ccf_table_t *t, const void *key);
/* Adds or replaces key's choice; GS_ELIMIT past GS__CCF_MAX_ENTRIES. */
int gs__ccf_table_put(gs__ccf_table_t *t, const void *key, const void *choice,
                      gs_error_t *err);

/* Reads a whole file image into out (initialised here, empty on failure):
 * GS_EPARSE naming why when the header is not this format, names another
 * GPU or software than want (want NULL: any; *got gets the file's, got may
 * be NULL), or the size, count or checksum do not add up. */
int gs__ccf_parse(const void *data, size_t size, const gs__ccf_ident_t *want,
                  gs__ccf_ident_t *got, gs__ccf_table_t *out, gs_error_t *err);
/* The file image of t under ident (malloc'd into *out, *size bytes). */
int gs__ccf_encode(const gs__ccf_ident_t *ident, const gs__ccf_table_t *t,
                   unsigned char **out, size_t *size, gs_error_t *err);

/* gs__ccf_parse of the file at path: GS_ENOTFOUND when there is none. */
int gs__ccf_load(const char *path, const gs__ccf_ident_t *want,
                 gs__ccf_table_t *out, gs_error_t *err);
/* Writes t to path atomically (a temporary file in the same directory,
 * fsync, rename, fsync of the directory), making the directory if needed.
 * The records of a valid file already there for the same ident that t lacks
 * are kept (merged; t's win): two processes saving leave a valid file with
 * the later one's records at least. */
int gs__ccf_save(const char *path, const gs__ccf_ident_t *ident,
                 const gs__ccf_table_t *t, gs_error_t *err);

#endif
