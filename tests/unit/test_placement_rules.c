/* Placement rules: the placement engine against an independent brute-force
 * model of the MIG placement rules. The model's tables are transcribed from
 * NVIDIA's MIG User Guide, not read from the catalog or derived from
 * src/placement/placement.c; the catalog only names the GPUs and profiles. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "gpuslice/catalog.h"
#include "gpuslice/layout.h"
#include "gpuslice/placement.h"

#define B(s) (1u << (s))
#define MAXP 7            /* GI profiles of one GPU in the model */
#define MAXQ 5            /* CI profiles of one GI in the model */
#define KEY_SPACE 32768   /* multisets as mixed-radix keys, radix max + 2 */
#define MAX_FEASIBLE 5000 /* the brief's cap on multisets checked per GPU */

/* ---- the model: GI placement rules of the reference -------------------- */

typedef struct {
  unsigned id, c, size, max; /* profile ID, compute slices, memory slices */
  uint32_t starts;           /* legal starts on the memory axis */
} gi_rule_t;

typedef struct {
  unsigned mem, compute, n;
  gi_rule_t p[MAXP];
} gi_rules_t;

/* "ID | max | placement size @ starts", 7-compute/8-memory GPUs. */
static const gi_rules_t rules_7x8 = {
    .mem = 8,
    .compute = 7,
    .n = 7,
    .p = {{19, 1, 1, 7, 0x7f},
          {20, 1, 1, 1, 0x7f},
          {15, 1, 2, 4, B(0) | B(2) | B(4) | B(6)},
          {14, 2, 2, 3, B(0) | B(2) | B(4)},
          {9, 3, 4, 2, B(0) | B(4)},
          {5, 4, 4, 1, B(0)},
          {0, 7, 8, 1, B(0)}},
};

/* The A30 table: 4 memory and 4 compute slices. */
static const gi_rules_t rules_a30 = {
    .mem = 4,
    .compute = 4,
    .n = 5,
    .p = {{14, 1, 1, 4, 0xf},
          {21, 1, 1, 1, 0xf},
          {5, 2, 2, 2, B(0) | B(2)},
          {6, 2, 2, 1, B(0) | B(2)},
          {0, 4, 4, 1, B(0)}},
};

/* What a layout holds, as the rules see it. */
typedef struct {
  uint32_t used;    /* memory slices taken */
  unsigned compute; /* compute slices taken */
  unsigned count[MAXP];
} occ_t;

/* The rule: a GI fits iff its start is legal, its memory slices are free,
 * its profile is under its max count and the compute slices add up. */
static bool occ_fits(const gi_rules_t *r, const occ_t *o, unsigned p,
                     unsigned s) {
  const gi_rule_t *g = &r->p[p];
  if (s >= r->mem || !(g->starts & B(s)) || s + g->size > r->mem)
    return false;
  uint32_t span = (B(g->size) - 1) << s;
  return !(o->used & span) && o->count[p] < g->max &&
         o->compute + g->c <= r->compute;
}

static void occ_add(const gi_rules_t *r, occ_t *o, unsigned p, unsigned s) {
  o->used |= (B(r->p[p].size) - 1) << s;
  o->compute += r->p[p].c;
  o->count[p]++;
}

static int rule_index(const gi_rules_t *r, unsigned profile_id) {
  for (unsigned p = 0; p < r->n; p++)
    if (r->p[p].id == profile_id)
      return (int)p;
  return -1;
}

static uint32_t model_free_starts(const gi_rules_t *r, const occ_t *o,
                                  unsigned p) {
  uint32_t mask = 0;
  for (unsigned s = 0; s < r->mem; s++)
    if (occ_fits(r, o, p, s))
      mask |= B(s);
  return mask;
}

/* How many more of profile p can be added alone (nvidia-smi's Free). */
static unsigned model_capacity(const gi_rules_t *r, const occ_t *o, unsigned p,
                               unsigned from) {
  unsigned best = 0;
  for (unsigned s = from; s < r->mem; s++) {
    if (!occ_fits(r, o, p, s))
      continue;
    occ_t next = *o;
    occ_add(r, &next, p, s);
    unsigned k = 1 + model_capacity(r, &next, p, s + 1);
    if (k > best)
      best = k;
  }
  return best;
}

/* Does some placement of the requests exist beside o, honoring starts >= 0? */
static bool model_place_exists(const gi_rules_t *r, const occ_t *o,
                               const unsigned *prof, const int *start,
                               size_t n) {
  if (n == 0)
    return true;
  for (unsigned s = 0; s < r->mem; s++) {
    if ((start[0] >= 0 && (unsigned)start[0] != s) ||
        !occ_fits(r, o, prof[0], s))
      continue;
    occ_t next = *o;
    occ_add(r, &next, prof[0], s);
    if (model_place_exists(r, &next, prof + 1, start + 1, n - 1))
      return true;
  }
  return false;
}

/* ---- the model's enumeration: every valid layout, by brute force ------- */

typedef struct {
  const gi_rules_t *rules;
  bool built;
  unsigned space, n_layouts;
  unsigned stride[MAXP];
  unsigned order[MAXP]; /* profiles, largest first */
  unsigned char feasible[KEY_SPACE];
  unsigned char best[KEY_SPACE][MAXP]; /* lexicographic max capacities */
} gi_model_t;

