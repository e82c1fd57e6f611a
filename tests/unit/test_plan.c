/* Planning and applying: incremental (keep what matches), busy instances
 * never destroyed, mig-parted's packing of compute instances, and
 * transactional execution (a failure at any step leaves the layout as it
 * was). The backend here is an in-memory one whose Nth write fails. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "gpuslice/apply.h"
#include "gpuslice/placement.h"

enum {
  P1G = 19,
  P1G_ME = 20,
  P1G_2X = 15,
  P2G = 14,
  P3G = 9,
  P4G = 5,
  P7G = 0
};

static gs_catalog_t cat;

static int setup(void **state) {
  (void)state;
  gs_error_t err;
  return gs_catalog_for_model(&cat, "a100-40gb", &err);
}

static unsigned full_ci(unsigned gi_profile) {
  return gs_catalog_ci_full(gs_catalog_gi(&cat, gi_profile))->id;
}

static void add(gs_layout_t *l, unsigned profile, unsigned start) {
  unsigned id;
  gs_error_t err;
  assert_int_equal(gs_layout_add_gi(l, &cat, profile, start, &id, &err), 0);
  assert_int_equal(
      gs_layout_add_ci(l, &cat, id, full_ci(profile), 0, NULL, &err), 0);
}

static gs_want_t want_of(unsigned n, const unsigned *profile,
                         const unsigned *count) {
  gs_want_t w = {.mig_enabled = true, .n = n};
  for (unsigned i = 0; i < n; i++)
    w.item[i] = (gs_want_item_t){profile[i], full_ci(profile[i]), count[i]};
  return w;
}

/* Rule: IDs are unique and the lowest free, wherever the new instance
 * lands (review found duplicates when it landed below an existing one). */
static void test_ids_when_inserting_below(void **state) {
  (void)state;
  gs_layout_t l;
  gs_layout_init(&l);
  add(&l, P1G, 6);
  add(&l, P1G, 5);
  add(&l, P4G, 0);
  assert_int_equal(l.n_gi, 3);
  unsigned seen = 0;
  for (unsigned i = 0; i < l.n_gi; i++)
    seen |= 1u << l.gi[i].id;
  assert_int_equal(seen, (1u << 1) | (1u << 2) | (1u << 3));
  gs_error_t err;
  assert_int_equal(gs_layout_validate(&cat, &l, &err), GS_OK);
}

/* Rule: instances that already match the config keep their IDs; only the
 * difference is created. */
static void test_incremental_keeps_matching(void **state) {
  (void)state;
  gs_layout_t l;
  gs_layout_init(&l);
  add(&l, P1G, 0);
  add(&l, P1G, 1);
  gs_want_t w = want_of(1, (unsigned[]){P1G}, (unsigned[]){3});
  gs_plan_t plan;
  gs_error_t err;
  assert_int_equal(gs_plan_layout(&cat, &l, &w, NULL, &plan, &err), GS_OK);
  assert_int_equal(plan.n_keep, 2);
  assert_int_equal(plan.n_destroy, 0);
  assert_int_equal(plan.n_create, 1);
  gs_layout_t after;
  assert_int_equal(gs_plan_result(&cat, &l, &plan, &after, &err), GS_OK);
  assert_int_equal(after.n_gi, 3);
  assert_int_equal(gs_layout_matches(&cat, &after, &w, &err), 1);
}

/* Rule: when the kept instances block what is wanted, the fewest are
 * destroyed: 7 x 1g -> 4g + 3 x 1g keeps three 1g (the 4g needs 0-3). */
static void test_incremental_destroys_fewest(void **state) {
  (void)state;
  gs_layout_t l;
  gs_layout_init(&l);
  for (unsigned s = 0; s < 7; s++)
    add(&l, P1G, s);
  gs_want_t w = want_of(2, (unsigned[]){P4G, P1G}, (unsigned[]){1, 3});
  gs_plan_t plan;
  gs_error_t err;
  assert_int_equal(gs_plan_layout(&cat, &l, &w, NULL, &plan, &err), GS_OK);
  assert_int_equal(plan.n_keep, 3);
  assert_int_equal(plan.n_destroy, 4);
  assert_int_equal(plan.n_create, 1);
  gs_layout_t after;
  assert_int_equal(gs_plan_result(&cat, &l, &plan, &after, &err), GS_OK);
  assert_int_equal(gs_layout_validate(&cat, &after, &err), GS_OK);
  for (unsigned i = 0; i < plan.n_keep; i++)
    assert_true(gs_layout_find_gi_const(&l, plan.keep_gi[i])->start >= 4);
}

