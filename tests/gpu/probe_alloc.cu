/* probe_alloc: takes device memory with plain cudaMalloc in 256 MiB steps
 * (each step written once, so that the pages are real) and prints one JSON
 * line: {"requested_mib", "allocated_mib", "error", ...}; with "hold S" it
 * then keeps the memory for S seconds before exiting.
 * usage: probe_alloc MIB [hold SECONDS]
 * exit: 0 all allocated; 3 out of memory (cudaErrorMemoryAllocation) before
 *       MIB; 1 any other error or bad usage. */
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STEP_MIB 256ull
#define MAX_CHUNKS 4096 /* 1 TiB in 256 MiB steps */

static void *chunks[MAX_CHUNKS];

int main(int argc, char **argv) {
  unsigned long long want = argc > 1 ? strtoull(argv[1], NULL, 10) : 0;
  unsigned hold = 0;
  if (argc == 4 && strcmp(argv[2], "hold") == 0)
    hold = (unsigned)strtoul(argv[3], NULL, 10);
  if (want == 0 || want > MAX_CHUNKS * STEP_MIB || (argc != 2 && argc != 4) ||
      hold > 3600) {
    fprintf(stderr, "usage: probe_alloc MIB [hold SECONDS]\n");
    return 1;
  }
  size_t free_b = 0, total_b = 0;
  cudaError_t e = cudaFree(0); /* the context first: its failure is not OOM */
  if (e == cudaSuccess)
    e = cudaMemGetInfo(&free_b, &total_b);
  unsigned long long got = 0;
  unsigned n = 0;
  const char *call = "cudaFree(0)";
  while (e == cudaSuccess && got < want) {
    unsigned long long step = want - got < STEP_MIB ? want - got : STEP_MIB;
    call = "cudaMalloc";
    e = cudaMalloc(&chunks[n], step << 20);
    if (e != cudaSuccess)
      break;
    call = "cudaMemset";
    e = cudaMemset(chunks[n++], 0x5a, step << 20);
    if (e == cudaSuccess)
      e = cudaDeviceSynchronize();
    if (e == cudaSuccess)
      got += step;
  }
  int oom = e == cudaErrorMemoryAllocation;
  printf("{\"requested_mib\": %llu, \"allocated_mib\": %llu, \"step_mib\": "
         "%llu, \"error\": %s%s%s, \"call\": \"%s\", \"free_mib_at_start\": "
         "%llu, \"total_mib\": %llu, \"hold_s\": %u, \"pid\": %d}\n",
         want, got, STEP_MIB, e == cudaSuccess ? "" : "\"",
         e == cudaSuccess ? "null" : cudaGetErrorName(e),
         e == cudaSuccess ? "" : "\"", e == cudaSuccess ? "" : call,
         (unsigned long long)(free_b >> 20),
         (unsigned long long)(total_b >> 20), e == cudaSuccess ? hold : 0,
         (int)getpid());
  fflush(stdout);
  if (e == cudaSuccess && hold)
    sleep(hold);
  for (unsigned i = 0; i < n; i++)
    cudaFree(chunks[i]);
  return e == cudaSuccess ? 0 : oom ? 3 : 1;
}