static gi_model_t model_7x8 = {.rules = &rules_7x8};
static gi_model_t model_a30 = {.rules = &rules_a30};

static unsigned key_of(const gi_model_t *m, const unsigned *count) {
  unsigned key = 0;
  for (unsigned p = 0; p < m->rules->n; p++)
    key += count[p] * m->stride[p];
  return key;
}

static unsigned decode_key(const gi_model_t *m, unsigned key, unsigned *count) {
  unsigned total = 0;
  for (unsigned p = 0; p < m->rules->n; p++) {
    count[p] = key / m->stride[p] % (m->rules->p[p].max + 2);
    total += count[p];
  }
  return total;
}

/* Capacities left, largest profile first: the preference's sort key. */
static void model_capvec(const gi_model_t *m, const occ_t *o,
                         unsigned char *vec) {
  for (unsigned k = 0; k < m->rules->n; k++)
    vec[k] = (unsigned char)model_capacity(m->rules, o, m->order[k], 0);
}

static void record_layout(gi_model_t *m, const occ_t *o) {
  unsigned key = key_of(m, o->count);
  unsigned char vec[MAXP] = {0};
  model_capvec(m, o, vec);
  if (!m->feasible[key] || memcmp(vec, m->best[key], m->rules->n) > 0)
    memcpy(m->best[key], vec, m->rules->n);
  m->feasible[key] = 1;
  m->n_layouts++;
}

/* Left to right over the memory axis: each slice is left empty or starts a
 * GI, so every layout is visited exactly once. */
static void enum_layouts(gi_model_t *m, const occ_t *o, unsigned slice) {
  const gi_rules_t *r = m->rules;
  if (slice >= r->mem) {
    record_layout(m, o);
    return;
  }
  enum_layouts(m, o, slice + 1);
  for (unsigned p = 0; p < r->n; p++) {
    if (!occ_fits(r, o, p, slice))
      continue;
    occ_t next = *o;
    occ_add(r, &next, p, slice);
    enum_layouts(m, &next, slice + r->p[p].size);
  }
}

/* Largest first: more compute slices, then more memory, then later in the
 * reference table (1g+me before 1g; either order ranks layouts the same). */
static bool larger(const gi_rules_t *r, unsigned a, unsigned b) {
  if (r->p[a].c != r->p[b].c)
    return r->p[a].c > r->p[b].c;
  if (r->p[a].size != r->p[b].size)
    return r->p[a].size > r->p[b].size;
  return a > b;
}

static void model_build(gi_model_t *m) {
  const gi_rules_t *r = m->rules;
  unsigned stride = 1;
  for (unsigned p = 0; p < r->n; p++) {
    m->stride[p] = stride;
    stride *= r->p[p].max + 2;
    unsigned k = p;
    for (; k > 0 && larger(r, p, m->order[k - 1]); k--)
      m->order[k] = m->order[k - 1];
    m->order[k] = p;
  }
  assert_true(stride <= KEY_SPACE);
  m->space = stride;
  occ_t empty = {0};
  enum_layouts(m, &empty, 0);
  m->built = true;
}

/* ---- catalogs and reporting -------------------------------------------- */

static unsigned disagreements;

