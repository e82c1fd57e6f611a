# TEST-ONLY kubelet stand-in for `gpuslice k8s device-plugin`: the
# Registration service on a kubelet.sock, and a client of the plugin's
# sockets, both from the v1beta1 .proto (proto/deviceplugin_v1beta1.proto)
# with grpcio / grpcio-tools from PyPI. Drives the plugin as the kubelet's
# device manager would and checks its answers; `ok - ` / `not ok - ` lines.
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from concurrent import futures

import grpc

GEN, SRC, GPUSLICE, WORK = sys.argv[1:5]
BACKEND = sys.argv[5] if len(sys.argv) > 5 else "host"
sys.path.insert(0, GEN)
import deviceplugin_v1beta1_pb2 as pb  # noqa: E402
import deviceplugin_v1beta1_pb2_grpc as pbg  # noqa: E402

PLUGIN_DIR = os.path.join(WORK, "device-plugins")
KUBELET = os.path.join(PLUGIN_DIR, "kubelet.sock")
failed = 0


def check(cond, what, detail=""):
    global failed
    if cond:
        print("ok - " + what, flush=True)
    else:
        failed += 1
        print("not ok - " + what + ("\n  " + str(detail) if detail else ""),
              flush=True)


def gs(*args, check_rc=True):
    r = subprocess.run([GPUSLICE, *args], capture_output=True, text=True)
    if check_rc and r.returncode != 0:
        raise RuntimeError("gpuslice %s: %s" % (" ".join(args), r.stderr))
    return r


class Kubelet(pbg.RegistrationServicer):
    def __init__(self):
        self.registered = queue.Queue()
        self.server = None

    def Register(self, request, context):
        self.registered.put(request)
        return pb.Empty()

    def start(self):
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        pbg.add_RegistrationServicer_to_server(self, self.server)
        self.server.add_insecure_port("unix://" + KUBELET)
        self.server.start()

    def stop(self):
        self.server.stop(None).wait()
        if os.path.exists(KUBELET):
            os.unlink(KUBELET)

    def wait(self, n, timeout=10.0):
        got, end = {}, time.time() + timeout
        while len(got) < n and time.time() < end:
            try:
                r = self.registered.get(timeout=max(0.01, end - time.time()))
                got[r.resource_name] = r
            except queue.Empty:
                break
        return got


class Watch:
    """One ListAndWatch stream, its lists kept in order."""

    def __init__(self, stub):
        self.lists = queue.Queue()
        self.call = stub.ListAndWatch(pb.Empty())
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        try:
            for r in self.call:
                self.lists.put({d.ID: d.health for d in r.devices})
        except grpc.RpcError:
            pass

    def until(self, pred, timeout=10.0):
        end, last = time.time() + timeout, None
        while time.time() < end:
            try:
                last = self.lists.get(timeout=max(0.01, end - time.time()))
            except queue.Empty:
                break
            if pred(last):
                return last
        return last


def stub_for(reg):
    ch = grpc.insecure_channel("unix://" + os.path.join(PLUGIN_DIR,
                                                        reg.endpoint))
    return ch, pbg.DevicePluginStub(ch)


def code_of(fn):
    try:
        fn()
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as e:
        return e.code(), e.details()


def uuids_of(profile):
    out = gs("list", "--json").stdout
    import json
    doc = json.loads(out)
    ids = []
    for d in doc["devices"] if "devices" in doc else doc:
        for gi in d.get("gpu_instances", d.get("instances", [])):
            if gi.get("profile") != profile:
                continue
            for ci in gi.get("compute_instances", []):
                ids.append((gi["id"], ci["id"], ci["uuid"]))
    return ids


def main():
    os.makedirs(PLUGIN_DIR, exist_ok=True)
    kubelet = Kubelet()
    kubelet.start()
    plugin = subprocess.Popen(
        [GPUSLICE, "k8s", "device-plugin", "--plugin-dir", PLUGIN_DIR,
         "--interval-ms", "100", "--cdi-dir", WORK],
        stderr=open(os.path.join(WORK, "plugin.log"), "w"))
    try:
        (run if BACKEND == "host" else run_soft)(kubelet, plugin)
    finally:
        plugin.send_signal(signal.SIGTERM)
        try:
            rc = plugin.wait(timeout=5)
        except subprocess.TimeoutExpired:
            plugin.kill()
            rc = "hung"
        check(rc == 0, "the plugin stops on SIGTERM with status 0", rc)
        kubelet.server.stop(None)
        print(open(os.path.join(WORK, "plugin.log")).read()[-3000:])
    print("%d failed" % failed)
    sys.exit(1 if failed else 0)


