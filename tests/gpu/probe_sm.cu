/* probe_sm: how many SMs this process may use. Launches many blocks that
 * each spin ~2 ms and record the SM they ran on (%smid), then prints one
 * JSON line:
 *   {"device_sms": <cudaDevAttrMultiProcessorCount>, "distinct_smids": N,
 *    "max_smid": M, ...}
 * Under an MPS active-thread percentage both counts must stay within the
 * cap; with no cap distinct_smids reaches device_sms.
 * usage: probe_sm [BLOCKS [SPIN_US]]   (default 4096 blocks x 128 threads,
 *        2000 us per block)
 * exit: 0 measured; 1 a CUDA call failed (the JSON says which). */
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 128
#define MAX_SMID 1024

static __device__ unsigned smid(void) {
  unsigned id;
  asm volatile("mov.u32 %0, %%smid;" : "=r"(id));
  return id;
}

static __device__ unsigned long long global_ns(void) {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

/* Each block records its SM and keeps it busy for spin_ns, so that the
 * scheduler must spread the grid over every SM it may use. */
__global__ void spin_and_record(unsigned *sm_of_block,
                                unsigned long long spin_ns) {
  unsigned long long start = global_ns();
  if (threadIdx.x == 0)
    sm_of_block[blockIdx.x] = smid();
  while (global_ns() - start < spin_ns) {
  }
}

static int fail(const char *what, cudaError_t e) {
  printf("{\"error\": \"%s\", \"call\": \"%s\", \"message\": \"%s\"}\n",
         cudaGetErrorName(e), what, cudaGetErrorString(e));
  return 1;
}

int main(int argc, char **argv) {
  unsigned blocks = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 4096;
  unsigned spin_us = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 2000;
  if (blocks == 0 || blocks > (1u << 20) || spin_us > 1000000) {
    fprintf(stderr, "usage: probe_sm [BLOCKS [SPIN_US]]\n");
    return 1;
  }
  int sms = 0;
  cudaError_t e =
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  if (e != cudaSuccess)
    return fail("cudaDeviceGetAttribute", e);
  char name[256] = "";
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess)
    snprintf(name, sizeof name, "%s", prop.name);

  unsigned *d_sm = NULL;
  if ((e = cudaMalloc(&d_sm, blocks * sizeof *d_sm)) != cudaSuccess)
    return fail("cudaMalloc", e);
  if ((e = cudaMemset(d_sm, 0xff, blocks * sizeof *d_sm)) != cudaSuccess)
    return fail("cudaMemset", e);
  cudaEvent_t t0, t1;
  if ((e = cudaEventCreate(&t0)) != cudaSuccess ||
      (e = cudaEventCreate(&t1)) != cudaSuccess ||
      (e = cudaEventRecord(t0)) != cudaSuccess)
    return fail("cudaEventCreate/Record", e);
  spin_and_record<<<blocks, THREADS>>>(d_sm, spin_us * 1000ull);
  if ((e = cudaGetLastError()) != cudaSuccess)
    return fail("launch", e);
  if ((e = cudaEventRecord(t1)) != cudaSuccess)
    return fail("cudaEventRecord", e);
  if ((e = cudaDeviceSynchronize()) != cudaSuccess)
    return fail("cudaDeviceSynchronize", e);
  float ms = 0;
  if ((e = cudaEventElapsedTime(&ms, t0, t1)) != cudaSuccess)
    return fail("cudaEventElapsedTime", e);

  unsigned *sm = (unsigned *)malloc(blocks * sizeof *sm);
  if (!sm)
    return 1;
  if ((e = cudaMemcpy(sm, d_sm, blocks * sizeof *sm, cudaMemcpyDeviceToHost)) !=
      cudaSuccess)
    return fail("cudaMemcpy", e);
  static unsigned char seen[MAX_SMID];
  unsigned distinct = 0, max_id = 0, unrecorded = 0;
  for (unsigned b = 0; b < blocks; b++) {
    if (sm[b] >= MAX_SMID) {
      unrecorded++;
      continue;
    }
    distinct += !seen[sm[b]];
    seen[sm[b]] = 1;
    if (sm[b] > max_id)
      max_id = sm[b];
  }
  /* The SMs themselves, so that callers can tell whether neighbours
   * shared SMs (an MPS percentage caps the count; it does not partition). */
  char list[MAX_SMID * 5] = "";
  size_t len = 0;
  for (unsigned id = 0; id < MAX_SMID && len + 8 < sizeof list; id++)
    if (seen[id])
      len += (size_t)snprintf(list + len, sizeof list - len, "%s%u",
                              len ? "," : "", id);
  const char *pct = getenv("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE");
  printf("{\"device\": \"%s\", \"device_sms\": %d, \"distinct_smids\": %u, "
         "\"max_smid\": %u, \"blocks\": %u, \"threads\": %d, \"spin_us\": %u, "
         "\"unrecorded_blocks\": %u, \"elapsed_ms\": %.3f, "
         "\"mps_active_thread_percentage\": \"%s\", "
         "\"cuda_visible_devices\": \"%s\", \"smids\": [%s]}\n",
         name, sms, distinct, max_id, blocks, THREADS, spin_us, unrecorded, ms,
         pct ? pct : "",
         getenv("CUDA_VISIBLE_DEVICES") ? getenv("CUDA_VISIBLE_DEVICES") : "",
         list);
  free(sm);
  cudaFree(d_sm);
  return unrecorded ? 1 : 0;
}