__attribute__((format(printf, 1, 2))) static void disagree(const char *fmt,
                                                           ...) {
  if (disagreements++ >= 12)
    return;
  va_list ap;
  va_start(ap, fmt);
  fputs("  DISAGREE: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

static bool is_a30(const char *model) {
  return strcmp(model, "a30") == 0;
}

/* Loads GPU i and the model for it; the catalog must offer exactly the
 * model's profile IDs, or the comparison would mean nothing. */
static gi_model_t *load_gpu(unsigned i, gs_catalog_t *cat) {
  const char *name = gs_catalog_model_name(i);
  gs_error_t err;
  gs_error_clear(&err);
  assert_non_null(name);
  if (gs_catalog_for_model(cat, name, &err) != GS_OK)
    fail_msg("%s: %s", name, err.msg);
  gi_model_t *m = is_a30(name) ? &model_a30 : &model_7x8;
  if (!m->built)
    model_build(m);
  assert_int_equal(cat->memory_slices, m->rules->mem);
  assert_int_equal(cat->compute_slices, m->rules->compute);
  assert_int_equal(cat->n_gi, m->rules->n);
  for (unsigned g = 0; g < cat->n_gi; g++)
    if (rule_index(m->rules, cat->gi[g].id) < 0)
      fail_msg("%s: catalog profile %u is not in the reference", name,
               cat->gi[g].id);
  return m;
}

static const char *fmt_reqs(const gs_gi_request_t *req, size_t n,
                            const unsigned *starts) {
  static char buf[256];
  size_t len = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < n && len < sizeof buf - 24; i++) {
    int w = snprintf(buf + len, sizeof buf - len, "%s%u", i ? "," : "",
                     req[i].profile_id);
    len += (size_t)w;
    if (starts || req[i].start >= 0)
      len += (size_t)snprintf(buf + len, sizeof buf - len, "@%d",
                              starts ? (int)starts[i] : req[i].start);
  }
  return buf;
}

static const char *fmt_layout(const gs_layout_t *layout) {
  static char buf[128];
  size_t len = 0;
  buf[0] = '\0';
  for (unsigned i = 0; i < layout->n_gi && len < sizeof buf - 24; i++)
    len +=
        (size_t)snprintf(buf + len, sizeof buf - len, "%s%u@%u", i ? "," : "",
                         layout->gi[i].profile_id, layout->gi[i].start);
  return len ? buf : "empty";
}

/* The engine's placement, replayed through the rules beside `base`. */
static bool model_accepts(const gi_rules_t *r, const occ_t *base,
                          const gs_gi_request_t *req, size_t n,
                          const unsigned *starts, occ_t *out) {
  occ_t o = *base;
  for (size_t i = 0; i < n; i++) {
    int p = rule_index(r, req[i].profile_id);
    if (p < 0 || !occ_fits(r, &o, (unsigned)p, starts[i]))
      return false;
    occ_add(r, &o, (unsigned)p, starts[i]);
  }
  if (out)
    *out = o;
  return true;
}

static bool failed_as_nofit(int rc, const gs_error_t *err) {
  return (rc == GS_ENOFIT || rc == GS_ELIMIT) && err->msg[0] != '\0';
}

static uint32_t rng_next(uint32_t *state) {
  uint32_t x = *state;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return *state = x;
}

static unsigned pick_bit(uint32_t mask, uint32_t *rng) {
  unsigned k = rng_next(rng) % (unsigned)__builtin_popcount(mask);
  for (unsigned s = 0;; s++)
    if ((mask & B(s)) && k-- == 0)
      return s;
}

/* Requests for a multiset in one of three orders: as sorted (reference
 * table order), reversed, or a fixed pseudo-random shuffle. */
static size_t multiset_reqs(const gi_model_t *m, const unsigned *count,
                            unsigned order, uint32_t seed,
                            gs_gi_request_t *req) {
  size_t n = 0;
  for (unsigned p = 0; p < m->rules->n; p++)
    for (unsigned k = 0; k < count[p]; k++)
      req[n++] = (gs_gi_request_t){m->rules->p[p].id, -1};
  for (size_t i = 0; order == 1 && i < n / 2; i++) {
    gs_gi_request_t t = req[i];
    req[i] = req[n - 1 - i];
    req[n - 1 - i] = t;
  }
  uint32_t rng = seed * 2654435761u + 1;
  for (size_t i = n; order == 2 && i > 1; i--) {
    size_t j = rng_next(&rng) % i;
    gs_gi_request_t t = req[i - 1];
    req[i - 1] = req[j];
    req[j] = t;
  }
  return n;
}

static void empty_layout(gs_layout_t *layout) {
  gs_layout_init(layout);
  layout->mig_enabled = true;
}

/* ---- 1. feasible multisets, infeasible neighbours, maximal sets -------- */

static unsigned char engine_ok[KEY_SPACE]; /* 0 untried, 1 failed, 2 placed */

/* Places one multiset in three orders on an empty GPU; every order must
 * succeed with a placement the rules accept. */
static void check_feasible(const char *gpu, const gs_catalog_t *cat,
                           const gi_model_t *m, unsigned key) {
  unsigned count[MAXP];
  gs_gi_request_t req[GS_MAX_REQUESTS];
  unsigned starts[GS_MAX_REQUESTS];
  gs_layout_t empty;
  occ_t none = {0};
  empty_layout(&empty);
  decode_key(m, key, count);
  engine_ok[key] = 2;
  for (unsigned order = 0; order < 3; order++) {
    size_t n = multiset_reqs(m, count, order, key, req);
    gs_error_t err;
    gs_error_clear(&err);
    int rc = gs_place_gis(cat, &empty, req, n, starts, &err);
    if (rc != GS_OK) {
      disagree("%s: feasible %s failed: %s", gpu, fmt_reqs(req, n, NULL),
               err.msg);
      engine_ok[key] = 1;
    } else if (!model_accepts(m->rules, &none, req, n, starts, NULL)) {
      disagree("%s: invalid placement %s", gpu, fmt_reqs(req, n, starts));
    }
  }
}

/* A multiset with no valid placement must fail with GS_ENOFIT or
 * GS_ELIMIT and say why. */
static void check_infeasible(const char *gpu, const gs_catalog_t *cat,
                             const gi_model_t *m, unsigned key) {
  unsigned count[MAXP];
  gs_gi_request_t req[GS_MAX_REQUESTS];
  unsigned starts[GS_MAX_REQUESTS];
  gs_layout_t empty;
  gs_error_t err;
  empty_layout(&empty);
  gs_error_clear(&err);
  decode_key(m, key, count);
  size_t n = multiset_reqs(m, count, 0, key, req);
  int rc = gs_place_gis(cat, &empty, req, n, starts, &err);
  engine_ok[key] = rc == GS_OK ? 2 : 1;
  if (rc == GS_OK)
    disagree("%s: infeasible %s was placed as %s", gpu, fmt_reqs(req, n, NULL),
             fmt_reqs(req, n, starts));
  else if (!failed_as_nofit(rc, &err))
    disagree("%s: infeasible %s failed with %s '%s'", gpu,
             fmt_reqs(req, n, NULL), gs_err_name(rc), err.msg);
}

static bool in_range(const gi_model_t *m, unsigned key) {
  unsigned count[MAXP];
  decode_key(m, key, count);
  for (unsigned p = 0; p < m->rules->n; p++)
    if (count[p] > m->rules->p[p].max)
      return false;
  return true;
}

/* Maximal: placeable, and no single profile can be added (per the model,
 * or per the engine's answers). */
static bool is_maximal(const gi_model_t *m, unsigned key, bool engine) {
  if (!(engine ? engine_ok[key] == 2 : m->feasible[key]))
    return false;
  for (unsigned p = 0; p < m->rules->n; p++) {
    unsigned next = key + m->stride[p];
    if (engine ? engine_ok[next] == 2 : m->feasible[next])
      return false;
  }
  return true;
}

static void test_multisets(void **state) {
  (void)state;
  disagreements = 0;
  for (unsigned i = 0; i < gs_catalog_model_count(); i++) {
    gs_catalog_t cat;
    gi_model_t *m = load_gpu(i, &cat);
    const char *gpu = gs_catalog_model_name(i);
    unsigned n_feasible = 0, n_infeasible = 0, n_max = 0;
    memset(engine_ok, 0, sizeof engine_ok);
    engine_ok[0] = 2; /* the empty multiset */
    for (unsigned key = 1; key < m->space; key++)
      if (m->feasible[key]) {
        check_feasible(gpu, &cat, m, key);
        n_feasible++;
      }
    assert_true(n_feasible <= MAX_FEASIBLE);
    for (unsigned key = 0; key < m->space; key++) {
      for (unsigned p = 0; m->feasible[key] && p < m->rules->n; p++) {
        unsigned next = key + m->stride[p];
        if (!m->feasible[next] && !engine_ok[next]) {
          check_infeasible(gpu, &cat, m, next);
          n_infeasible++;
        }
      }
    }
    for (unsigned key = 0; key < m->space; key++) {
      if (!in_range(m, key))
        continue;
      bool want = is_maximal(m, key, false);
      n_max += want;
      if (want != is_maximal(m, key, true)) {
        unsigned count[MAXP];
        gs_gi_request_t req[GS_MAX_REQUESTS];
        decode_key(m, key, count);
        size_t n = multiset_reqs(m, count, 0, 0, req);
        disagree("%s: %s is %smaximal for the engine", gpu,
                 fmt_reqs(req, n, NULL), want ? "not " : "");
      }
    }
    print_message("%-10s %u layouts, %u feasible multisets (x3 orders), %u "
                  "infeasible neighbours, %u maximal\n",
                  gpu, m->n_layouts, n_feasible, n_infeasible, n_max);
  }
  assert_int_equal(disagreements, 0);
}

/* ---- 2. capacity and free starts on random partial layouts ------------- */

/* A random valid layout, built with gs_layout_add_gi from starts the rules
 * allow; o mirrors it. */
static void random_layout(const gs_catalog_t *cat, const gi_rules_t *r,
                          uint32_t *rng, unsigned tries, gs_layout_t *layout,
                          occ_t *o) {
  empty_layout(layout);
  memset(o, 0, sizeof *o);
  for (unsigned t = 0; t < tries; t++) {
    unsigned p = rng_next(rng) % r->n;
    uint32_t mask = model_free_starts(r, o, p);
    if (!mask)
      continue;
    unsigned s = pick_bit(mask, rng), gi_id;
    gs_error_t err;
    gs_error_clear(&err);
    if (gs_layout_add_gi(layout, cat, r->p[p].id, s, &gi_id, &err) != GS_OK)
      fail_msg("%s + %u@%u: %s", fmt_layout(layout), r->p[p].id, s, err.msg);
    occ_add(r, o, p, s);
  }
}

/* Rule: capacity(P) is how many more P could be created alone beside the
 * layout; free starts are the legal starts where one P fits now. */
static void test_capacity(void **state) {
  (void)state;
  disagreements = 0;
  uint32_t rng = 0x5eed1234u;
  for (unsigned i = 0; i < gs_catalog_model_count(); i++) {
    gs_catalog_t cat;
    const gi_rules_t *r = load_gpu(i, &cat)->rules;
    for (unsigned iter = 0; iter < 300; iter++) {
      gs_layout_t layout;
      occ_t o;
      unsigned cap[GS_MAX_GI_PROFILES] = {0};
      random_layout(&cat, r, &rng, iter == 0 ? 0 : rng_next(&rng) % 9, &layout,
                    &o);
      gs_capacity(&cat, &layout, cap);
      for (unsigned g = 0; g < cat.n_gi; g++) {
        unsigned p = (unsigned)rule_index(r, cat.gi[g].id);
        unsigned want = model_capacity(r, &o, p, 0);
        uint32_t mask = gs_free_starts(&cat, &layout, cat.gi[g].id);
        if (cap[g] != want)
          disagree("%s [%s]: capacity(%u) = %u, want %u",
                   gs_catalog_model_name(i), fmt_layout(&layout), cat.gi[g].id,
                   cap[g], want);
        if (mask != model_free_starts(r, &o, p))
          disagree("%s [%s]: free starts of %u = 0x%x, want 0x%x",
                   gs_catalog_model_name(i), fmt_layout(&layout), cat.gi[g].id,
                   mask, model_free_starts(r, &o, p));
      }
    }
  }
  assert_int_equal(disagreements, 0);
}

/* ---- 3. explicit starts beside existing GIs ---------------------------- */

static void check_random_request(const char *gpu, const gs_catalog_t *cat,
                                 const gi_rules_t *r, uint32_t *rng,
                                 unsigned *n_placed) {
  gs_layout_t layout;
  occ_t o, after;
  gs_gi_request_t req[GS_MAX_REQUESTS];
  unsigned prof[GS_MAX_REQUESTS], starts[GS_MAX_REQUESTS];
  int fixed[GS_MAX_REQUESTS];
  random_layout(cat, r, rng, rng_next(rng) % 4, &layout, &o);
  size_t n = 1 + rng_next(rng) % 4;
  for (size_t k = 0; k < n; k++) {
    prof[k] = rng_next(rng) % r->n;
    fixed[k] =
        rng_next(rng) % 3 ? -1 : (int)pick_bit(r->p[prof[k]].starts, rng);
    req[k] = (gs_gi_request_t){r->p[prof[k]].id, fixed[k]};
  }
  bool want = model_place_exists(r, &o, prof, fixed, n);
  gs_error_t err;
  gs_error_clear(&err);
  int rc = gs_place_gis(cat, &layout, req, n, starts, &err);
  if (rc != GS_OK) {
    if (want)
      disagree("%s [%s]: %s failed but fits: %s", gpu, fmt_layout(&layout),
               fmt_reqs(req, n, NULL), err.msg);
    else if (!failed_as_nofit(rc, &err))
      disagree("%s [%s]: %s failed with %s '%s'", gpu, fmt_layout(&layout),
               fmt_reqs(req, n, NULL), gs_err_name(rc), err.msg);
    return;
  }
  ++*n_placed;
  if (!want)
    disagree("%s [%s]: %s cannot fit, engine placed %s", gpu,
             fmt_layout(&layout), fmt_reqs(req, n, NULL),
             fmt_reqs(req, n, starts));
  for (size_t k = 0; k < n; k++)
    if (fixed[k] >= 0 && starts[k] != (unsigned)fixed[k])
      disagree("%s: %s placed as %s ignores a fixed start", gpu,
               fmt_reqs(req, n, NULL), fmt_reqs(req, n, starts));
  if (!model_accepts(r, &o, req, n, starts, &after))
    disagree("%s [%s]: invalid placement %s", gpu, fmt_layout(&layout),
             fmt_reqs(req, n, starts));
}

/* Rule: with some starts fixed, a placement exists iff one honoring the
 * fixed starts exists beside the existing GIs; a start the profile never
 * takes fails with GS_EINVAL. */
static void test_explicit_starts(void **state) {
  (void)state;
  disagreements = 0;
  uint32_t rng = 0xabcdef01u;
  for (unsigned i = 0; i < gs_catalog_model_count(); i++) {
    gs_catalog_t cat;
    const gi_rules_t *r = load_gpu(i, &cat)->rules;
    const char *gpu = gs_catalog_model_name(i);
    unsigned n_placed = 0, n_cases = 600;
    for (unsigned iter = 0; iter < n_cases; iter++)
      check_random_request(gpu, &cat, r, &rng, &n_placed);
    print_message("%-10s %u random requests, %u placed\n", gpu, n_cases,
                  n_placed);
    assert_true(n_placed > n_cases / 10 && n_placed < n_cases * 9 / 10);
    gs_layout_t empty;
    empty_layout(&empty);
    for (unsigned p = 0; p < r->n; p++) {
      for (unsigned s = 0; s < r->mem; s++) {
        if (r->p[p].starts & B(s))
          continue;
        gs_gi_request_t req = {r->p[p].id, (int)s};
        unsigned start;
        gs_error_t err;
        gs_error_clear(&err);
        int rc = gs_place_gis(&cat, &empty, &req, 1, &start, &err);
        if (rc != GS_EINVAL || !err.msg[0])
          disagree("%s: %u@%u gave %s, want EINVAL", gpu, req.profile_id, s,
                   gs_err_name(rc));
      }
    }
  }
  assert_int_equal(disagreements, 0);
}

/* ---- 4. preference: leave the largest profiles creatable --------------- */

/* Rule (placement.h): among all valid placements of a multiset, the engine
 * picks one whose capacities, read largest profile first (7g, 4g, 3g, 2g,
 * 1g double memory, 1g+me, 1g), are the lexicographic maximum: it leaves
 * as many of the largest profile as any placement could; on a tie, as many
 * of the next; and so on. */
static void test_preference(void **state) {
  (void)state;
  disagreements = 0;
  for (unsigned i = 0; i < gs_catalog_model_count(); i++) {
    gs_catalog_t cat;
    gi_model_t *m = load_gpu(i, &cat);
    gs_layout_t empty;
    occ_t none = {0}, after;
    empty_layout(&empty);
    for (unsigned key = 1; key < m->space; key++) {
      if (!m->feasible[key])
        continue;
      unsigned count[MAXP], starts[GS_MAX_REQUESTS];
      gs_gi_request_t req[GS_MAX_REQUESTS];
      decode_key(m, key, count);
      for (unsigned order = 0; order < 2; order++) {
        size_t n = multiset_reqs(m, count, order, key, req);
        unsigned char vec[MAXP];
        gs_error_t err;
        gs_error_clear(&err);
        if (gs_place_gis(&cat, &empty, req, n, starts, &err) != GS_OK ||
            !model_accepts(m->rules, &none, req, n, starts, &after))
          continue; /* test_multisets reports it */
        model_capvec(m, &after, vec);
        if (memcmp(vec, m->best[key], m->rules->n) == 0)
          continue;
        char got[32] = "", best[32] = "";
        for (unsigned k = 0; k < m->rules->n; k++) {
          got[strlen(got)] = (char)('0' + vec[k]);
          best[strlen(best)] = (char)('0' + m->best[key][k]);
        }
        disagree("%s: %s leaves capacities %s (largest first), best %s",
                 gs_catalog_model_name(i), fmt_reqs(req, n, starts), got, best);
      }
    }
  }
  assert_int_equal(disagreements, 0);
}

/* ---- 5. known cases from "Behaviour worth copying or beating" ---------- */

static void place_known(const gs_catalog_t *cat, const gi_rules_t *r,
                        const gs_gi_request_t *req, size_t n,
                        unsigned *starts) {
  gs_layout_t empty;
  occ_t none = {0};
  gs_error_t err;
  empty_layout(&empty);
  gs_error_clear(&err);
  if (gs_place_gis(cat, &empty, req, n, starts, &err) != GS_OK)
    fail_msg("%s: %s failed: %s", cat->model, fmt_reqs(req, n, NULL), err.msg);
  if (!model_accepts(r, &none, req, n, starts, NULL))
    fail_msg("%s: invalid placement %s", cat->model, fmt_reqs(req, n, starts));
}

/* nvidia-smi -cgi 19,19,14,9 fails on an A100 where 9,19,14,19 works: the
 * engine places both orders. -cgi 19,14,5 must put the 4g at 0 (its only
 * start); the driver picks 6:1 and 4:2 for the others, any valid is fine. */
static void test_known_cases(void **state) {
  (void)state;
  static const gs_gi_request_t order_a[] = {
      {19, -1}, {19, -1}, {14, -1}, {9, -1}};
  static const gs_gi_request_t order_b[] = {
      {9, -1}, {19, -1}, {14, -1}, {19, -1}};
  static const gs_gi_request_t mixed[] = {{19, -1}, {14, -1}, {5, -1}};
  for (unsigned i = 0; i < gs_catalog_model_count(); i++) {
    gs_catalog_t cat;
    const gi_rules_t *r = load_gpu(i, &cat)->rules;
    unsigned starts[GS_MAX_REQUESTS];
    if (is_a30(cat.model))
      continue;
    place_known(&cat, r, order_a, 4, starts);
    place_known(&cat, r, order_b, 4, starts);
    place_known(&cat, r, mixed, 3, starts);
    assert_int_equal(starts[2], 0);
  }
}

/* ---- 6. compute instances inside each GI ------------------------------- */

typedef struct {
  unsigned id, c, max; /* CI profile ID (1c=0 .. 7c=4), compute slices */
  uint32_t starts;     /* on the GI's compute axis */
} ci_rule_t;

typedef struct {
  unsigned g, n;
  ci_rule_t p[MAXQ];
} ci_rules_t;

/* The reference's CI table, by the GI's compute slices. */
static const ci_rules_t ci_rules[] = {
    {1, 1, {{0, 1, 1, B(0)}}},
    {2, 2, {{0, 1, 2, B(0) | B(1)}, {1, 2, 1, B(0)}}},
    {3, 3, {{0, 1, 3, 0x7}, {1, 2, 1, B(0)}, {2, 3, 1, B(0)}}},
    {4, 3, {{0, 1, 4, 0xf}, {1, 2, 2, B(0) | B(2)}, {3, 4, 1, B(0)}}},
    {7,
     5,
     {{0, 1, 7, 0x7f},
      {1, 2, 3, B(0) | B(2) | B(4)},
      {2, 3, 2, B(0) | B(4)},
      {3, 4, 1, B(0)},
      {4, 7, 1, B(0)}}},
};

typedef struct {
  uint32_t used;
  unsigned count[MAXQ];
} ci_occ_t;

/* The rule: a CI fits iff its start is legal, its compute slices are free
 * and its profile is under its max count. */
static bool ci_fits(const ci_rules_t *cr, const ci_occ_t *o, unsigned q,
                    unsigned s) {
  const ci_rule_t *c = &cr->p[q];
  if (s >= cr->g || !(c->starts & B(s)) || s + c->c > cr->g)
    return false;
  return !(o->used & ((B(c->c) - 1) << s)) && o->count[q] < c->max;
}

static void ci_add(const ci_rules_t *cr, ci_occ_t *o, unsigned q, unsigned s) {
  o->used |= (B(cr->p[q].c) - 1) << s;
  o->count[q]++;
}

static uint32_t model_free_ci(const ci_rules_t *cr, const ci_occ_t *o,
                              unsigned q) {
  uint32_t mask = 0;
  for (unsigned s = 0; s < cr->g; s++)
    if (ci_fits(cr, o, q, s))
      mask |= B(s);
  return mask;
}

typedef struct {
  const char *gpu;
  const gs_gi_profile_t *prof;
  const ci_rules_t *cr;
  unsigned char feasible[2048];
  unsigned stride[MAXQ], space, n_layouts;
  gs_gi_t gi; /* the CI layout being visited */
} ci_walk_t;

static bool ci_accepts(const ci_rules_t *cr, ci_occ_t o,
                       const gs_ci_request_t *req, size_t n,
                       const unsigned *starts) {
  for (size_t k = 0; k < n; k++) {
    unsigned q = 0;
    while (q < cr->n && cr->p[q].id != req[k].profile_id)
      q++;
    if (q == cr->n || !ci_fits(cr, &o, q, starts[k]))
      return false;
    ci_add(cr, &o, q, starts[k]);
  }
  return true;
}

/* One CI beside an existing CI layout, with the start free or fixed. */
static void ci_check_one(ci_walk_t *w, const ci_occ_t *o, unsigned q,
                         int fixed) {
  gs_ci_request_t req = {w->cr->p[q].id, fixed};
  bool want = fixed >= 0 ? ci_fits(w->cr, o, q, (unsigned)fixed)
                         : model_free_ci(w->cr, o, q) != 0;
  unsigned start = 0;
  gs_error_t err;
  gs_error_clear(&err);
  int rc = gs_place_cis(w->prof, &w->gi, &req, 1, &start, &err);
  if ((rc == GS_OK) != want || (rc != GS_OK && !failed_as_nofit(rc, &err)))
    disagree("%s %s with %u CIs (0x%x): CI %u@%d gave %s, want %s", w->gpu,
             w->prof->name, w->gi.n_ci, o->used, req.profile_id, fixed,
             gs_err_name(rc), want ? "OK" : "ENOFIT/ELIMIT");
  else if (rc == GS_OK && (!ci_accepts(w->cr, *o, &req, 1, &start) ||
                           (fixed >= 0 && start != (unsigned)fixed)))
    disagree("%s %s: CI %u placed at %u", w->gpu, w->prof->name, req.profile_id,
             start);
}

static void ci_enum(ci_walk_t *w, const ci_occ_t *o, unsigned slice) {
  const ci_rules_t *cr = w->cr;
  if (slice >= cr->g) {
    unsigned key = 0;
    for (unsigned q = 0; q < cr->n; q++)
      key += o->count[q] * w->stride[q];
    w->feasible[key] = 1;
    w->n_layouts++;
    for (unsigned q = 0; q < cr->n; q++) {
      ci_check_one(w, o, q, -1);
      for (unsigned s = 0; s < cr->g; s++)
        if (cr->p[q].starts & B(s))
          ci_check_one(w, o, q, (int)s);
    }
    return;
  }
  ci_enum(w, o, slice + 1);
  for (unsigned q = 0; q < cr->n; q++) {
    if (!ci_fits(cr, o, q, slice))
      continue;
    ci_occ_t next = *o;
    ci_add(cr, &next, q, slice);
    gs_ci_t *ci = &w->gi.ci[w->gi.n_ci++];
    *ci = (gs_ci_t){
        .id = w->gi.n_ci - 1, .profile_id = cr->p[q].id, .start = slice};
    ci_enum(w, &next, slice + cr->p[q].c);
    w->gi.n_ci--;
  }
}

static const char *fmt_ci_reqs(const gs_ci_request_t *req, size_t n) {
  static char buf[64];
  size_t len = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < n && len < sizeof buf - 8; i++)
    len += (size_t)snprintf(buf + len, sizeof buf - len, "%sci%u", i ? "," : "",
                            req[i].profile_id);
  return buf;
}

