/* The sequence batcher's slot table, without a loop: a START makes a
 * sequence in a free slot (or waiting for one), its requests run one at a
 * time in arrival order, END frees the slot once its request completes and
 * hands it to the oldest waiting sequence, a request without START for a
 * sequence that is not live is refused, and the idle timeout frees a
 * sequence nothing runs or waits in. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "worker/sequence.h"

#define MS 1000000ull

static gs__seq_id_t uid(uint64_t u) {
  gs__seq_id_t id = {.u = u};
  return id;
}

static gs__seq_t *add(gs__seq_table_t *t, uint64_t id, gs__seq_item_t *item,
                      bool start, bool end, uint64_t now) {
  gs__seq_t *seq = NULL;
  gs_error_t err = {0};
  item->start = start;
  item->end = end;
  assert_int_equal(gs__seq_table_add(t, &(gs__seq_id_t){.u = id}, item, now,
                                     &seq, "m", &err),
                   GS_OK);
  return seq;
}

static void test_requests_run_in_order_one_at_a_time(void **state) {
  (void)state;
  gs__seq_table_t t;
  gs__seq_item_t a, b, c;
  gs__seq_t *woken;
  assert_int_equal(gs__seq_table_init(&t, 2, 1000, NULL), GS_OK);
  gs__seq_t *s = add(&t, 7, &a, true, false, 0);
  assert_ptr_equal(add(&t, 7, &b, false, false, 0), s);
  assert_ptr_equal(add(&t, 7, &c, false, true, 0), s);
  assert_int_equal(s->slot, 0);
  assert_ptr_equal(gs__seq_table_next(&t, s), &a);
  assert_null(gs__seq_table_next(&t, s)); /* a runs: b waits */
  assert_false(gs__seq_table_done(&t, s, 1, &woken));
  assert_ptr_equal(gs__seq_table_next(&t, s), &b);
  assert_false(gs__seq_table_done(&t, s, 2, &woken));
  assert_ptr_equal(gs__seq_table_next(&t, s), &c);
  assert_true(gs__seq_table_done(&t, s, 3, &woken)); /* END: freed */
  assert_null(gs__seq_table_find(&t, &(gs__seq_id_t){.u = 7}));
  gs__seq_table_release(&t);
}

static void test_no_start_is_refused(void **state) {
  (void)state;
  gs__seq_table_t t;
  gs__seq_item_t a, b;
  gs__seq_t *seq, *woken;
  gs_error_t err = {0};
  assert_int_equal(gs__seq_table_init(&t, 1, 1000, NULL), GS_OK);
  gs__seq_id_t id = uid(5);
  a.start = false;
  assert_int_equal(gs__seq_table_add(&t, &id, &a, 0, &seq, "acc", &err),
                   GS_ENOTFOUND);
  assert_non_null(strstr(err.msg, "START"));
  assert_non_null(strstr(err.msg, "'acc'"));
  /* After END, the id needs a new START. */
  seq = add(&t, 5, &a, true, true, 0);
  assert_ptr_equal(gs__seq_table_next(&t, seq), &a);
  b.start = false;
  assert_int_equal(gs__seq_table_add(&t, &id, &b, 0, &seq, "acc", &err),
                   GS_ENOTFOUND);
  gs__seq_table_done(&t, gs__seq_table_find(&t, &id), 1, &woken);
  gs__seq_table_release(&t);
}

static void test_end_hands_the_slot_to_the_oldest_waiting(void **state) {
  (void)state;
  gs__seq_table_t t;
  gs__seq_item_t a, b, c;
  gs__seq_t *woken;
  assert_int_equal(gs__seq_table_init(&t, 1, 1000, NULL), GS_OK);
  gs__seq_t *s1 = add(&t, 1, &a, true, true, 0);
  gs__seq_t *s2 = add(&t, 2, &b, true, false, 1);
  gs__seq_t *s3 = add(&t, 3, &c, true, false, 2);
  assert_int_equal(s2->slot, -1);
  assert_null(gs__seq_table_next(&t, s2)); /* no slot yet */
  assert_ptr_equal(gs__seq_table_next(&t, s1), &a);
  assert_true(gs__seq_table_done(&t, s1, 3, &woken));
  assert_ptr_equal(woken, s2); /* the oldest waiting, not s3 */
  assert_int_equal(s2->slot, 0);
  assert_int_equal(s3->slot, -1);
  assert_ptr_equal(gs__seq_table_next(&t, s2), &b);
  gs__seq_table_release(&t);
}

static void test_idle_timeout_frees_the_slot(void **state) {
  (void)state;
  gs__seq_table_t t;
  gs__seq_item_t a, b;
  gs__seq_t *woken[4];
  size_t n;
  gs_error_t err = {0};
  assert_int_equal(gs__seq_table_init(&t, 1, 100000 /* 100 ms */, NULL), GS_OK);
  gs__seq_t *s = add(&t, 9, &a, true, false, 0);
  gs__seq_t *w = add(&t, 10, &b, true, false, 0);
  assert_ptr_equal(gs__seq_table_next(&t, s), &a);
  /* Running: never expires. */
  assert_int_equal(gs__seq_table_expire(&t, 500 * MS, woken, 4, &n), 0);
  gs__seq_table_done(&t, s, 500 * MS, woken);
  assert_int_equal(gs__seq_table_expire(&t, 599 * MS, woken, 4, &n), 0);
  assert_int_equal(gs__seq_table_expire(&t, 600 * MS, woken, 4, &n), 1);
  assert_int_equal(n, 1);
  assert_ptr_equal(woken[0], w); /* the waiting sequence got the slot */
  gs__seq_id_t id = uid(9);
  gs__seq_t *seq;
  a.start = false;
  assert_int_equal(gs__seq_table_add(&t, &id, &a, 601 * MS, &seq, "m", &err),
                   GS_ENOTFOUND);
  gs__seq_table_release(&t);
}

static void test_string_ids_are_distinct_from_numbers(void **state) {
  (void)state;
  gs__seq_table_t t;
  gs__seq_item_t a, b;
  gs__seq_t *seq;
  gs_error_t err = {0};
  assert_int_equal(gs__seq_table_init(&t, 4, 0, NULL), GS_OK);
  gs__seq_id_t s = {.is_string = true};
  strcpy(s.s, "abc");
  a.start = b.start = true;
  a.end = b.end = false;
  assert_int_equal(gs__seq_table_add(&t, &s, &a, 0, &seq, "m", &err), GS_OK);
  gs__seq_id_t u = uid(0);
  assert_int_equal(gs__seq_table_add(&t, &u, &b, 0, &seq, "m", &err), GS_OK);
  assert_ptr_not_equal(gs__seq_table_find(&t, &s), gs__seq_table_find(&t, &u));
  gs__seq_table_release(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_requests_run_in_order_one_at_a_time),
      cmocka_unit_test(test_no_start_is_refused),
      cmocka_unit_test(test_end_hands_the_slot_to_the_oldest_waiting),
      cmocka_unit_test(test_idle_timeout_frees_the_slot),
      cmocka_unit_test(test_string_ids_are_distinct_from_numbers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
