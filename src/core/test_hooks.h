/* Test hooks: process-wide settings that exist only so that tests reach
 * moments normal use never stops at. Kept out of the public structs
 * (include/gpuslice/) on purpose; the CLI sets them from GPUSLICE_TEST_*
 * before it opens a backend, unit tests set them directly. All zero in
 * normal use. */
#ifndef GS_CORE_TEST_HOOKS_H
#define GS_CORE_TEST_HOOKS_H

#include <stdbool.h>

typedef struct gs__test_hooks_s {
  /* Pause this long between the steps of a change (each op of the software
   * backends) and of a state write, so that kill tests land inside. */
  unsigned step_delay_us;
  /* Host backend: no RLIMIT_AS fallback when there is no cgroup
   * (sanitizer-built programs cannot start under one). */
  bool no_address_limit;
  /* Worker: the inference run that removes this file fails as a faulted
   * device would (GS_EDRIVER), the others run (one-shot per file). */
  const char *device_fail_file;
  /* Worker: a warm model's planning after ready waits this long first. */
  unsigned late_plan_delay_ms;
  /* Worker: each step of that planning (one size on one session) holds
   * its session this much longer. */
  unsigned late_plan_step_ms;
  /* Worker: a reserved size counts one conv without a cached choice, as a
   * GPU session on a cold conv cache does (a CPU session counts none). */
  bool convs_uncached;
  /* Worker: SIGUSR2 closes its pipes and sockets (as a dying process's
   * are closed before it is reaped) and stops it (SIGSTOP) unreaped. */
  bool sigusr2_closes;
} gs__test_hooks_t;

extern gs__test_hooks_t gs__test_hooks;

#endif
