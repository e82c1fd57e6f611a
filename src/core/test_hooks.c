/* The one instance of the test hooks (test_hooks.h): zero unless a test or
 * the CLI, from GPUSLICE_TEST_*, sets them. */
#include "core/test_hooks.h"

gs__test_hooks_t gs__test_hooks;
