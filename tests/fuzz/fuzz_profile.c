/* libFuzzer harness for gs_profile_parse. The first byte picks the catalog
 * (low nibble mod 10: the 8 table models, soft, host) and whether ":START"
 * is allowed (bit 4: '0'..'9' allow it, '@'..'I' do not); the rest is the
 * text. Results must agree with the catalog they were parsed against. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gpuslice/catalog.h"

#define N_CATALOGS 10
#define TEXT_MAX 300 /* past the parser's 127-byte limit */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const gs_catalog_t *catalog(unsigned i) {
  static gs_catalog_t cats[N_CATALOGS];
  static bool ready;
  if (!ready) {
    for (unsigned k = 0; k < gs_catalog_model_count(); k++)
      if (gs_catalog_for_model(&cats[k], gs_catalog_model_name(k), NULL))
        abort();
    gs_catalog_synth_soft(&cats[8], "NVIDIA L4", 58, 23034);
    gs_catalog_synth_host(&cats[9], 2, 24576);
    ready = true;
  }
  return &cats[i];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  const gs_catalog_t *cat = catalog((data[0] & 0x0f) % N_CATALOGS);
  bool allow_start = data[0] & 0x10;
  char text[TEXT_MAX + 1];
  size_t len = size - 1 > TEXT_MAX ? TEXT_MAX : size - 1;
  memcpy(text, data + 1, len);
  text[len] = '\0';

  gs_error_t err;
  gs_error_clear(&err);
  gs_profile_ref_t ref = {0};
  int rc = gs_profile_parse(cat, text, allow_start, &ref, &err);
  if (rc != GS_OK) {
    if (err.code != rc || memchr(err.msg, '\0', sizeof err.msg) == NULL ||
        err.msg[0] == '\0')
      abort();
    return 0;
  }
  const gs_gi_profile_t *gi = gs_catalog_gi(cat, ref.gi_profile_id);
  if (!gi || strlen(text) > 127 || (!allow_start && ref.start != -1))
    abort();
  if (ref.start >= 0 && !(gi->start_mask & (UINT32_C(1) << ref.start)))
    abort();
  if (ref.ci_profile_id != -1 &&
      !gs_catalog_ci(gi, (unsigned)ref.ci_profile_id))
    abort();
  char name[GS_PROFILE_NAME_MAX + 8];
  gs_catalog_device_name(gi,
                         ref.ci_profile_id == -1
                             ? gs_catalog_ci_full(gi)
                             : gs_catalog_ci(gi, (unsigned)ref.ci_profile_id),
                         name, sizeof name);
  /* the canonical name parses back to the same reference */
  gs_profile_ref_t again;
  if (gs_profile_parse(cat, name, false, &again, NULL) != GS_OK ||
      again.gi_profile_id != ref.gi_profile_id)
    abort();
  return 0;
}
