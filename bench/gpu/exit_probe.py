#!/usr/bin/env python3
"""How long a killed worker takes to go, on the GPU machine.

A worker restart under serve is: the old process's exit (serve hears of it
when the kernel reaps it: SIGCHLD), then the new one's start. This probe
times the first part for `gpuslice worker` as serve starts it: the worker
gets a ready pipe (--ready-fd; with --instance a control pipe too,
--control-fd) and a pipe it never uses (a lifeline: its write end is only
inherited), announces ready, is killed with SIGKILL, and the probe notes
when the lifeline reads end of file (the process's descriptors closed) and
when waitpid returns (the process reaped). A gap between the two is time
serve could start the replacement sooner.

  python3 bench/gpu/exit_probe.py GPUSLICE REPO CONV_CACHE REPS \\
      [--instance=ID=FIRST:COUNT ...] [other worker options]

EXIT_PROBE_SETTLE_S (0.5): seconds it serves, after ready, before the kill;
EXIT_PROBE_LOG: where the workers' logs go (appended).

Prints one JSON line per kill, then a summary line. Exit 0 when every kill
was timed, 1 otherwise.
"""
import json
import os
import select
import signal
import subprocess
import sys
import time


def one(cmd, hosted, log):
    ready_r, ready_w = os.pipe()
    ctl_r, ctl_w = os.pipe()
    life_r, life_w = os.pipe()
    argv = cmd + ["--ready-fd=%d" % ready_w]
    if hosted:
        argv.append("--control-fd=%d" % ctl_r)
    t_start = time.monotonic()
    p = subprocess.Popen(argv, pass_fds=(ready_w, ctl_r, life_w), stdin=subprocess.DEVNULL,
                         stdout=log, stderr=log)
    for fd in (ready_w, ctl_r, life_w):
        os.close(fd)
    got = b""
    deadline = t_start + 120
    while b"ready" not in got and time.monotonic() < deadline:
        r, _, _ = select.select([ready_r], [], [], 1.0)
        if r:
            chunk = os.read(ready_r, 4096)
            if not chunk:
                break
            got += chunk
    if b"ready" not in got:
        p.kill()
        p.wait()
        for fd in (ready_r, ctl_w, life_r):
            os.close(fd)
        return {"error": "not ready within 120 s", "lines": got.decode(errors="replace")}
    t_ready = time.monotonic()
    time.sleep(float(os.environ.get("EXIT_PROBE_SETTLE_S", "0.5")))  # serving
    t_kill = time.monotonic()
    os.kill(p.pid, signal.SIGKILL)
    t_eof = None
    r, _, _ = select.select([life_r], [], [], 30.0)
    if r and not os.read(life_r, 1):
        t_eof = time.monotonic()
    p.wait()
    t_reaped = time.monotonic()
    for fd in (ready_r, ctl_w, life_r):
        os.close(fd)
    ms = lambda a, b: None if a is None or b is None else round((b - a) * 1000, 1)
    return {"ready_ms": ms(t_start, t_ready), "kill_to_eof_ms": ms(t_kill, t_eof),
            "kill_to_reaped_ms": ms(t_kill, t_reaped), "status": p.returncode}


def main():
    if len(sys.argv) < 5:
        print(__doc__, file=sys.stderr)
        return 2
    gpuslice, repo, cache, reps = sys.argv[1:5]
    if not os.access(gpuslice, os.X_OK) or not os.path.isdir(repo) or not reps.isdigit():
        print("exit_probe: GPUSLICE must be an executable (%s), REPO a directory (%s), "
              "REPS a count (%s)" % (gpuslice, repo, reps), file=sys.stderr)
        return 2
    cmd = [gpuslice, "worker", "--model-repository=" + repo, "--grpc-port=0",
           "--http-port=0", "--gpu-wait=block", "--exit-on-device-failure",
           "--conv-cache=" + cache] + sys.argv[5:]
    rows = []
    instances = sum(a.startswith("--instance") for a in sys.argv[5:])
    with open(os.environ.get("EXIT_PROBE_LOG", "/dev/null"), "ab") as log:
        for _ in range(int(reps)):
            row = one(cmd, instances > 0, log)
            print(json.dumps(row), flush=True)
            rows.append(row)
    ok = [r for r in rows if "error" not in r and r["kill_to_eof_ms"] is not None]
    if ok:
        eof = sorted(r["kill_to_eof_ms"] for r in ok)
        reaped = sorted(r["kill_to_reaped_ms"] for r in ok)
        print("exit_probe: %d kills, instances %d: kill to EOF %s ms, kill to reaped %s ms"
              % (len(ok), max(1, instances), eof, reaped))
    return 0 if len(ok) == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