/* Rule: a busy instance is never destroyed; the plan keeps it if any plan
 * can, and otherwise fails with GS_EBUSY naming it. */
static void test_busy_instances(void **state) {
  (void)state;
  gs_layout_t l;
  gs_layout_init(&l);
  add(&l, P1G, 0);
  add(&l, P1G, 6);
  bool busy[2] = {false, true};
  /* Two 1g wanted minus one: either could go; the idle one must. */
  gs_want_t w = want_of(1, (unsigned[]){P1G}, (unsigned[]){1});
  gs_plan_t plan;
  gs_error_t err;
  assert_int_equal(gs_plan_layout(&cat, &l, &w, busy, &plan, &err), GS_OK);
  assert_int_equal(plan.n_destroy, 1);
  assert_int_equal(plan.destroy_gi[0], l.gi[0].id);
  /* A 7g needs the whole device: the busy 1g would have to go. */
  w = want_of(1, (unsigned[]){P7G}, (unsigned[]){1});
  assert_int_equal(gs_plan_layout(&cat, &l, &w, busy, &plan, &err), GS_EBUSY);
  assert_non_null(strstr(err.msg, "in use"));
}

/* Rule (mig-parted): counts are MIG devices; CIs of one kind fill a GI
 * before another GI is made. "1c.3g.20gb": 4 -> two 3g GIs, 3 + 1 CIs. */
static void test_ci_packing(void **state) {
  (void)state;
  gs_want_t w = {.mig_enabled = true, .n = 1};
  w.item[0] = (gs_want_item_t){P3G, GS_CI_1C, 4};
  gs_layout_t l;
  gs_layout_init(&l);
  gs_plan_t plan;
  gs_error_t err;
  assert_int_equal(gs_plan_layout(&cat, &l, &w, NULL, &plan, &err), GS_OK);
  assert_int_equal(plan.n_create, 2);
  unsigned cis = plan.create[0].n_ci + plan.create[1].n_ci;
  assert_int_equal(cis, 4);
  assert_true(plan.create[0].n_ci == 3 || plan.create[1].n_ci == 3);
  /* Seven need three 3g GIs; an A100 holds two. */
  w.item[0].count = 7;
  assert_int_equal(gs_plan_layout(&cat, &l, &w, NULL, &plan, &err), GS_ELIMIT);
}

/* Rule: disabling partitioning destroys every instance (none busy). */
static void test_disable(void **state) {
  (void)state;
  gs_layout_t l;
  gs_layout_init(&l);
  add(&l, P3G, 0);
  gs_want_t w = {.mig_enabled = false};
  gs_plan_t plan;
  gs_error_t err;
  assert_int_equal(gs_plan_layout(&cat, &l, &w, NULL, &plan, &err), GS_OK);
  assert_int_equal(plan.n_destroy, 1);
  assert_true(plan.set_mig_mode);
  assert_false(plan.mig_enabled);
}

/* Rule: a busy instance is never destroyed, and disabling partitioning
 * would destroy them all: it fails with GS_EBUSY naming the instance. */
static void test_disable_with_a_busy_instance(void **state) {
  (void)state;
  gs_layout_t l;
  gs_layout_init(&l);
  add(&l, P3G, 0);
  add(&l, P1G, 6);
  bool busy[2] = {false, true};
  gs_want_t w = {.mig_enabled = false};
  gs_plan_t plan;
  gs_error_t err;
  assert_int_equal(gs_plan_layout(&cat, &l, &w, busy, &plan, &err), GS_EBUSY);
  assert_non_null(strstr(err.msg, "in use"));
  char needle[32];
  snprintf(needle, sizeof needle, "GPU instance %u ", l.gi[1].id);
  assert_non_null(strstr(err.msg, needle));
}

