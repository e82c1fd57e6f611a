/* The worker's shared-memory registry and a request's shared-memory
 * tensors, on real POSIX shared-memory objects: the rules of KServe's
 * shared-memory extensions (a tensor's [offset, offset + byte_size) lies
 * inside its region, names are unique, a status per region, unregister of
 * every region) and gpuslice's own (unregister while a request holds the
 * region defers the unmap; inputs are used in place when aligned). */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_onnx_build.h"
#include "worker/shm.h"

static char key[64];
static uint8_t *object; /* the test's own mapping of the object */
#define OBJECT_BYTES 4096

static int setup(void **state) {
  (void)state;
  snprintf(key, sizeof key, "/gs_unit_shm_%d", (int)getpid());
  int fd = shm_open(key, O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0 || ftruncate(fd, OBJECT_BYTES) != 0)
    return -1;
  object = mmap(NULL, OBJECT_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  for (int i = 0; i < OBJECT_BYTES; i++)
    object[i] = (uint8_t)i;
  return object == MAP_FAILED ? -1 : 0;
}

static int teardown(void **state) {
  (void)state;
  munmap(object, OBJECT_BYTES);
  shm_unlink(key);
  return 0;
}

/* A tensor fits when offset + byte_size <= the region's size and its
 * offset is inside the region, even for an empty tensor (Triton's rules
 * and words); nothing wraps around. */
static void test_bounds(void **state) {
  (void)state;
  gs_error_t err = {0};
  assert_int_equal(gs__shm_check_bounds("r", 128, 0, 128, "t", &err), GS_OK);
  assert_int_equal(gs__shm_check_bounds("r", 128, 64, 64, "t", &err), GS_OK);
  assert_int_equal(gs__shm_check_bounds("r", 128, 127, 0, "t", &err), GS_OK);
  assert_int_equal(gs__shm_check_bounds("r", 128, 128, 0, "t", &err),
                   GS_EINVAL);
  assert_non_null(
      strstr(err.msg, "Invalid offset for shared memory region: 'r'"));
  assert_int_equal(gs__shm_check_bounds("r", 128, 64, 65, "t", &err),
                   GS_EINVAL);
  assert_non_null(strstr(err.msg,
                         "Invalid offset + byte size for shared memory region: "
                         "'r'"));
  assert_non_null(strstr(err.msg, "'t'"));
  assert_int_equal(gs__shm_check_bounds("r", 128, 129, 0, "t", &err),
                   GS_EINVAL);
  assert_non_null(strstr(err.msg, "offset 129 is past the end"));
  assert_int_equal(gs__shm_check_bounds("r", 128, 1, UINT64_MAX, "t", &err),
                   GS_EINVAL);
  assert_int_equal(
      gs__shm_check_bounds("r", 128, UINT64_MAX, UINT64_MAX, "t", &err),
      GS_EINVAL);
}

/* Register maps [offset, offset + byte_size) of the key's object; status
 * reports name, key, offset and byte_size; names are unique. */
static void test_register_status(void **state) {
  (void)state;
  gs__shm_registry_t *reg = gs__shm_registry_create();
  gs_error_t err = {0};
  assert_int_equal(gs__shm_register_system(reg, "a", key, 1024, 512, &err),
                   GS_OK);
  assert_int_equal(gs__shm_register_system(reg, "a", key, 0, 16, &err),
                   GS_EEXISTS);
  assert_non_null(strstr(err.msg, "'a' already in manager"));
  json_t *st = gs__shm_status_json(reg, GS__SHM_SYSTEM, "a", &err);
  assert_non_null(st);
  char *text = json_dumps(st, JSON_COMPACT | JSON_SORT_KEYS);
  char want[256];
  snprintf(want, sizeof want,
           "[{\"byte_size\":512,\"key\":\"%s\",\"name\":\"a\","
           "\"offset\":1024}]",
           key);
  assert_string_equal(text, want);
  free(text);
  json_decref(st);
  /* a CUDA status of a system region names the mismatch */
  assert_null(gs__shm_status_json(reg, GS__SHM_CUDA, "a", &err));
  assert_non_null(strstr(err.msg, "registered as system"));
  assert_null(gs__shm_status_json(reg, GS__SHM_SYSTEM, "b", &err));
  assert_int_equal(err.code, GS_ENOTFOUND);
  assert_string_equal(err.msg,
                      "Unable to find system shared memory region: 'b'");
  assert_null(gs__shm_status_json(reg, GS__SHM_CUDA, "b", &err));
  assert_string_equal(err.msg, "Unable to find cuda shared memory region: 'b'");
  gs__shm_region_t *r = gs__shm_acquire(reg, "a", &err);
  assert_non_null(r);
  assert_memory_equal(r->host, object + 1024, 512); /* the same bytes */
  gs__shm_drop(r);
  gs__shm_registry_destroy(reg);
}

/* A missing key is "not found"; a region past the end of its object, or
 * an offset past it, is refused; neither leaves a region behind. */
static void test_register_errors(void **state) {
  (void)state;
  gs__shm_registry_t *reg = gs__shm_registry_create();
  gs_error_t err = {0};
  assert_int_equal(
      gs__shm_register_system(reg, "x", "/gs_unit_no_such_key", 0, 8, &err),
      GS_ENOTFOUND);
  assert_non_null(strstr(err.msg, "'/gs_unit_no_such_key'"));
  assert_int_equal(gs__shm_register_system(reg, "x", key, 4000, 200, &err),
                   GS_EINVAL);
  assert_non_null(strstr(err.msg, "past the end"));
  assert_int_equal(gs__shm_register_system(reg, "x", key, 5000, 0, &err),
                   GS_EINVAL);
  assert_int_equal(gs__shm_register_system(reg, "", key, 0, 8, &err),
                   GS_EINVAL);
  json_t *st = gs__shm_status_json(reg, GS__SHM_SYSTEM, NULL, &err);
  assert_int_equal(json_array_size(st), 0);
  json_decref(st);
  gs__shm_registry_destroy(reg);
}

/* Unregister while a request holds the region: the name goes at once (it
 * can be registered again), the held mapping stays until dropped. An
 * unknown name is no error (Triton's behaviour). */
static void test_unregister_deferred(void **state) {
  (void)state;
  gs__shm_registry_t *reg = gs__shm_registry_create();
  gs_error_t err = {0};
  assert_int_equal(gs__shm_register_system(reg, "a", key, 0, 64, &err), GS_OK);
  gs__shm_region_t *held = gs__shm_acquire(reg, "a", &err);
  assert_non_null(held);
  assert_int_equal(gs__shm_unregister(reg, GS__SHM_SYSTEM, "a", &err), GS_OK);
  assert_null(gs__shm_acquire(reg, "a", &err));
  assert_non_null(strstr(err.msg, "Unable to find shared memory region: 'a'"));
  assert_memory_equal(held->host, object, 64); /* still mapped */
  assert_int_equal(gs__shm_register_system(reg, "a", key, 64, 64, &err), GS_OK);
  gs__shm_drop(held);
  assert_int_equal(gs__shm_unregister(reg, GS__SHM_SYSTEM, "nope", &err),
                   GS_OK);
  /* another kind's name: nothing is done, no error (Triton) */
  assert_int_equal(gs__shm_unregister(reg, GS__SHM_CUDA, "a", &err), GS_OK);
  json_t *still = gs__shm_status_json(reg, GS__SHM_SYSTEM, "a", &err);
  assert_int_equal(json_array_size(still), 1);
  json_decref(still);
  assert_int_equal(gs__shm_unregister(reg, GS__SHM_SYSTEM, NULL, &err), GS_OK);
  assert_null(gs__shm_acquire(reg, "a", &err));
  gs__shm_registry_destroy(reg);
}

static const gs_tensor_t input16 = {
    .name = "INPUT0", .dtype = GS_DTYPE_INT32, .rank = 1, .shape = {16}};

/* An input in a region points at its bytes when aligned (no copy), holds a
 * copy otherwise; its byte size must be the tensor's. */
static void test_resolve_inputs(void **state) {
  (void)state;
  gs__shm_registry_t *reg = gs__shm_registry_create();
  gs_error_t err = {0};
  assert_int_equal(gs__shm_register_system(reg, "in", key, 0, 256, &err),
                   GS_OK);
  json_t *aligned =
      json_pack("{s:s, s:i, s:i}", "shared_memory_region", "in",
                "shared_memory_byte_size", 64, "shared_memory_offset", 64);
  json_t *odd =
      json_pack("{s:s, s:i, s:i}", "shared_memory_region", "in",
                "shared_memory_byte_size", 64, "shared_memory_offset", 4);
  gs__infer_request_t req;
  memset(&req, 0, sizeof req);
  bool used;
  req.n_inputs = 2;
  req.inputs[0] = req.inputs[1] = input16;
  req.inputs[0].bytes = req.inputs[1].bytes = 64;
  assert_int_equal(
      gs__shm_ref_json(&req, true, 0, "INPUT0", aligned, &used, &err), GS_OK);
  assert_true(used);
  assert_int_equal(gs__shm_ref_json(&req, true, 1, "INPUT1", odd, &used, &err),
                   GS_OK);
  assert_int_equal(gs__shm_resolve(&req, reg, -1, NULL, &err), GS_OK);
  assert_ptr_equal(req.inputs[0].data, reg->head->host + 64);
  assert_ptr_not_equal(req.inputs[1].data, reg->head->host + 4);
  assert_memory_equal(req.inputs[1].data, object + 4, 64);
  gs__shm_request_release(&req);
  /* a byte size that is not the tensor's */
  memset(&req, 0, sizeof req);
  req.n_inputs = 1;
  req.inputs[0] = input16;
  req.inputs[0].bytes = 60;
  assert_int_equal(
      gs__shm_ref_json(&req, true, 0, "INPUT0", aligned, &used, &err), GS_OK);
  assert_int_equal(gs__shm_resolve(&req, reg, -1, NULL, &err), GS_EINVAL);
  assert_non_null(strstr(err.msg, "shared_memory_byte_size is 64"));
  gs__shm_request_release(&req);
  json_decref(aligned);
  json_decref(odd);
  gs__shm_registry_destroy(reg);
}

/* A region without a byte size (or the other way round) is an error; an
 * output goes into its region only when it fits. */
static void test_outputs(void **state) {
  (void)state;
  gs__shm_registry_t *reg = gs__shm_registry_create();
  gs_error_t err = {0};
  assert_int_equal(gs__shm_register_system(reg, "out", key, 2048, 128, &err),
                   GS_OK);
  gs__infer_request_t req;
  memset(&req, 0, sizeof req);
  bool used;
  json_t *half = json_pack("{s:s}", "shared_memory_region", "out");
  assert_int_equal(gs__shm_ref_json(&req, false, 1, "OUT", half, &used, &err),
                   GS_EINVAL);
  assert_non_null(strstr(err.msg, "must be given together"));
  json_decref(half);
  json_t *p =
      json_pack("{s:s, s:i, s:i}", "shared_memory_region", "out",
                "shared_memory_byte_size", 32, "shared_memory_offset", 96);
  assert_int_equal(gs__shm_ref_json(&req, false, 1, "OUT", p, &used, &err),
                   GS_OK);
  assert_int_equal(gs__shm_resolve(&req, reg, -1, NULL, &err), GS_OK);
  assert_true(gs__shm_output_wanted(&req, 1));
  assert_false(gs__shm_output_wanted(&req, 0));
  int32_t v[16];
  for (int i = 0; i < 16; i++)
    v[i] = 1000 + i;
  gs_tensor_t t = input16;
  t.name = "OUT";
  t.data = v;
  t.bytes = sizeof v;
  assert_int_equal(gs__shm_output_write(&req, 1, &t, &err), GS_EINVAL);
  assert_non_null(strstr(err.msg, "'OUT' (32 bytes) should be at least 64"));
  t.bytes = 32;
  t.shape[0] = 8;
  assert_int_equal(gs__shm_output_write(&req, 1, &t, &err), GS_OK);
  assert_memory_equal(object + 2048 + 96, v, 32);
  gs__shm_request_release(&req);
  json_decref(p);
  gs__shm_registry_destroy(reg);
}

/* CUDA regions through the test-only fake driver (tests/fake_cuda: its IPC
 * handle names a POSIX object, its device addresses are host addresses),
 * when the test runs with it (GS_FAKE_CUDA set by CMake). An input in a
 * region on the session's device stays there (mem DEVICE at the region's
 * address: the engine copies it on the GPU); for a CPU session (-1) or a
 * region on another device it is copied to the host, as gs__shm_to_host
 * does for one that stayed; an output the run wrote into its region is
 * left there, one in device memory elsewhere refused; the counters that
 * /metrics shows count each path. */
static void test_cuda_paths(void **state) {
  (void)state;
  if (!getenv("GS_FAKE_CUDA"))
    fail_msg("GS_FAKE_CUDA is not set: run through ctest (the fake driver)");
  setenv("FAKE_CUDA_SMS", "132,132", 1); /* two devices */
  gs__shm_registry_t *reg = gs__shm_registry_create();
  gs_error_t err = {0};
  uint8_t handle[GS__SHM_CUDA_HANDLE_BYTES] = {0};
  memcpy(handle, "fakeipc:", 8);
  memcpy(handle + 8, key, strlen(key) + 1); /* key is under 40 bytes */
  assert_int_equal(
      gs__shm_register_cuda(reg, "d1", handle, sizeof handle, 1, 256, &err),
      GS_OK);
  assert_int_equal(
      gs__shm_register_cuda(reg, "d0", handle, sizeof handle, 0, 256, &err),
      GS_OK);
  unsigned long long base = reg->head->dptr; /* d0, the newest */
  unsigned long long bases[2] = {base, reg->head->next->dptr};
  json_t *in0 =
      json_pack("{s:s, s:i, s:i}", "shared_memory_region", "d0",
                "shared_memory_byte_size", 64, "shared_memory_offset", 64);
  json_t *in1 =
      json_pack("{s:s, s:i, s:i}", "shared_memory_region", "d1",
                "shared_memory_byte_size", 64, "shared_memory_offset", 64);
  json_t *out0 =
      json_pack("{s:s, s:i, s:i}", "shared_memory_region", "d0",
                "shared_memory_byte_size", 64, "shared_memory_offset", 128);
  bool used;
  for (int device = -1; device <= 1; device++) {
    gs__infer_request_t req;
    memset(&req, 0, sizeof req);
    req.n_inputs = 2;
    req.inputs[0] = req.inputs[1] = input16;
    req.inputs[0].bytes = req.inputs[1].bytes = 64;
    assert_int_equal(gs__shm_ref_json(&req, true, 0, "A", in0, &used, &err),
                     GS_OK);
    assert_int_equal(gs__shm_ref_json(&req, true, 1, "B", in1, &used, &err),
                     GS_OK);
    assert_int_equal(gs__shm_resolve(&req, reg, device, NULL, &err), GS_OK);
    /* d0's input stays on device 0 only; d1's on device 1 only */
    for (int k = 0; k < 2; k++) {
      bool stays = device == k;
      assert_int_equal(req.inputs[k].mem, stays ? GS_MEM_DEVICE : GS_MEM_HOST);
      assert_true(((uintptr_t)req.inputs[k].data == bases[k] + 64) == stays);
      assert_memory_equal(req.inputs[k].data, object + 64, 64);
    }
    assert_int_equal(gs__shm_to_host(&req, &err), GS_OK);
    assert_int_equal(req.inputs[0].mem, GS_MEM_HOST);
    assert_int_equal(req.inputs[1].mem, GS_MEM_HOST);
    assert_ptr_not_equal(req.inputs[0].data, object + 64);
    assert_memory_equal(req.inputs[0].data, object + 64, 64);
    gs__shm_request_release(&req);
  }
  /* every input went through the host once: 2 per round */
  assert_int_equal(reg->cuda_tensors[0][0], 6);
  gs__infer_request_t req;
  memset(&req, 0, sizeof req);
  assert_int_equal(gs__shm_ref_json(&req, false, 0, "OUT", out0, &used, &err),
                   GS_OK);
  assert_int_equal(gs__shm_resolve(&req, reg, 0, NULL, &err), GS_OK);
  gs_tensor_t t = input16;
  t.name = "OUT";
  t.bytes = 64;
  t.mem = GS_MEM_DEVICE; /* written by the run: nothing to copy */
  t.data = (void *)(uintptr_t)(base + 128);
  uint8_t before[64];
  memcpy(before, object + 128, 64);
  assert_int_equal(gs__shm_output_write(&req, 0, &t, &err), GS_OK);
  assert_memory_equal(object + 128, before, 64);
  assert_int_equal(reg->cuda_tensors[1][1], 1);
  t.data = (void *)(uintptr_t)(base + 0);
  assert_int_equal(gs__shm_output_write(&req, 0, &t, &err), GS_EINVAL);
  assert_non_null(strstr(err.msg, "outside its region 'd0'"));
  int32_t v[16];
  for (int i = 0; i < 16; i++)
    v[i] = 7000 + i;
  t.mem = GS_MEM_HOST;
  t.data = v;
  assert_int_equal(gs__shm_output_write(&req, 0, &t, &err), GS_OK);
  assert_memory_equal(object + 128, v, 64);
  assert_int_equal(reg->cuda_tensors[1][0], 1);
  gs__shm_request_release(&req);
  json_decref(in0);
  json_decref(in1);
  json_decref(out0);
  gs__shm_registry_destroy(reg);
}

/* A CUDA region's byte_size must fit the allocation its handle opens
 * (the fake's: the whole POSIX object), as Triton checks at register. */
static void test_cuda_register_size(void **state) {
  (void)state;
  if (!getenv("GS_FAKE_CUDA"))
    fail_msg("GS_FAKE_CUDA is not set: run through ctest (the fake driver)");
  gs__shm_registry_t *reg = gs__shm_registry_create();
  gs_error_t err = {0};
  uint8_t handle[GS__SHM_CUDA_HANDLE_BYTES] = {0};
  memcpy(handle, "fakeipc:", 8);
  memcpy(handle + 8, key, strlen(key) + 1);
  assert_int_equal(gs__shm_register_cuda(reg, "big", handle, sizeof handle, 0,
                                         OBJECT_BYTES + 1, &err),
                   GS_EINVAL);
  assert_non_null(strstr(err.msg, "failed to register shared memory region "
                                  "'big': byte_size 4097 is larger than the "
                                  "CUDA allocation"));
  assert_int_equal(gs__shm_register_cuda(reg, "big", handle, sizeof handle, 0,
                                         OBJECT_BYTES, &err),
                   GS_OK);
  assert_int_equal(
      gs__shm_register_cuda(reg, "big", handle, sizeof handle, 0, 16, &err),
      GS_EEXISTS);
  json_t *st = gs__shm_status_json(reg, GS__SHM_CUDA, NULL, &err);
  char *text = json_dumps(st, JSON_COMPACT | JSON_SORT_KEYS);
  assert_string_equal(
      text, "[{\"byte_size\":4096,\"device_id\":0,\"name\":\"big\"}]");
  free(text);
  json_decref(st);
  gs__shm_registry_destroy(reg);
}

/* The path an input in a region takes (gs__shm_input_path): a CUDA
 * region's stays on the GPU only for a session on its device and an input
 * the engine reads there. */
static void test_input_path(void **state) {
  (void)state;
  assert_int_equal(gs__shm_input_path(GS__SHM_SYSTEM, true, 0, 0, false),
                   GS__SHM_IN_PLACE);
  assert_int_equal(gs__shm_input_path(GS__SHM_SYSTEM, true, 0, -1, true),
                   GS__SHM_IN_PLACE);
  assert_int_equal(gs__shm_input_path(GS__SHM_SYSTEM, false, 0, 0, false),
                   GS__SHM_HOST_COPY);
  assert_int_equal(gs__shm_input_path(GS__SHM_CUDA, false, 1, 1, false),
                   GS__SHM_ON_DEVICE);
  assert_int_equal(gs__shm_input_path(GS__SHM_CUDA, false, 1, 1, true),
                   GS__SHM_HOST_COPY); /* BYTES or a Reshape's shape */
  assert_int_equal(gs__shm_input_path(GS__SHM_CUDA, false, 1, 0, false),
                   GS__SHM_HOST_COPY); /* another device */
  assert_int_equal(gs__shm_input_path(GS__SHM_CUDA, false, 0, -1, false),
                   GS__SHM_HOST_COPY); /* a CPU session */
}

/* A model whose input 'shape' is a Reshape's target: the engine reads it
 * on the host (gs_model_input_host_only), so from a CUDA region on the
 * session's device it is copied device to host while the data input 'x'
 * stays on the GPU; a BYTES input in such a region is copied too. */
static void test_cuda_host_only(void **state) {
  (void)state;
  if (!getenv("GS_FAKE_CUDA"))
    fail_msg("GS_FAKE_CUDA is not set: run through ctest (the fake driver)");
  graph_t g = {.n_nodes = 1, .n_in = 2, .n_out = 1};
  g.nodes[0] = node("Reshape", "rs", "x,shape", "y", NULL);
  g.in[0] = info("x", ELEM_F32, 1, (int64_t[]){4});
  g.in[1] = info("shape", ELEM_I64, 1, (int64_t[]){2});
  g.out[0] = info("y", ELEM_F32, -1, NULL);
  gs_model_t *m = load(&g);
  assert_false(gs_model_input_host_only(m, 0));
  assert_true(gs_model_input_host_only(m, 1));
  assert_false(gs_model_input_host_only(m, 2));
  gs__shm_registry_t *reg = gs__shm_registry_create();
  gs_error_t err = {0};
  uint8_t handle[GS__SHM_CUDA_HANDLE_BYTES] = {0};
  memcpy(handle, "fakeipc:", 8);
  memcpy(handle + 8, key, strlen(key) + 1);
  assert_int_equal(
      gs__shm_register_cuda(reg, "d0", handle, sizeof handle, 0, 256, &err),
      GS_OK);
  unsigned long long base = reg->head->dptr;
  gs__infer_request_t req;
  memset(&req, 0, sizeof req);
  req.n_inputs = 3;
  req.inputs[0] = tensor("x", GS_DTYPE_FP32, 1, (int64_t[]){4}, NULL);
  req.inputs[1] = tensor("shape", GS_DTYPE_INT64, 1, (int64_t[]){2}, NULL);
  req.inputs[2] = tensor("s", GS_DTYPE_BYTES, 1, (int64_t[]){1}, NULL);
  const char *names[3] = {"x", "shape", "s"};
  int offsets[3] = {0, 64, 128}, sizes[3] = {16, 16, 7};
  int64_t to22[2] = {2, 2};
  memcpy(object + 64, to22, sizeof to22);
  memcpy(object + 128, "\3\0\0\0abc", 7); /* one BYTES element "abc" */
  bool used;
  for (int k = 0; k < 3; k++) {
    json_t *p = json_pack("{s:s, s:i, s:i}", "shared_memory_region", "d0",
                          "shared_memory_byte_size", sizes[k],
                          "shared_memory_offset", offsets[k]);
    assert_int_equal(
        gs__shm_ref_json(&req, true, (size_t)k, names[k], p, &used, &err),
        GS_OK);
    json_decref(p);
  }
  uint64_t host_before = reg->cuda_tensors[0][0];
  assert_int_equal(gs__shm_resolve(&req, reg, 0, m, &err), GS_OK);
  assert_int_equal(req.inputs[0].mem, GS_MEM_DEVICE);
  assert_true((uintptr_t)req.inputs[0].data == base);
  for (int k = 1; k < 3; k++) { /* copied out of the region to the host */
    assert_int_equal(req.inputs[k].mem, GS_MEM_HOST);
    assert_true((uintptr_t)req.inputs[k].data != base + (unsigned)offsets[k]);
    assert_memory_equal(req.inputs[k].data, object + offsets[k], sizes[k]);
  }
  assert_int_equal(reg->cuda_tensors[0][0] - host_before, 2);
  gs__shm_request_release(&req);
  gs__shm_registry_destroy(reg);
  gs_model_destroy(m);
}

/* Register bodies as Triton's HTTP extension has them; base64 of the
 * CUDA handle (RFC 4648, padded). */
static void test_parse_register(void **state) {
  (void)state;
  gs__shm_register_req_t r;
  gs_error_t err = {0};
  const char *sys = "{\"key\": \"/k\", \"offset\": 8, \"byte_size\": 16}";
  assert_int_equal(
      gs__shm_parse_register(GS__SHM_SYSTEM, sys, strlen(sys), &r, &err),
      GS_OK);
  assert_string_equal(r.key, "/k");
  assert_int_equal(r.offset, 8);
  assert_int_equal(r.byte_size, 16);
  const char *nokey = "{\"byte_size\": 16}";
  assert_int_equal(
      gs__shm_parse_register(GS__SHM_SYSTEM, nokey, strlen(nokey), &r, &err),
      GS_EINVAL);
  assert_non_null(strstr(err.msg, "\"key\""));
  const char *cuda = "{\"raw_handle\": {\"b64\": \"Zm9vYmFy\"}, "
                     "\"device_id\": 1, \"byte_size\": 64}";
  assert_int_equal(
      gs__shm_parse_register(GS__SHM_CUDA, cuda, strlen(cuda), &r, &err),
      GS_OK);
  assert_int_equal(r.handle_len, 6);
  assert_memory_equal(r.handle, "foobar", 6);
  assert_int_equal(r.device_id, 1);
  uint8_t out[8];
  size_t n;
  assert_int_equal(gs__shm_base64_decode("Zm8=", 4, out, 8, &n, &err), GS_OK);
  assert_int_equal(n, 2);
  assert_int_equal(gs__shm_base64_decode("Zg==", 4, out, 8, &n, &err), GS_OK);
  assert_int_equal(n, 1);
  assert_int_equal(gs__shm_base64_decode("Zg=a", 4, out, 8, &n, &err),
                   GS_EINVAL);
  assert_int_equal(gs__shm_base64_decode("Z===", 4, out, 8, &n, &err),
                   GS_EINVAL);
  assert_int_equal(gs__shm_base64_decode("Zm9vYmFyYmF6", 12, out, 8, &n, &err),
                   GS_ELIMIT);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bounds),
      cmocka_unit_test(test_register_status),
      cmocka_unit_test(test_register_errors),
      cmocka_unit_test(test_unregister_deferred),
      cmocka_unit_test(test_resolve_inputs),
      cmocka_unit_test(test_outputs),
      cmocka_unit_test(test_cuda_paths),
      cmocka_unit_test(test_cuda_register_size),
      cmocka_unit_test(test_input_path),
      cmocka_unit_test_teardown(test_cuda_host_only, free_kept),
      cmocka_unit_test(test_parse_register),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