def run(kubelet, plugin):
    small, big = BACKEND + "-1g.3gb", BACKEND + "-2g.6gb"
    regs = kubelet.wait(2)
    name1 = "gpuslice.dev/" + small
    name2 = "gpuslice.dev/" + big
    check(set(regs) == {name1, name2},
          "one resource per profile registered", sorted(regs))
    r1 = regs.get(name1)
    if not r1:
        return
    check(r1.version == "v1beta1" and r1.options.get_preferred_allocation_available,
          "Register says v1beta1 and GetPreferredAllocation", r1)
    ch, stub = stub_for(r1)
    opts = stub.GetDevicePluginOptions(pb.Empty())
    check(opts.get_preferred_allocation_available and not opts.pre_start_required,
          "GetDevicePluginOptions")
    w = Watch(stub)
    first = w.until(lambda l: len(l) == 2)
    check(first and len(first) == 2 and set(first.values()) == {"Healthy"},
          "ListAndWatch lists the two 1g instances Healthy", first)
    ids = sorted(first or {})
    a = stub.Allocate(pb.AllocateRequest(container_requests=[
        pb.ContainerAllocateRequest(devices_ids=[ids[0]])]))
    cr = a.container_responses[0]
    check([d.name for d in cr.cdi_devices] == ["gpuslice.dev/instance=" + ids[0]],
          "Allocate names the instance's CDI device", cr.cdi_devices)
    check(cr.envs.get("GPUSLICE_INSTANCE_UUID") == ids[0]
          and "GPUSLICE_CPUS" in cr.envs,
          "Allocate gives the instance's env for runtimes without CDI",
          dict(cr.envs))
    code, msg = code_of(lambda: stub.Allocate(pb.AllocateRequest(
        container_requests=[pb.ContainerAllocateRequest(
            devices_ids=["HOST-no-such"])])))
    check(code == grpc.StatusCode.NOT_FOUND and "unknown device" in msg,
          "Allocate of an unknown ID: NOT_FOUND", (code, msg))
    code, msg = code_of(lambda: stub.Allocate(pb.AllocateRequest(
        container_requests=[pb.ContainerAllocateRequest(devices_ids=[ids[1]]),
                            pb.ContainerAllocateRequest(devices_ids=[ids[1]])])))
    check(code == grpc.StatusCode.INVALID_ARGUMENT and "twice" in msg,
          "Allocate of one ID for two containers: INVALID_ARGUMENT", (code, msg))
    raw = ch.unary_unary("/v1beta1.DevicePlugin/Allocate",
                         request_serializer=lambda b: b,
                         response_deserializer=lambda b: b)
    code, msg = code_of(lambda: raw(b"\x0a\xff\xff\xff\xff\x0f"))
    check(code == grpc.StatusCode.INVALID_ARGUMENT and "malformed" in msg,
          "a malformed Allocate request: INVALID_ARGUMENT", (code, msg))
    # An instance a process runs on is allocated already.
    gi = [g for g, c, u in uuids_of("1g.3gb") if u == ids[1]]
    busy = subprocess.Popen([GPUSLICE, "run", "-i", str(gi[0]) if gi else "9",
                             "--", "sleep", "30"])
    time.sleep(0.5)
    code, msg = code_of(lambda: stub.Allocate(pb.AllocateRequest(
        container_requests=[pb.ContainerAllocateRequest(devices_ids=[ids[1]])])))
    busy.kill()
    busy.wait()
    check(code == grpc.StatusCode.FAILED_PRECONDITION and "already allocated" in msg,
          "Allocate of an instance in use: FAILED_PRECONDITION", (code, msg))
    p = stub.GetPreferredAllocation(pb.PreferredAllocationRequest(
        container_requests=[pb.ContainerPreferredAllocationRequest(
            available_deviceIDs=ids, must_include_deviceIDs=[ids[1]],
            allocation_size=2)]))
    got = list(p.container_responses[0].deviceIDs)
    check(got[0] == ids[1] and sorted(got) == ids,
          "GetPreferredAllocation keeps must_include first", got)
    code, msg = code_of(lambda: stub.GetPreferredAllocation(
        pb.PreferredAllocationRequest(container_requests=[
            pb.ContainerPreferredAllocationRequest(
                available_deviceIDs=ids[:1], allocation_size=2)])))
    check(code == grpc.StatusCode.INVALID_ARGUMENT,
          "GetPreferredAllocation larger than what is available", (code, msg))
    # A layout change reaches ListAndWatch; instances that stay keep IDs.
    gs("apply", "-f", os.path.join(WORK, "host.yaml"), "-c", "seven")
    seven = w.until(lambda l: len(l) == 7)
    check(seven and len(seven) == 7 and set(ids) <= set(seven),
          "after apply: seven 1g devices, the two old IDs kept", seven)
    # Destroying the allocated instance: Unhealthy; another one: gone.
    gone = [g for g, c, u in uuids_of("1g.3gb") if u == ids[0]]
    other = [(g, u) for g, c, u in uuids_of("1g.3gb") if u not in ids]
    gs("destroy", str(gone[0]), str(other[0][0]))
    after = w.until(lambda l: len(l) == 6)
    check(after and after.get(ids[0]) == "Unhealthy"
          and other[0][1] not in after,
          "destroyed: the allocated instance Unhealthy, the free one gone",
          after)
    cdi = open(os.path.join(WORK, "gpuslice.json")).read()
    check(other[0][1] not in cdi and ids[1] in cdi,
          "the plugin rewrote the CDI spec after the change")
    # The kubelet goes away and comes back: the plugin registers again.
    kubelet.stop()
    time.sleep(0.5)
    check(plugin.poll() is None, "the plugin outlives the kubelet")
    kubelet.registered = queue.Queue()
    kubelet.start()
    again = kubelet.wait(2)
    check(set(again) == {name1, name2},
          "registered again after kubelet.sock was made anew", sorted(again))
    ch2, stub2 = stub_for(again.get(name1, r1))
    w2 = Watch(stub2)
    l2 = w2.until(lambda l: len(l) == 6)
    check(l2 and len(l2) == 6, "ListAndWatch on the new socket", l2)
    # Its own socket removed (as a kubelet restart does): served again.
    kubelet.registered = queue.Queue()
    os.unlink(os.path.join(PLUGIN_DIR, r1.endpoint))
    third = kubelet.wait(1)
    check(name1 in third and os.path.exists(os.path.join(PLUGIN_DIR, r1.endpoint)),
          "a removed plugin socket is served and registered again", third)
    ch.close()
    ch2.close()


