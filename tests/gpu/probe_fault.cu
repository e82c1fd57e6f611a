/* probe_fault: a well-behaved neighbour or a faulting one.
 *   probe_fault loop SECONDS   launches small kernels (synchronising after
 *       each batch) for SECONDS, printing progress to stderr once a
 *       second; the JSON result goes to stdout
 *   probe_fault fault          writes through an illegal device address and
 *       reports the error the runtime returns
 * exit: loop: 0 ran the whole time; 2 a CUDA error stopped it (a fault
 *       elsewhere reached this process).
 *       fault: 4 the fault was reported (the expected outcome); 5 the write
 *       went through unreported.
 *       both: 1 setup failed or bad usage. */
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define N 4096
#define BATCH 64

__global__ void small_work(float *x, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n)
    x[i] = x[i] * 0.999f + 1.0f;
}

/* The device's null page is never mapped; the write faults the context.
 * (An address like 1 TiB is not safe: the driver's own reservations can
 * cover it, and the write then lands silently, as seen on an H200.) */
__global__ void write_wild(int *p) {
  p[threadIdx.x * 1024] = 42;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int loop(double seconds) {
  float *x = NULL;
  cudaError_t e = cudaMalloc(&x, N * sizeof *x);
  if (e == cudaSuccess)
    e = cudaMemset(x, 0, N * sizeof *x);
  if (e != cudaSuccess) {
    printf("{\"mode\": \"loop\", \"error\": \"%s\", \"call\": \"setup\"}\n",
           cudaGetErrorName(e));
    return 1;
  }
  double t0 = now_s(), next = t0 + 1, t = t0;
  unsigned long long kernels = 0;
  while (e == cudaSuccess && (t = now_s()) - t0 < seconds) {
    for (int k = 0; k < BATCH; k++)
      small_work<<<N / 256, 256>>>(x, N);
    e = cudaGetLastError();
    if (e == cudaSuccess)
      e = cudaDeviceSynchronize();
    if (e == cudaSuccess)
      kernels += BATCH;
    if (t >= next) {
      fprintf(stderr, "probe_fault: %.0f s, %llu kernels\n", t - t0, kernels);
      next += 1;
    }
  }
  printf("{\"mode\": \"loop\", \"seconds\": %.1f, \"ran_s\": %.2f, "
         "\"kernels\": %llu, \"error\": %s%s%s}\n",
         seconds, t - t0, kernels, e == cudaSuccess ? "" : "\"",
         e == cudaSuccess ? "null" : cudaGetErrorName(e),
         e == cudaSuccess ? "" : "\"");
  return e == cudaSuccess ? 0 : 2;
}

static int fault(void) {
  cudaError_t e = cudaFree(0);
  if (e != cudaSuccess) {
    printf("{\"mode\": \"fault\", \"error\": \"%s\", \"call\": \"setup\"}\n",
           cudaGetErrorName(e));
    return 1;
  }
  write_wild<<<1, 32>>>((int *)(uintptr_t)0x100);
  e = cudaGetLastError();
  if (e == cudaSuccess)
    e = cudaDeviceSynchronize();
  printf("{\"mode\": \"fault\", \"error\": %s%s%s}\n",
         e == cudaSuccess ? "" : "\"",
         e == cudaSuccess ? "null" : cudaGetErrorName(e),
         e == cudaSuccess ? "" : "\"");
  return e == cudaSuccess ? 5 : 4;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "loop") == 0) {
    double s = atof(argv[2]);
    if (s > 0 && s <= 3600)
      return loop(s);
  }
  if (argc == 2 && strcmp(argv[1], "fault") == 0)
    return fault();
  fprintf(stderr, "usage: probe_fault loop SECONDS | probe_fault fault\n");
  return 1;
}