static size_t ci_multiset_reqs(const ci_walk_t *w, unsigned key, bool reverse,
                               gs_ci_request_t *req) {
  size_t n = 0;
  for (unsigned q = 0; q < w->cr->n; q++)
    for (unsigned k = key / w->stride[q] % (w->cr->p[q].max + 2); k > 0; k--)
      req[n++] = (gs_ci_request_t){w->cr->p[q].id, -1};
  for (size_t i = 0; reverse && i < n / 2; i++) {
    gs_ci_request_t t = req[i];
    req[i] = req[n - 1 - i];
    req[n - 1 - i] = t;
  }
  return n;
}

/* A CI multiset must be placed in a fresh GI (in either order) iff some
 * placement exists; one more CI than fits must fail with GS_ENOFIT or
 * GS_ELIMIT. */
static unsigned ci_check_multisets(ci_walk_t *w) {
  unsigned checked = 0;
  for (unsigned key = 1; key < w->space; key++) {
    bool want = w->feasible[key];
    bool neighbour = false;
    for (unsigned q = 0; !want && q < w->cr->n; q++)
      neighbour |= key >= w->stride[q] && w->feasible[key - w->stride[q]];
    if (!want && !neighbour)
      continue;
    for (unsigned reverse = 0; reverse < 2; reverse++) {
      gs_ci_request_t req[GS_MAX_REQUESTS];
      unsigned starts[GS_MAX_REQUESTS];
      size_t n = ci_multiset_reqs(w, key, reverse, req);
      gs_error_t err;
      gs_error_clear(&err);
      int rc = gs_place_cis(w->prof, NULL, req, n, starts, &err);
      ci_occ_t none = {0};
      if (want && (rc != GS_OK || !ci_accepts(w->cr, none, req, n, starts)))
        disagree("%s %s: CIs %s gave %s '%s'", w->gpu, w->prof->name,
                 fmt_ci_reqs(req, n), gs_err_name(rc), err.msg);
      if (!want && !failed_as_nofit(rc, &err))
        disagree("%s %s: infeasible CIs %s gave %s", w->gpu, w->prof->name,
                 fmt_ci_reqs(req, n), gs_err_name(rc));
      checked++;
    }
  }
  return checked;
}

