/* libFuzzer harness for the device plugin's request decoding: the input,
 * unframed when it is a framed gRPC message, goes to every method of the
 * plugin against a fixed inventory of three MIG instances (two 1g, one
 * 3g; one busy). Every answer must be a message that parses back, or an
 * error that says why. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "deviceplugin_v1beta1.pb-c.h"
#include "k8s/plugin_int.h"
#include "net/grpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const methods[] = {
    "/v1beta1.DevicePlugin/Allocate",
    "/v1beta1.DevicePlugin/GetPreferredAllocation",
    "/v1beta1.DevicePlugin/GetDevicePluginOptions",
    "/v1beta1.DevicePlugin/PreStartContainer",
    "/v1beta1.DevicePlugin/NoSuchMethod"};

static pid_t busy_third(gs__dp_t *dp, const gs_k8s_instance_t *in) {
  return in == &dp->inv->inst[2] ? 4242 : 0;
}

static void add(gs_k8s_inventory_t *inv, unsigned gi, const char *profile,
                const char *uuid) {
  gs_k8s_instance_t *in = &inv->inst[inv->n++];
  in->gi_id = gi;
  in->single_ci = true;
  strcpy(in->profile, profile);
  strcpy(in->uuid, uuid);
  in->conf.n_env = 2;
  strcpy(in->conf.env_name[0], "CUDA_VISIBLE_DEVICES");
  strcpy(in->conf.env_value[0], uuid);
  strcpy(in->conf.env_name[1], "NVIDIA_VISIBLE_DEVICES");
  strcpy(in->conf.env_value[1], uuid);
  in->n_nodes = 2;
  strcpy(in->node[0], "/dev/nvidiactl");
  strcpy(in->node[1], "/dev/nvidia0");
}

static gs__dp_t *plugin(void) {
  static gs__dp_t dp;
  static gs_k8s_inventory_t inv;
  if (dp.inv)
    return &dp;
  strcpy(inv.backend, "mig");
  add(&inv, 1, "1g.10gb", "MIG-11111111-1111-1111-1111-111111111111");
  add(&inv, 2, "1g.10gb", "MIG-22222222-2222-2222-2222-222222222222");
  add(&inv, 3, "3g.40gb", "MIG-33333333-3333-3333-3333-333333333333");
  dp.inv = &inv;
  dp.busy = busy_third;
  dp.n_res = 2;
  strcpy(dp.res[0].profile, "1g.10gb");
  strcpy(dp.res[0].name, "nvidia.com/mig-1g.10gb");
  strcpy(dp.res[1].profile, "3g.40gb");
  strcpy(dp.res[1].name, "nvidia.com/mig-3g.40gb");
  return &dp;
}

static void check(int method, int status, const gs_buf_t *out,
                  const char *msg) {
  ProtobufCMessage *m = NULL;
  if (status != GS__GRPC_OK) {
    if (msg[0] == '\0')
      abort(); /* an error that does not say why */
    return;
  }
  const uint8_t *p = (const uint8_t *)out->data;
  if (method == 0)
    m = (ProtobufCMessage *)v1beta1__allocate_response__unpack(NULL, out->len,
                                                               p);
  else if (method == 1)
    m = (ProtobufCMessage *)v1beta1__preferred_allocation_response__unpack(
        NULL, out->len, p);
  else
    return;
  if (!m)
    abort(); /* an answer the kubelet could not read */
  protobuf_c_message_free_unpacked(m, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  gs__dp_t *dp = plugin();
  const uint8_t *msg = data;
  size_t len = size;
  gs_error_t err = {0};
  if (gs__grpc_frame_read(data, size, 1u << 20, &msg, &len, &err) != 0) {
    msg = data;
    len = size;
  }
  for (int m = 0; m < 5; m++)
    for (unsigned r = 0; r < dp->n_res; r++) {
      gs_buf_t out;
      char why[512];
      gs_buf_init(&out, GS_LIMIT_GRPC_MESSAGE);
      int status = gs__dp_call(dp, &dp->res[r], methods[m], msg, len, &out, why,
                               sizeof why);
      check(m, status, &out, why);
      gs_buf_free(&out);
    }
  gs_buf_t list;
  gs_buf_init(&list, GS_LIMIT_GRPC_MESSAGE);
  if (gs__dp_list(dp, &dp->res[0], &list) != GS__GRPC_OK)
    abort();
  gs_buf_free(&list);
  dp->n_allocated = 0; /* Allocate remembers: each input starts afresh */
  return 0;
}