def run_soft(kubelet, plugin):
    """Soft backend under MPS (test-only fakes of NVML, CUDA and the MPS
    control daemon): a dead daemon turns the GPU's instances Unhealthy."""
    name = "gpuslice.dev/soft-1g.10gb"
    regs = kubelet.wait(1)
    check(name in regs, "soft: the 1g resource registered", sorted(regs))
    if name not in regs:
        return
    ch, stub = stub_for(regs[name])
    w = Watch(stub)
    first = w.until(lambda l: len(l) == 2)
    check(first and set(first.values()) == {"Healthy"},
          "soft: two 1g instances Healthy", first)
    ids = sorted(first or {})
    a = stub.Allocate(pb.AllocateRequest(container_requests=[
        pb.ContainerAllocateRequest(devices_ids=[ids[0]])]))
    cr = a.container_responses[0]
    pipe = cr.envs.get("CUDA_MPS_PIPE_DIRECTORY", "")
    check(cr.envs.get("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE", "").isdigit()
          and cr.envs.get("CUDA_MPS_PINNED_DEVICE_MEM_LIMIT", "").startswith("0="),
          "soft: Allocate gives the SM percentage and memory limit", dict(cr.envs))
    check([m.host_path for m in cr.mounts] == [pipe] and pipe,
          "soft: Allocate mounts the MPS pipe directory", cr.mounts)
    check("/dev/nvidiactl" in [d.host_path for d in cr.devices],
          "soft: Allocate gives the GPU's device nodes", cr.devices)
    code, msg = code_of(lambda: stub.Allocate(pb.AllocateRequest(
        container_requests=[pb.ContainerAllocateRequest(devices_ids=ids)])))
    check(code == grpc.StatusCode.INVALID_ARGUMENT and "one soft instance" in msg,
          "soft: two instances for one container refused", (code, msg))
    pid = int(open(os.path.join(pipe, "nvidia-cuda-mps-control.pid")).read())
    os.kill(pid, signal.SIGKILL)
    after = w.until(lambda l: set(l.values()) == {"Unhealthy"})
    check(after and set(after.values()) == {"Unhealthy"} and len(after) == 2,
          "soft: the MPS daemon killed: both instances Unhealthy", after)
    code, msg = code_of(lambda: stub.Allocate(pb.AllocateRequest(
        container_requests=[pb.ContainerAllocateRequest(devices_ids=[ids[1]])])))
    check(code == grpc.StatusCode.FAILED_PRECONDITION and "MPS daemon" in msg,
          "soft: Allocate of an unhealthy instance refused", (code, msg))
    ch.close()


if __name__ == "__main__":
    main()