/* Rule: impossible configs fail with the reason, before anything is done. */
static void test_impossible(void **state) {
  (void)state;
  gs_layout_t l;
  gs_layout_init(&l);
  gs_want_t w = want_of(1, (unsigned[]){P3G}, (unsigned[]){3});
  gs_plan_t plan;
  gs_error_t err;
  assert_int_equal(gs_plan_layout(&cat, &l, &w, NULL, &plan, &err), GS_ELIMIT);
  assert_non_null(strstr(err.msg, "3g.20gb"));
  w = want_of(2, (unsigned[]){P4G, P7G}, (unsigned[]){1, 1});
  assert_int_not_equal(gs_plan_layout(&cat, &l, &w, NULL, &plan, &err), GS_OK);
}

/* Rule: assert compares MIG-device counts and mode, as mig-parted does. */
static void test_matches(void **state) {
  (void)state;
  gs_layout_t l;
  gs_layout_init(&l);
  add(&l, P2G, 0);
  add(&l, P1G, 6);
  gs_error_t err;
  gs_want_t w = want_of(2, (unsigned[]){P1G, P2G}, (unsigned[]){1, 1});
  assert_int_equal(gs_layout_matches(&cat, &l, &w, &err), 1);
  w.item[0].count = 2;
  assert_int_equal(gs_layout_matches(&cat, &l, &w, &err), 0);
  assert_non_null(strstr(err.msg, "1g.5gb: wanted 2, found 1"));
}

/* ---- an in-memory backend whose Nth write fails ------------------------- */

typedef struct mem_backend_s {
  gs_layout_t layout, saved;
  int writes_left; /* fail when it reaches 0; -1: never */
  unsigned writes;
  bool in_change;
  unsigned fresh_id; /* 0: GIs get the lowest free ID; else this, then up */
  unsigned busy_gi;  /* a GI with a process in it (0: none) */
  unsigned hidden_busy_gi; /* refused as in use, by a process not listed */
} mem_backend_t;

static mem_backend_t *mem(gs_backend_t *be) {
  return be->impl;
}

static int mem_write(gs_backend_t *be, gs_error_t *err) {
  mem_backend_t *m = mem(be);
  m->writes++;
  if (m->writes_left == 0) {
    m->writes_left = -1; /* one fault; the undo that follows works */
    return gs_error_set(err, GS_EDRIVER, "injected failure");
  }
  if (m->writes_left > 0)
    m->writes_left--;
  return GS_OK;
}

static int mem_count(gs_backend_t *be, unsigned *n, gs_error_t *err) {
  (void)be, (void)err;
  *n = 1;
  return GS_OK;
}
static int mem_get(gs_backend_t *be, unsigned i, gs_device_t *d,
                   gs_error_t *err) {
  (void)i, (void)err;
  memset(d, 0, sizeof *d);
  d->catalog = cat;
  d->layout = mem(be)->layout;
  return GS_OK;
}
static int mem_procs(gs_backend_t *be, unsigned d, unsigned gi,
                     gs_process_t *out, size_t max, size_t *n, gs_error_t *err);