/* Illegal CI starts (a 4c at 2, say) fail with GS_EINVAL. */
static void ci_check_illegal(ci_walk_t *w) {
  gs_gi_t fresh = w->gi;
  fresh.n_ci = 0;
  for (unsigned q = 0; q < w->cr->n; q++) {
    for (unsigned s = 0; s < w->cr->g; s++) {
      if (w->cr->p[q].starts & B(s))
        continue;
      gs_ci_request_t req = {w->cr->p[q].id, (int)s};
      unsigned start;
      gs_error_t err;
      gs_error_clear(&err);
      int rc = gs_place_cis(w->prof, &fresh, &req, 1, &start, &err);
      if (rc != GS_EINVAL || !err.msg[0])
        disagree("%s %s: CI %u@%u gave %s, want EINVAL", w->gpu, w->prof->name,
                 req.profile_id, s, gs_err_name(rc));
    }
  }
}

static const ci_rules_t *ci_rules_for(unsigned g) {
  for (size_t k = 0; k < sizeof ci_rules / sizeof ci_rules[0]; k++)
    if (ci_rules[k].g == g)
      return &ci_rules[k];
  fail_msg("no CI rules for a %ug GI", g);
  return NULL;
}

/* Rule: inside a GI, CIs fit iff their starts are legal on the GI's compute
 * axis, they do not overlap and each CI profile is under its max count.
 * Checked for every CI layout plus one CI, and for every CI multiset. */
