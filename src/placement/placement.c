/* Placement engine. GPU instances live on the memory-slice axis (with a
 * budget of compute slices), compute instances on their GI's compute axis;
 * one packer serves both. The search is exhaustive (a device holds at most
 * eight instances) with symmetry breaking between identical requests, so
 * any multiset that fits is placed whatever order it was asked in. */
#include "gpuslice/placement.h"

#include <stdio.h>
#include <string.h>

/* A profile as the packer sees it. */
typedef struct kind_s {
  const char *name;
  unsigned size;      /* slices occupied on the axis */
  unsigned cost;      /* budget units consumed (compute slices) */
  uint32_t starts;    /* legal starts */
  unsigned max_count; /* per axis */
  unsigned existing;  /* already on the axis */
} kind_t;

typedef struct packer_s {
  const char *axis_name; /* "memory slices", "compute slices" */
  unsigned axis_size;
  uint32_t used;   /* slices taken by what already exists */
  unsigned budget; /* cost units still free */
  unsigned n_kinds;
  kind_t kinds[GS_MAX_GI_PROFILES];
  unsigned order[GS_MAX_GI_PROFILES]; /* kinds, largest first */
  char names[GS_MAX_GI_PROFILES][16]; /* CI kind names ("2c") */
  /* Requests, sorted largest first; fixed < 0 means free. */
  size_t n;
  unsigned req_kind[GS_MAX_REQUESTS];
  int req_fixed[GS_MAX_REQUESTS];
  size_t req_orig[GS_MAX_REQUESTS]; /* index in the caller's array */
  /* Search state and best result. */
  unsigned cur[GS_MAX_REQUESTS];
  unsigned best[GS_MAX_REQUESTS];
  unsigned best_score[GS_MAX_GI_PROFILES];
  bool found;
  size_t deepest;        /* most requests placed in any branch */
  uint32_t deepest_used; /* slices used at that point */
} packer_t;

static uint32_t span(unsigned start, unsigned size) {
  return ((1u << size) - 1u) << start;
}

static bool larger(const kind_t *a, const kind_t *b) {
  if (a->cost != b->cost)
    return a->cost > b->cost;
  return a->size > b->size;
}

static void order_kinds(packer_t *pk) {
  for (unsigned i = 0; i < pk->n_kinds; i++)
    pk->order[i] = i;
  for (unsigned i = 1; i < pk->n_kinds; i++)
    for (unsigned j = i; j > 0 && larger(&pk->kinds[pk->order[j]],
                                         &pk->kinds[pk->order[j - 1]]);
         j--) {
      unsigned t = pk->order[j];
      pk->order[j] = pk->order[j - 1];
      pk->order[j - 1] = t;
    }
}

/* How many more of kind k fit alone, given slices used and budget left.
 * Starts are aligned to the profile's size, so taking free starts from
 * the lowest up is optimal for one kind. */
static unsigned kind_capacity(const kind_t *k, uint32_t used, unsigned budget,
                              unsigned already) {
  if (already >= k->max_count || k->cost == 0)
    return 0;
  unsigned n = 0, limit = k->max_count - already;
  if (budget / k->cost < limit)
    limit = budget / k->cost;
  for (unsigned s = 0; s < 32 && n < limit; s++) {
    if (!(k->starts & (1u << s)) || (used & span(s, k->size)))
      continue;
    used |= span(s, k->size);
    n++;
  }
  return n;
}

static unsigned requested_of(const packer_t *pk, unsigned kind) {
  unsigned n = 0;
  for (size_t i = 0; i < pk->n; i++)
    n += pk->req_kind[i] == kind;
  return n;
}

static void score(const packer_t *pk, uint32_t used, unsigned budget,
                  unsigned out[GS_MAX_GI_PROFILES]) {
  for (unsigned i = 0; i < pk->n_kinds; i++) {
    unsigned k = pk->order[i];
    out[i] = kind_capacity(&pk->kinds[k], used, budget,
                           pk->kinds[k].existing + requested_of(pk, k));
  }
}

/* Better: more capacity for the largest profiles; on a tie, higher starts
 * (small instances pack toward the top, as the driver places them, which
 * keeps the low starts that large profiles need). */
static bool better(const packer_t *pk, const unsigned *sc) {
  if (!pk->found)
    return true;
  for (unsigned i = 0; i < pk->n_kinds; i++)
    if (sc[i] != pk->best_score[i])
      return sc[i] > pk->best_score[i];
  for (size_t i = 0; i < pk->n; i++)
    if (pk->cur[i] != pk->best[i])
      return pk->cur[i] > pk->best[i];
  return false;
}