/* Locks, then reads each device and who runs in its GIs (mem_procs). */
static int mem_begin(gs_backend_t *be, gs_change_dev_t *devs, unsigned n,
                     gs_error_t *err) {
  mem(be)->in_change = true;
  for (unsigned i = 0; i < n; i++) {
    mem_get(be, devs[i].index, &devs[i].dev, err);
    for (unsigned g = 0; devs[i].with_users && g < devs[i].dev.layout.n_gi;
         g++) {
      gs_busy_t *u = &devs[i].users[g];
      *u = (gs_busy_t){.dev = devs[i].index,
                       .gi_id = devs[i].dev.layout.gi[g].id};
      mem_procs(be, u->dev, u->gi_id, u->procs, GS_BUSY_MAX_PROCS, &u->n_procs,
                err);
      u->in_use = u->n_procs > 0;
    }
  }
  return GS_OK;
}
static int mem_commit(gs_backend_t *be, gs_error_t *err) {
  (void)err;
  mem(be)->in_change = false;
  return GS_OK;
}
static void mem_abort(gs_backend_t *be) {
  mem(be)->in_change = false;
}
static int mem_mode(gs_backend_t *be, unsigned d, bool on, gs_error_t *err) {
  (void)d;
  int rc = mem_write(be, err);
  if (rc == GS_OK)
    mem(be)->layout.mig_enabled = on;
  return rc;
}
static int mem_gi_create(gs_backend_t *be, unsigned d, unsigned p, unsigned s,
                         unsigned *id, gs_error_t *err) {
  (void)d;
  int rc = mem_write(be, err);
  if (rc == GS_OK)
    rc = gs_layout_add_gi(&mem(be)->layout, &cat, p, s, id, err);
  if (rc == GS_OK && mem(be)->fresh_id) { /* as NVML may: never reused */
    gs_layout_find_gi(&mem(be)->layout, *id)->id = mem(be)->fresh_id;
    *id = mem(be)->fresh_id++;
  }
  return rc;
}
static int mem_gi_destroy(gs_backend_t *be, unsigned d, unsigned id,
                          gs_error_t *err) {
  (void)d;
  /* As NVML: NVML_ERROR_IN_USE while it has processes or compute
   * instances (mig-profiles.md). */
  const gs_gi_t *gi = gs_layout_find_gi_const(&mem(be)->layout, id);
  if (id == mem(be)->busy_gi || id == mem(be)->hidden_busy_gi ||
      (gi && gi->n_ci > 0))
    return gs_error_set(err, GS_EBUSY, "GPU instance %u is in use", id);
  int rc = mem_write(be, err);
  return rc ? rc : gs_layout_remove_gi(&mem(be)->layout, id, err);
}
static int mem_ci_create(gs_backend_t *be, unsigned d, unsigned gi, unsigned p,
                         unsigned s, unsigned *id, gs_error_t *err) {
  (void)d;
  int rc = mem_write(be, err);
  return rc ? rc : gs_layout_add_ci(&mem(be)->layout, &cat, gi, p, s, id, err);
}
static int mem_ci_destroy(gs_backend_t *be, unsigned d, unsigned gi,
                          unsigned id, gs_error_t *err) {
  (void)d;
  int rc = mem_write(be, err);
  return rc ? rc : gs_layout_remove_ci(&mem(be)->layout, gi, id, err);
}
static int mem_procs(gs_backend_t *be, unsigned d, unsigned gi,
                     gs_process_t *out, size_t max, size_t *n,
                     gs_error_t *err) {
  (void)d, (void)err;
  *n = 0;
  if (gi == mem(be)->busy_gi && max > 0) {
    out[0] = (gs_process_t){.pid = 4242};
    snprintf(out[0].command, sizeof out[0].command, "sleep");
    *n = 1;
  }
  return GS_OK;
}

static const gs_backend_ops_t mem_ops = {.name = "memory",
                                         .device_count = mem_count,
                                         .device_get = mem_get,
                                         .begin = mem_begin,
                                         .commit = mem_commit,
                                         .abort = mem_abort,
                                         .set_mig_mode = mem_mode,
                                         .gi_create = mem_gi_create,
                                         .gi_destroy = mem_gi_destroy,
                                         .ci_create = mem_ci_create,
                                         .ci_destroy = mem_ci_destroy,
                                         .processes = mem_procs};

/* Structural equality: same GIs (profile, start) and CIs (profile, start),
 * in order; IDs may differ after a recreate, as on hardware. */
static bool same_shape(const gs_layout_t *a, const gs_layout_t *b) {
  if (a->n_gi != b->n_gi || a->mig_enabled != b->mig_enabled)
    return false;
  for (unsigned i = 0; i < a->n_gi; i++) {
    const gs_gi_t *x = &a->gi[i], *y = &b->gi[i];
    if (x->profile_id != y->profile_id || x->start != y->start ||
        x->n_ci != y->n_ci)
      return false;
    for (unsigned j = 0; j < x->n_ci; j++)
      if (x->ci[j].profile_id != y->ci[j].profile_id ||
          x->ci[j].start != y->ci[j].start)
        return false;
  }
  return true;
}

/* Rule: apply is transactional. Failing at every possible step of a change
 * that destroys and creates leaves the layout as it was before. */