static void test_compute_instances(void **state) {
  (void)state;
  disagreements = 0;
  static ci_walk_t w;
  for (unsigned i = 0; i < gs_catalog_model_count(); i++) {
    gs_catalog_t cat;
    const gi_rules_t *r = load_gpu(i, &cat)->rules;
    unsigned n_layouts = 0, n_multisets = 0;
    for (unsigned p = 0; p < r->n; p++) {
      memset(&w, 0, sizeof w);
      w.gpu = cat.model;
      w.prof = gs_catalog_gi(&cat, r->p[p].id);
      w.cr = ci_rules_for(r->p[p].c);
      w.gi = (gs_gi_t){.id = 1, .profile_id = r->p[p].id, .start = 0};
      assert_non_null(w.prof);
      w.space = 1;
      for (unsigned q = 0; q < w.cr->n; q++) {
        w.stride[q] = w.space;
        w.space *= w.cr->p[q].max + 2;
      }
      assert_true(w.space <= sizeof w.feasible);
      ci_occ_t none = {0};
      ci_enum(&w, &none, 0);
      ci_check_illegal(&w);
      n_multisets += ci_check_multisets(&w);
      n_layouts += w.n_layouts;
    }
    print_message("%-10s %u CI layouts, %u CI multiset requests\n", cat.model,
                  n_layouts, n_multisets);
  }
  assert_int_equal(disagreements, 0);
}