static void search(packer_t *pk, size_t i, uint32_t used, unsigned budget) {
  if (i > pk->deepest) {
    pk->deepest = i;
    pk->deepest_used = used;
  }
  if (i == pk->n) {
    unsigned sc[GS_MAX_GI_PROFILES];
    score(pk, used, budget, sc);
    if (better(pk, sc)) {
      pk->found = true;
      memcpy(pk->best, pk->cur, sizeof pk->cur);
      memcpy(pk->best_score, sc, sizeof sc);
    }
    return;
  }
  const kind_t *k = &pk->kinds[pk->req_kind[i]];
  if (k->cost > budget)
    return;
  unsigned first = 0;
  /* Identical free requests are interchangeable: only ascending starts. */
  if (pk->req_fixed[i] < 0 && i > 0 && pk->req_fixed[i - 1] < 0 &&
      pk->req_kind[i - 1] == pk->req_kind[i])
    first = pk->cur[i - 1] + 1;
  for (unsigned s = first; s < pk->axis_size; s++) {
    if (pk->req_fixed[i] >= 0 && s != (unsigned)pk->req_fixed[i])
      continue;
    if (!(k->starts & (1u << s)) || (used & span(s, k->size)))
      continue;
    pk->cur[i] = s;
    search(pk, i + 1, used | span(s, k->size), budget - k->cost);
  }
}

static void format_slices(uint32_t mask, unsigned axis, char *buf,
                          size_t size) {
  size_t len = 0;
  buf[0] = '\0';
  for (unsigned s = 0; s < axis; s++) {
    if (!(mask & (1u << s)))
      continue;
    unsigned e = s;
    while (e + 1 < axis && (mask & (1u << (e + 1))))
      e++;
    int w =
        e > s ? snprintf(buf + len, size - len, "%s%u-%u", len ? "," : "", s, e)
              : snprintf(buf + len, size - len, "%s%u", len ? "," : "", s);
    if (w < 0 || (size_t)w >= size - len)
      break;
    len += (size_t)w;
    s = e;
  }
  if (len == 0)
    snprintf(buf, size, "none");
}

/* Checks that need no search, each with its own precise message. */
static int precheck(const packer_t *pk, gs_error_t *err) {
  unsigned cost = 0, slices = 0;
  for (unsigned k = 0; k < pk->n_kinds; k++) {
    const kind_t *kd = &pk->kinds[k];
    unsigned req = requested_of(pk, k);
    if (req && kd->existing + req > kd->max_count)
      return gs_error_set(err, GS_ELIMIT,
                          "profile %s: %u requested and %u exist; at most %u",
                          kd->name, req, kd->existing, kd->max_count);
  }
  for (size_t i = 0; i < pk->n; i++) {
    const kind_t *kd = &pk->kinds[pk->req_kind[i]];
    cost += kd->cost;
    slices += kd->size;
    int s = pk->req_fixed[i];
    if (s >= 0 && (s >= 32 || !(kd->starts & (1u << s)))) {
      char starts[64];
      gs_format_starts(kd->starts, starts, sizeof starts);
      return gs_error_set(err, GS_EINVAL,
                          "profile %s cannot start at slice %d: starts are %s",
                          kd->name, s, starts);
    }
  }
  if (cost > pk->budget)
    return gs_error_set(err, GS_ENOFIT,
                        "the request needs %u compute slices; %u are free",
                        cost, pk->budget);
  unsigned free_slices = pk->axis_size - (unsigned)__builtin_popcount(pk->used);
  if (slices > free_slices)
    return gs_error_set(err, GS_ENOFIT, "the request needs %u %s; %u are free",
                        slices, pk->axis_name, free_slices);
  return GS_OK;
}

/* The message when no arrangement exists: name the request that could not
 * be placed in the most complete partial arrangement, and the free slices. */
static int explain_nofit(const packer_t *pk, gs_error_t *err) {
  size_t stuck = pk->deepest < pk->n ? pk->deepest : pk->n - 1;
  const kind_t *kd = &pk->kinds[pk->req_kind[stuck]];
  char free_s[64], starts[64];
  format_slices(~pk->deepest_used & span(0, pk->axis_size), pk->axis_size,
                free_s, sizeof free_s);
  if (pk->req_fixed[stuck] >= 0)
    snprintf(starts, sizeof starts, "%d", pk->req_fixed[stuck]);
  else
    gs_format_starts(kd->starts, starts, sizeof starts);
  return gs_error_set(err, GS_ENOFIT,
                      "no arrangement fits: %s needs %u free %s starting at "
                      "%s, but with the others placed the free %s are %s",
                      kd->name, kd->size, pk->axis_name, starts, pk->axis_name,
                      free_s);
}

/* Sorts requests largest first (fixed before free among equals) so the
 * search fails early and identical requests are adjacent. */