static void test_apply_rolls_back_at_every_step(void **state) {
  (void)state;
  gs_layout_t start;
  gs_layout_init(&start);
  add(&start, P1G, 0);
  add(&start, P1G, 1);
  add(&start, P2G, 2);
  add(&start, P3G, 4);
  gs_want_t w = want_of(2, (unsigned[]){P4G, P3G}, (unsigned[]){1, 1});
  bool sel = true;
  static gs_apply_report_t rep;
  gs_error_t err;

  mem_backend_t m = {.layout = start, .writes_left = -1};
  gs_backend_t be = {.ops = &mem_ops, .impl = &m};
  assert_int_equal(gs_apply(&be, &w, &sel, 1, false, &rep, &err), GS_OK);
  unsigned total = m.writes;
  assert_true(total >= 4);
  assert_int_equal(gs_layout_matches(&cat, &m.layout, &w, &err), 1);
  /* The 3g at 4 matched and was kept with its ID. */
  assert_non_null(gs_layout_find_gi_const(&m.layout, start.gi[3].id));

  for (unsigned fail_at = 0; fail_at < total; fail_at++) {
    m = (mem_backend_t){.layout = start, .writes_left = (int)fail_at};
    assert_int_equal(gs_apply(&be, &w, &sel, 1, false, &rep, &err), GS_EDRIVER);
    if (!same_shape(&m.layout, &start))
      fail_msg("failing write %u: %s", fail_at, err.msg);
    assert_false(m.in_change);
    if (fail_at > 0)
      assert_non_null(strstr(err.msg, "undone"));
  }
}

/* Rule: the same holds on hardware, where a GPU instance created again by
 * the undo gets an ID it never had: the undo steps that follow (its compute
 * instances) go to the new ID. */
static void
test_rollback_when_a_recreated_instance_gets_a_new_id(void **state) {
  (void)state;
  gs_layout_t start;
  gs_layout_init(&start);
  add(&start, P1G, 0);
  add(&start, P1G, 1);
  add(&start, P2G, 2);
  add(&start, P3G, 4);
  gs_want_t w = want_of(2, (unsigned[]){P4G, P3G}, (unsigned[]){1, 1});
  bool sel = true;
  static gs_apply_report_t rep;
  gs_error_t err;
  mem_backend_t m = {.layout = start, .writes_left = -1, .fresh_id = 20};
  gs_backend_t be = {.ops = &mem_ops, .impl = &m};
  assert_int_equal(gs_apply(&be, &w, &sel, 1, false, &rep, &err), GS_OK);
  unsigned total = m.writes;
  for (unsigned fail_at = 1; fail_at < total; fail_at++) {
    m = (mem_backend_t){
        .layout = start, .writes_left = (int)fail_at, .fresh_id = 20};
    assert_int_equal(gs_apply(&be, &w, &sel, 1, false, &rep, &err), GS_EDRIVER);
    if (!same_shape(&m.layout, &start) || !strstr(err.msg, "undone"))
      fail_msg("failing write %u: %s", fail_at, err.msg);
  }
}

/* Rule: apply asks the backend which instances have processes and plans
 * around them: of two 1g instances, the one in use is the one kept when
 * one goes (the backend would refuse to destroy it). */
static void test_apply_keeps_the_instance_in_use(void **state) {
  (void)state;
  mem_backend_t m = {.writes_left = -1};
  gs_layout_init(&m.layout);
  add(&m.layout, P1G, 0);
  add(&m.layout, P1G, 6);
  unsigned busy_id = m.layout.gi[1].id;
  m.busy_gi = busy_id;
  gs_backend_t be = {.ops = &mem_ops, .impl = &m};
  gs_want_t w = want_of(1, (unsigned[]){P1G}, (unsigned[]){1});
  bool sel = true;
  static gs_apply_report_t rep;
  gs_error_t err;
  if (gs_apply(&be, &w, &sel, 1, false, &rep, &err) != GS_OK)
    fail_msg("apply failed: %s", err.msg);
  assert_int_equal(m.layout.n_gi, 1);
  assert_int_equal(m.layout.gi[0].id, busy_id);
}