/* Failures explain themselves (ARCHITECTURE.md, placement): an explicit
 * start that overlaps an existing GPU instance names that instance, its
 * profile and its place. */
static void test_an_overlap_names_the_instance_in_the_way(void **state) {
  (void)state;
  gs_catalog_t cat;
  gs_error_t err;
  assert_int_equal(gs_catalog_for_model(&cat, "a100-40gb", &err), GS_OK);
  gs_layout_t layout;
  empty_layout(&layout);
  unsigned id;
  assert_int_equal(gs_layout_add_gi(&layout, &cat, 19, 6, &id, &err), GS_OK);
  gs_gi_request_t req = {9, 4}; /* 3g at 4 covers slices 4-7 */
  unsigned start;
  gs_error_clear(&err);
  assert_int_equal(gs_place_gis(&cat, &layout, &req, 1, &start, &err),
                   GS_ENOFIT);
  char want[96];
  snprintf(want, sizeof want, "overlaps GPU instance %u (1g.5gb at 6:1)", id);
  if (!strstr(err.msg, want))
    fail_msg("\"%s\" does not say \"%s\"", err.msg, want);
}

/* The reference's CI table: a 7g holds at most 7 1c compute instances; an
 * eighth is refused as over the max count (GS_ELIMIT, naming the max), not
 * as a placement that does not fit. */