static void sort_requests(packer_t *pk) {
  for (size_t i = 1; i < pk->n; i++)
    for (size_t j = i; j > 0; j--) {
      const kind_t *a = &pk->kinds[pk->req_kind[j]];
      const kind_t *b = &pk->kinds[pk->req_kind[j - 1]];
      bool swap = larger(a, b) ||
                  (pk->req_kind[j] == pk->req_kind[j - 1] &&
                   pk->req_fixed[j] >= 0 && pk->req_fixed[j - 1] < 0) ||
                  (!larger(b, a) && pk->req_kind[j] < pk->req_kind[j - 1]);
      if (!swap)
        break;
      unsigned tk = pk->req_kind[j];
      int tf = pk->req_fixed[j];
      size_t to = pk->req_orig[j];
      pk->req_kind[j] = pk->req_kind[j - 1];
      pk->req_fixed[j] = pk->req_fixed[j - 1];
      pk->req_orig[j] = pk->req_orig[j - 1];
      pk->req_kind[j - 1] = tk;
      pk->req_fixed[j - 1] = tf;
      pk->req_orig[j - 1] = to;
    }
}

static int pack(packer_t *pk, unsigned *starts, gs_error_t *err) {
  order_kinds(pk);
  sort_requests(pk);
  int rc = precheck(pk, err);
  if (rc != GS_OK)
    return rc;
  search(pk, 0, pk->used, pk->budget);
  if (!pk->found)
    return explain_nofit(pk, err);
  for (size_t i = 0; i < pk->n; i++)
    starts[pk->req_orig[i]] = pk->best[i];
  return GS_OK;
}

static void packer_for_gis(packer_t *pk, const gs_catalog_t *cat,
                           const gs_layout_t *layout) {
  memset(pk, 0, sizeof *pk);
  pk->axis_name = "memory slices";
  pk->axis_size = cat->memory_slices;
  pk->used = layout ? gs_layout_used_slices(cat, layout) : 0;
  unsigned used_compute = layout ? gs_layout_used_compute(cat, layout) : 0;
  pk->budget = used_compute < cat->compute_slices
                   ? cat->compute_slices - used_compute
                   : 0;
  pk->n_kinds = cat->n_gi;
  for (unsigned k = 0; k < cat->n_gi; k++) {
    const gs_gi_profile_t *p = &cat->gi[k];
    kind_t *kd = &pk->kinds[k];
    kd->name = p->name;
    kd->size = p->memory_slices;
    kd->cost = p->compute_slices;
    kd->starts = p->start_mask;
    kd->max_count = p->max_count;
    for (unsigned i = 0; layout && i < layout->n_gi; i++)
      kd->existing += layout->gi[i].profile_id == p->id;
  }
}

static int kind_of_gi(const gs_catalog_t *cat, unsigned profile_id,
                      unsigned *kind, gs_error_t *err) {
  for (unsigned k = 0; k < cat->n_gi; k++)
    if (cat->gi[k].id == profile_id) {
      *kind = k;
      return GS_OK;
    }
  return gs_error_set(err, GS_ENOTFOUND, "no GPU instance profile ID %u on %s",
                      profile_id, cat->model);
}

/* Explicit starts get messages naming what is in the way. */
static int check_fixed_gis(const gs_catalog_t *cat, const gs_layout_t *existing,
                           const gs_gi_request_t *req, size_t n,
                           gs_error_t *err) {
  for (size_t i = 0; i < n; i++) {
    if (req[i].start < 0)
      continue;
    const gs_gi_profile_t *p = gs_catalog_gi(cat, req[i].profile_id);
    unsigned s = (unsigned)req[i].start;
    if (s >= 32 || !(p->start_mask & (1u << s))) {
      char starts[64];
      gs_format_starts(p->start_mask, starts, sizeof starts);
      return gs_error_set(err, GS_EINVAL,
                          "profile %s cannot start at slice %u: starts are %s",
                          p->name, s, starts);
    }
    uint32_t mine = span(s, p->memory_slices);
    for (unsigned g = 0; existing && g < existing->n_gi; g++) {
      const gs_gi_t *gi = &existing->gi[g];
      const gs_gi_profile_t *q = gs_catalog_gi(cat, gi->profile_id);
      if (q && (span(gi->start, q->memory_slices) & mine))
        return gs_error_set(
            err, GS_ENOFIT,
            "%s at %u:%u overlaps GPU instance %u (%s at %u:%u)", p->name, s,
            p->memory_slices, gi->id, q->name, gi->start, q->memory_slices);
    }
    for (size_t j = 0; j < i; j++) {
      if (req[j].start < 0)
        continue;
      const gs_gi_profile_t *q = gs_catalog_gi(cat, req[j].profile_id);
      if (span((unsigned)req[j].start, q->memory_slices) & mine)
        return gs_error_set(err, GS_ENOFIT,
                            "%s at %u:%u overlaps the requested %s at %d:%u",
                            p->name, s, p->memory_slices, q->name, req[j].start,
                            q->memory_slices);
    }
  }
  return GS_OK;
}

