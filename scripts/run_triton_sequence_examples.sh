#!/usr/bin/env bash
# Runs Triton's four Python sequence examples (HTTP and gRPC sync, gRPC
# stream and aio stream), unchanged, each plain and with -d (the dyna
# models), against `gpuslice worker` and through `gpuslice serve` with two
# workers (a host backend in a temp state dir); one line per run. By hand,
# beside the project (CI has no GitHub; test_triton_sequence covers the
# calls). Models: Triton's example repository's simple_sequence as it
# ships; simple_dyna_sequence as it ships when it loads, else (and always
# for simple_string_dyna_sequence, which Triton's QA builds from a custom
# backend) the ONNX stand-ins of scripts/make_seq_models.py.
# usage: run_triton_sequence_examples.sh GPUSLICE CLIENT_EXAMPLES_DIR
#        TRITON_REPO VENV  (OUT=DIR keeps the logs; last run: README)
set -u
gpuslice=$(realpath "$1") examples=$2 triton_repo=$3 venv=$4
here=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-$(mktemp -d)}
pid=
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

repo=$out/models
rm -rf "$repo" && mkdir -p "$repo"
python3 "$here/scripts/make_seq_models.py" --out "$out/seq" >/dev/null
cp -r "$triton_repo/simple_sequence" "$triton_repo/simple_dyna_sequence" \
  "$out/seq/simple_string_dyna_sequence" "$repo/"

# wait_log FILE TEXT: up to 60 s for TEXT in FILE.
wait_log() {
  for _ in $(seq 600); do grep -q "$2" "$1" && return 0; sleep 0.1; done
  return 1
}
worker() { # a worker on $hp/$gp, its log in $out/worker.log
  hp=$(port) gp=$(port)
  "$gpuslice" worker --model-repository "$repo" --http-port "$hp" \
    --grpc-port "$gp" --metrics-port 0 --threads 2 2>"$out/worker.log" &
  pid=$!
  wait_log "$out/worker.log" 'listening for gRPC'
}
state() { # the dyna model's state as the worker reports it
  curl -s "http://127.0.0.1:$hp/v2/repository/index" -X POST |
    python3 -c 'import json,sys; [print(m["name"], m.get("state"), m.get("reason", "")) for m in json.load(sys.stdin) if "dyna" in m["name"]]'
}
worker
echo "--- Triton's simple_dyna_sequence as it ships:"
state
if ! curl -sf "http://127.0.0.1:$hp/v2/models/simple_dyna_sequence/ready" >/dev/null; then
  echo "(not ready: the ONNX stand-in serves instead)"
  rm -rf "$repo/simple_dyna_sequence"
  cp -r "$out/seq/simple_dyna_sequence" "$repo/"
  kill $pid; wait $pid 2>/dev/null
  worker
fi

run() { # WHERE SCRIPT ARGS...
  local where=$1 s=$2 log
  shift 2
  log="$out/$where-${s%.py}$(echo "$*" | tr -dc a-z).log"
  timeout 60 "$venv/bin/python" "$examples/$s" "$@" >"$log" 2>&1
  local rc=$?
  printf '%-8s %-58s %s  %s\n' "$where" "$s $*" \
    "$([ $rc -eq 0 ] && echo PASS || echo "FAIL($rc)")" \
    "$(grep -v '^\s*$' "$log" | tail -1 | cut -c1-80)"
}
all() { # WHERE HTTP_PORT GRPC_PORT
  for d in "" -d; do
    run "$1" simple_http_sequence_sync_infer_client.py -u "127.0.0.1:$2" $d
    for s in simple_grpc_sequence_sync_infer_client.py \
      simple_grpc_sequence_stream_infer_client.py \
      simple_grpc_aio_sequence_stream_infer_client.py; do
      run "$1" "$s" -u "127.0.0.1:$3" $d
    done
  done
}
all worker "$hp" "$gp"
kill $pid; wait $pid 2>/dev/null

# Through serve: two workers on two host instances.
export GPUSLICE_STATE_DIR=$out/state GPUSLICE_BACKEND=host
export GPUSLICE_HOST_CPUS=2 GPUSLICE_HOST_MEMORY_MIB=24576 \
  GPUSLICE_HOST_CGROUP_ROOT=none
rm -rf "$out/state"
"$gpuslice" create 1g.3gb 1g.3gb >/dev/null || { echo "cannot create instances"; exit 1; }
hp=$(port) gp=$(port)
"$gpuslice" serve --model-repository "$repo" --http-port "$hp" \
  --grpc-port "$gp" >"$out/serve.log" 2>&1 &
pid=$!
wait_log "$out/serve.log" 'gpuslice serve: ready' || { echo "serve not ready"; exit 1; }
all serve "$hp" "$gp"
kill $pid; wait $pid 2>/dev/null
pid=
"$gpuslice" destroy --all >/dev/null 2>&1