static void test_one_ci_over_the_max_count_is_a_limit(void **state) {
  (void)state;
  gs_catalog_t cat;
  gs_error_t err;
  assert_int_equal(gs_catalog_for_model(&cat, "a100-40gb", &err), GS_OK);
  gs_layout_t layout;
  empty_layout(&layout);
  unsigned gi;
  assert_int_equal(gs_layout_add_gi(&layout, &cat, 0, 0, &gi, &err), GS_OK);
  for (unsigned s = 0; s < 7; s++)
    assert_int_equal(gs_layout_add_ci(&layout, &cat, gi, 0, s, NULL, &err),
                     GS_OK);
  gs_error_clear(&err);
  assert_int_equal(gs_layout_add_ci(&layout, &cat, gi, 0, 0, NULL, &err),
                   GS_ELIMIT);
  assert_non_null(strstr(err.msg, "at most 7"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_multisets),
      cmocka_unit_test(test_capacity),
      cmocka_unit_test(test_explicit_starts),
      cmocka_unit_test(test_an_overlap_names_the_instance_in_the_way),
      cmocka_unit_test(test_one_ci_over_the_max_count_is_a_limit),
      cmocka_unit_test(test_preference),
      cmocka_unit_test(test_known_cases),
      cmocka_unit_test(test_compute_instances),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