int gs_place_gis(const gs_catalog_t *cat, const gs_layout_t *existing,
                 const gs_gi_request_t *req, size_t n, unsigned *starts,
                 gs_error_t *err) {
  if (n > GS_MAX_REQUESTS)
    return gs_error_set(err, GS_ELIMIT, "%zu instances requested; at most %d",
                        n, GS_MAX_REQUESTS);
  if (existing && !existing->mig_enabled && n > 0)
    return gs_error_set(err, GS_EUNSUPPORTED,
                        "partitioning (MIG mode) is disabled on this device");
  packer_t pk;
  packer_for_gis(&pk, cat, existing);
  pk.n = n;
  for (size_t i = 0; i < n; i++) {
    int rc = kind_of_gi(cat, req[i].profile_id, &pk.req_kind[i], err);
    if (rc != GS_OK)
      return rc;
    pk.req_fixed[i] = req[i].start;
    pk.req_orig[i] = i;
  }
  int rc = check_fixed_gis(cat, existing, req, n, err);
  if (rc != GS_OK)
    return rc;
  return pack(&pk, starts, err);
}

int gs_place_cis(const gs_gi_profile_t *gi_prof, const gs_gi_t *existing,
                 const gs_ci_request_t *req, size_t n, unsigned *starts,
                 gs_error_t *err) {
  if (n > GS_MAX_REQUESTS)
    return gs_error_set(err, GS_ELIMIT, "%zu compute instances requested", n);
  packer_t pk;
  memset(&pk, 0, sizeof pk);
  pk.axis_name = "compute slices";
  pk.axis_size = gi_prof->compute_slices;
  pk.used = existing ? gs_gi_used_compute(gi_prof, existing) : 0;
  pk.budget = pk.axis_size - (unsigned)__builtin_popcount(pk.used);
  pk.n_kinds = gi_prof->n_ci;
  for (unsigned k = 0; k < gi_prof->n_ci; k++) {
    const gs_ci_profile_t *c = &gi_prof->ci[k];
    kind_t *kd = &pk.kinds[k];
    snprintf(pk.names[k], sizeof pk.names[k], "%uc", c->compute_slices);
    kd->name = pk.names[k];
    kd->size = kd->cost = c->compute_slices;
    kd->starts = c->start_mask;
    kd->max_count = c->max_count;
    for (unsigned i = 0; existing && i < existing->n_ci; i++)
      kd->existing += existing->ci[i].profile_id == c->id;
  }
  pk.n = n;
  for (size_t i = 0; i < n; i++) {
    unsigned k = 0;
    while (k < gi_prof->n_ci && gi_prof->ci[k].id != req[i].profile_id)
      k++;
    if (k == gi_prof->n_ci)
      return gs_error_set(err, GS_ENOTFOUND,
                          "compute instance profile %u is not allowed in %s",
                          req[i].profile_id, gi_prof->name);
    pk.req_kind[i] = k;
    pk.req_fixed[i] = req[i].start;
    pk.req_orig[i] = i;
  }
  return pack(&pk, starts, err);
}

void gs_capacity(const gs_catalog_t *cat, const gs_layout_t *layout,
                 unsigned free[GS_MAX_GI_PROFILES]) {
  packer_t pk;
  packer_for_gis(&pk, cat, layout);
  for (unsigned k = 0; k < GS_MAX_GI_PROFILES; k++)
    free[k] = 0;
  if (layout && !layout->mig_enabled)
    return;
  for (unsigned k = 0; k < pk.n_kinds; k++)
    free[k] =
        kind_capacity(&pk.kinds[k], pk.used, pk.budget, pk.kinds[k].existing);
}

uint32_t gs_free_starts(const gs_catalog_t *cat, const gs_layout_t *layout,
                        unsigned profile_id) {
  packer_t pk;
  unsigned k = 0;
  packer_for_gis(&pk, cat, layout);
  if (kind_of_gi(cat, profile_id, &k, NULL) != GS_OK ||
      (layout && !layout->mig_enabled))
    return 0;
  const kind_t *kd = &pk.kinds[k];
  if (kd->existing >= kd->max_count || kd->cost > pk.budget)
    return 0;
  uint32_t out = 0;
  for (unsigned s = 0; s < pk.axis_size; s++)
    if ((kd->starts & (1u << s)) && !(pk.used & span(s, kd->size)))
      out |= 1u << s;
  return out;
}