/* Rule: the same for a change that only creates: a failure after a GPU
 * instance and its compute instance were made removes both (the compute
 * instance first: NVML will not destroy a GI that still has one). */
static void test_rollback_of_instances_created(void **state) {
  (void)state;
  gs_want_t w = want_of(2, (unsigned[]){P2G, P1G}, (unsigned[]){2, 2});
  bool sel = true;
  static gs_apply_report_t rep;
  gs_error_t err;
  mem_backend_t m = {.writes_left = -1};
  gs_layout_init(&m.layout);
  gs_backend_t be = {.ops = &mem_ops, .impl = &m};
  assert_int_equal(gs_apply(&be, &w, &sel, 1, false, &rep, &err), GS_OK);
  unsigned total = m.writes;
  assert_true(total >= 4); /* two GIs or more, each with a CI */
  for (unsigned fail_at = 1; fail_at < total; fail_at++) {
    m = (mem_backend_t){.writes_left = (int)fail_at};
    gs_layout_init(&m.layout);
    assert_int_equal(gs_apply(&be, &w, &sel, 1, false, &rep, &err), GS_EDRIVER);
    if (m.layout.n_gi != 0 || !strstr(err.msg, "undone"))
      fail_msg("failing write %u: %u GIs left: %s", fail_at, m.layout.n_gi,
               err.msg);
  }
}

/* Rule: --dry-run calls no write operation. */
static void test_dry_run_writes_nothing(void **state) {
  (void)state;
  mem_backend_t m = {.writes_left = -1};
  gs_layout_init(&m.layout);
  gs_backend_t be = {.ops = &mem_ops, .impl = &m};
  gs_want_t w = want_of(1, (unsigned[]){P1G}, (unsigned[]){7});
  bool sel = true;
  static gs_apply_report_t rep;
  gs_error_t err;
  assert_int_equal(gs_apply(&be, &w, &sel, 1, true, &rep, &err), GS_OK);
  assert_int_equal(m.writes, 0);
  assert_int_equal(rep.device[0].after.n_gi, 7);
}

/* A device with a 1g at 0, a 1g at 6 (in use by pid 4242, "sleep") and a
 * 2g at 2, in an in-memory backend. */
static gs_backend_t three_with_one_in_use(mem_backend_t *m) {
  *m = (mem_backend_t){.writes_left = -1};
  gs_layout_init(&m->layout);
  add(&m->layout, P1G, 0);
  add(&m->layout, P1G, 6);
  add(&m->layout, P2G, 2);
  m->busy_gi = m->layout.gi[1].id;
  return (gs_backend_t){.ops = &mem_ops, .impl = m};
}

static const gs_change_t destroy_all = {.kind = GS_CHANGE_DESTROY, .all = true};

/* Rule: destroy never removes a GPU instance with processes in it; the
 * report names that instance and its processes as data, the message names
 * them too, and nothing is written. Instances not asked for are kept. */
static void test_destroy_refuses_the_instance_in_use(void **state) {
  (void)state;
  mem_backend_t m;
  gs_backend_t be = three_with_one_in_use(&m);
  static gs_apply_report_t rep;
  gs_error_t err;
  assert_int_equal(gs_change_run(&be, &destroy_all, &rep, &err), GS_EBUSY);
  assert_true(rep.busy.in_use);
  assert_int_equal(rep.busy.gi_id, m.busy_gi);
  assert_int_equal(rep.busy.n_procs, 1);
  assert_int_equal(rep.busy.procs[0].pid, 4242);
  assert_non_null(strstr(err.msg, "pid 4242 (sleep)"));
  assert_int_equal(m.writes, 0);
  assert_int_equal(m.layout.n_gi, 3);
  assert_false(m.in_change);

  gs_change_t c = {
      .kind = GS_CHANGE_DESTROY, .n_ids = 1, .ids = {m.layout.gi[2].id}};
  assert_int_equal(gs_change_run(&be, &c, &rep, &err), GS_OK);
  assert_false(rep.busy.in_use);
  assert_int_equal(rep.device[0].plan.n_keep, 2);
  assert_int_equal(m.layout.n_gi, 2);
  assert_non_null(gs_layout_find_gi_const(&m.layout, m.busy_gi));
}

