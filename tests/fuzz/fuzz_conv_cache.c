/* libFuzzer harness for the conv choice cache's file (conv_cache_file.c):
 * the input is read as a cache file for any GPU, then for a fixed one; a
 * file that reads is written out again and must read back to the same
 * records, and a refused one must leave no records. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/conv_cache_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  gs__ccf_ident_t got, want = {.key_size = 384,
                               .choice_size = 128,
                               .cc_major = 9,
                               .sms = 132,
                               .driver = 13000,
                               .cudnn = 91900,
                               .cublaslt = 130100};
  gs__ccf_table_t t, again;
  gs_error_t err;
  memcpy(want.gpu, "NVIDIA H100 80GB HBM3", 22);
  if (gs__ccf_parse(data, size, &want, NULL, &t, &err) != GS_OK && t.n)
    abort();
  gs__ccf_table_free(&t);
  if (gs__ccf_parse(data, size, NULL, &got, &t, &err) != GS_OK) {
    if (t.n || t.rec)
      abort();
    return 0;
  }
  unsigned char *img;
  size_t img_size, rs = t.key_size + t.choice_size;
  if (gs__ccf_encode(&got, &t, &img, &img_size, &err) != GS_OK)
    abort();
  if (gs__ccf_parse(img, img_size, &got, NULL, &again, &err) != GS_OK ||
      again.n != t.n || (t.n && memcmp(again.rec, t.rec, t.n * rs) != 0))
    abort();
  free(img);
  gs__ccf_table_free(&again);
  gs__ccf_table_free(&t);
  return 0;
}