/* Rule: apply's busy rule is the same one: a layout that needs the busy
 * instance gone fails naming it, as data and in words. */
static void test_apply_reports_the_instance_in_use(void **state) {
  (void)state;
  mem_backend_t m;
  gs_backend_t be = three_with_one_in_use(&m);
  static gs_apply_report_t rep;
  gs_error_t err;
  gs_want_t w = want_of(1, (unsigned[]){P7G}, (unsigned[]){1});
  bool sel = true;
  assert_int_equal(gs_apply(&be, &w, &sel, 1, false, &rep, &err), GS_EBUSY);
  assert_true(rep.busy.in_use);
  assert_int_equal(rep.busy.dev, 0);
  assert_int_equal(rep.busy.gi_id, m.busy_gi);
  assert_int_equal(rep.busy.procs[0].pid, 4242);
  assert_non_null(strstr(err.msg, "used by pid 4242 (sleep)"));
  assert_int_equal(m.writes, 0);
}

/* Rule: a destroy the backend refuses as in use while executing (NVML's
 * IN_USE for a process it does not list) is undone like any failure and
 * still names the instance in the report. */
static void test_busy_while_executing_is_reported_and_undone(void **state) {
  (void)state;
  mem_backend_t m;
  gs_backend_t be = three_with_one_in_use(&m);
  m.busy_gi = 0;
  m.hidden_busy_gi = m.layout.gi[2].id;
  gs_layout_t start = m.layout;
  static gs_apply_report_t rep;
  gs_error_t err;
  assert_int_equal(gs_change_run(&be, &destroy_all, &rep, &err), GS_EBUSY);
  assert_true(rep.busy.in_use);
  assert_int_equal(rep.busy.gi_id, m.hidden_busy_gi);
  assert_int_equal(rep.busy.n_procs, 0);
  assert_true(same_shape(&m.layout, &start));
  assert_non_null(strstr(err.msg, "undone"));
}

/* Rule: create adds instances beside the existing ones, whatever is in
 * use, through the same transaction (a failed step leaves the layout). */
static void test_create_keeps_every_instance(void **state) {
  (void)state;
  mem_backend_t m;
  gs_backend_t be = three_with_one_in_use(&m);
  gs_layout_t start = m.layout;
  static gs_apply_report_t rep;
  gs_error_t err;
  char *profiles[] = {"1g.5gb", "19"};
  gs_change_t c = {
      .kind = GS_CHANGE_CREATE, .profiles = profiles, .n_profiles = 2};
  assert_int_equal(gs_change_run(&be, &c, &rep, &err), GS_OK);
  assert_int_equal(rep.device[0].plan.n_keep, 3);
  assert_int_equal(rep.device[0].plan.n_create, 2);
  assert_int_equal(m.layout.n_gi, 5);
  m.layout = start;
  m.writes_left = 2;
  assert_int_equal(gs_change_run(&be, &c, &rep, &err), GS_EDRIVER);
  assert_true(same_shape(&m.layout, &start));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ids_when_inserting_below),
      cmocka_unit_test(test_incremental_keeps_matching),
      cmocka_unit_test(test_incremental_destroys_fewest),
      cmocka_unit_test(test_busy_instances),
      cmocka_unit_test(test_ci_packing),
      cmocka_unit_test(test_disable),
      cmocka_unit_test(test_disable_with_a_busy_instance),
      cmocka_unit_test(test_impossible),
      cmocka_unit_test(test_matches),
      cmocka_unit_test(test_apply_rolls_back_at_every_step),
      cmocka_unit_test(test_rollback_when_a_recreated_instance_gets_a_new_id),
      cmocka_unit_test(test_rollback_of_instances_created),
      cmocka_unit_test(test_dry_run_writes_nothing),
      cmocka_unit_test(test_apply_keeps_the_instance_in_use),
      cmocka_unit_test(test_destroy_refuses_the_instance_in_use),
      cmocka_unit_test(test_apply_reports_the_instance_in_use),
      cmocka_unit_test(test_busy_while_executing_is_reported_and_undone),
      cmocka_unit_test(test_create_keeps_every_instance),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
