#!/usr/bin/env bash
# gpuslice's engine against onnxruntime's CPU provider (PyPI) on the CNNs of
# scripts/make_models.py: resnet50 and cnn_small at batch 1 and 8, with 1
# and 2 threads, both in the same run, pinned with taskset to the same
# cores (0 for 1 thread, 0-1 for 2), alternating, BENCH_REPS times; the
# table gives the medians. The engine side is bench/engine_bench (the
# engine API: no worker, no HTTP); onnxruntime's is the same timed loop in
# Python around InferenceSession.run (intra-op threads = T, its defaults
# otherwise), whose own per-call cost is measured on an Identity model and
# printed. Writes every run's line to docs/bench/ (BENCH_RAW) and prints
# Markdown. Builds nothing. On AVX-512 CPUs the engine's convolutions and
# small Gemm and MatMul products run on its own kernels; elsewhere, and for
# the rest, OpenBLAS sgemm: the report names the kernel set OpenBLAS picked
# for this CPU (a CPU model that Debian 12's OpenBLAS 0.3.21 does not know,
# such as family 6 model 207, gets Prescott's SSE3 kernels; export
# OPENBLAS_CORETYPE=SkylakeX, say, to measure with others).
#
# usage: bench/cpu_engine_bench.sh [BUILD_DIR]   (default build/gcc: its
#        bench/engine_bench; its tests/ort-venv, made with pip if missing)
# env:   BENCH_REPS (5), BENCH_THREADS ("1 2"), BENCH_BATCHES ("1 8"),
#        BENCH_NET_MODELS ("resnet50 cnn_small"), BENCH_RAW (the raw file),
#        ORT_VENV (a venv with onnxruntime), BENCH_MODELS (models made
#        elsewhere, see bench_lib.sh), BENCH_BASE (another engine_bench,
#        say main's, for an A/B: run in the same loop, the three in turn,
#        and given two more columns, its p50 and its paired ratio)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$src/build/gcc}" && pwd)
gpuslice=$build/bench/engine_bench # machine_facts names this binary
reps=${BENCH_REPS:-5}
threads_list=${BENCH_THREADS:-1 2}
batches=${BENCH_BATCHES:-1 8}
nets=${BENCH_NET_MODELS:-resnet50 cnn_small}
venv=${ORT_VENV:-$build/tests/ort-venv}
raw_out=${BENCH_RAW:-$src/docs/bench/cpu_engine_bench-$(nproc)cpu-$(date -u +%Y-%m-%d)${OPENBLAS_CORETYPE:+-$OPENBLAS_CORETYPE}.txt}
# shellcheck source=bench/bench_lib.sh
. "$src/bench/bench_lib.sh" # tmp, die, make_models (BENCH_MODELS), machine_facts
[ -x "$gpuslice" ] || die "no $gpuslice (ninja -C $build engine_bench)"
[ -z "${BENCH_BASE:-}" ] || [ -x "$BENCH_BASE" ] || die "BENCH_BASE: no $BENCH_BASE"
# shellcheck disable=SC2034 # for machine_facts
gpuslice_src=$gpuslice
command -v taskset >/dev/null || die "taskset not found (util-linux)"

# The venv test_models.sh makes: Debian's onnx and numpy, onnxruntime.
if ! "$venv/bin/python" -c 'import onnx, onnxruntime' 2>/dev/null; then
  py=$(command -v python3)
  if /usr/bin/python3 -c 'import onnx' 2>/dev/null; then py=/usr/bin/python3; fi
  [ -x "$venv/bin/python" ] || "$py" -m venv --system-site-packages "$venv"
  "$venv/bin/pip" install -q onnxruntime >"$tmp/pip.log" 2>&1 || true
  "$venv/bin/python" -c 'import onnx, onnxruntime' ||
    { tail -5 "$tmp/pip.log" >&2; die "no onnx and onnxruntime in $venv"; }
fi
ort_version=$("$venv/bin/python" -c 'import onnxruntime; print(onnxruntime.__version__)')

# ort_bench.py MODEL BATCH ITERS WARMUP THREADS: engine_bench's --csv line,
# for onnxruntime.
cat >"$tmp/ort_bench.py" <<'PY'
import sys, time
import numpy as np, onnxruntime as ort
model, batch, iters, warmup, threads = sys.argv[1], *map(int, sys.argv[2:])
opts = ort.SessionOptions()
opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
s = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
i = s.get_inputs()[0]
shape = [batch if not isinstance(d, int) else d for d in i.shape]
x = np.random.default_rng(12345).uniform(-1, 1, shape).astype(np.float32)
feed, names = {i.name: x}, [o.name for o in s.get_outputs()]
for _ in range(warmup):
    s.run(names, feed)
ms = []
for _ in range(iters):
    t0 = time.perf_counter()
    s.run(names, feed)
    ms.append((time.perf_counter() - t0) * 1e3)
total, ms = sum(ms), sorted(ms)
rank = lambda p: ms[max(0, -(-len(ms) * p // 100) - 1)]
print("csv,%s,%d,%d,cpu,fp32,%d,%.4f,%.4f,%.4f,%.1f" % (model, batch, threads, iters,
      rank(50), rank(99), total / iters, batch * iters / (total / 1e3)))
PY
# An Identity model: onnxruntime's cost per call from Python, no compute.
"$venv/bin/python" - "$tmp/identity.onnx" <<'PY'
import sys
from onnx import TensorProto, helper, save
v = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 1])
g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [v("x")], [v("y")])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
m.ir_version = 8
save(m, sys.argv[1])
PY

if [ -n "${BENCH_MODELS:-}" ]; then make_models; else
  python3 "$src/scripts/make_models.py" --out "$tmp/models" --models all >/dev/null ||
    die "make_models.py failed (needs python3-onnx)"
fi
commit=$(git -C "$src" rev-parse --short HEAD)$(git -C "$src" diff --quiet HEAD -- src include || echo "+changes")
blas_core=$(OPENBLAS_VERBOSE=2 "$gpuslice" --model "$tmp/models/cnn_small/1/model.onnx" \
  --iters 1 --warmup 0 2>&1 | sed -n 's/^Core: //p')
{
  echo "# cpu_engine_bench.sh raw results"
  echo
  machine_facts "commit $commit; OpenBLAS kernels: ${blas_core:-unknown}${OPENBLAS_CORETYPE:+ (OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE)}; onnxruntime $ort_version (PyPI, CPUExecutionProvider); $reps repeats"
} >"$tmp/report"

# iters NET BATCH: "ITERS WARMUP": a few seconds per run on one core for
# onnxruntime (resnet50 at batch 1: about 0.15 s a run).
iters() {
  case "$1 $2" in
    "resnet50 1") echo "10 2" ;;
    resnet50\ *) echo "3 1" ;;
    "cnn_small 1") echo "2000 100" ;;
    *) echo "500 50" ;;
  esac
}

# one IMPL NET BATCH THREADS: one run, its csv line appended to $tmp/csv.
one() {
  local cpus=0 it wu line
  [ "$4" -gt 1 ] && cpus=0-$(($4 - 1))
  read -r it wu < <(iters "$2" "$3")
  local model=$tmp/models/$2/1/model.onnx
  if [ "$1" = gpuslice ] || [ "$1" = base ]; then
    local bin=$gpuslice
    [ "$1" = base ] && bin=$BENCH_BASE
    line=$(taskset -c "$cpus" "$bin" --model "$model" --batch "$3" --iters "$it" \
      --warmup "$wu" --threads "$4" --provider cpu --csv) || die "engine_bench failed on $2"
  else
    line=$(taskset -c "$cpus" "$venv/bin/python" "$tmp/ort_bench.py" "$model" "$3" "$it" \
      "$wu" "$4") || die "onnxruntime failed on $2"
  fi
  echo "$1 $2 ${line#csv,}" | tee -a "$tmp/csv" >&2
}

: >"$tmp/csv"
for rep in $(seq "$reps"); do
  for net in $nets; do
    for b in $batches; do
      for t in $threads_list; do
        if [ -n "${BENCH_BASE:-}" ]; then # base, gpuslice, onnxruntime in turn
          case $((rep % 3)) in
            1) one base "$net" "$b" "$t"; one gpuslice "$net" "$b" "$t"; one onnxruntime "$net" "$b" "$t" ;;
            2) one gpuslice "$net" "$b" "$t"; one onnxruntime "$net" "$b" "$t"; one base "$net" "$b" "$t" ;;
            0) one onnxruntime "$net" "$b" "$t"; one base "$net" "$b" "$t"; one gpuslice "$net" "$b" "$t" ;;
          esac
        elif [ $((rep % 2)) -eq 1 ]; then one gpuslice "$net" "$b" "$t"; one onnxruntime "$net" "$b" "$t"
        else one onnxruntime "$net" "$b" "$t"; one gpuslice "$net" "$b" "$t"; fi
      done
    done
  done
done
floor=$(taskset -c 0 "$venv/bin/python" "$tmp/ort_bench.py" "$tmp/identity.onnx" 1 5000 500 1 |
  cut -d, -f8)

# med IMPL NET BATCH THREADS FIELD: the median of FIELD (of the csv line
# after "IMPL NET ": 7 p50_ms, 8 p99_ms, 9 mean_ms, 10 images_per_s).
med() {
  awk -v i="$1" -v n="$2" -v b="$3" -v t="$4" -v f="$5" '
    { split($3, c, ","); if ($1 == i && $2 == n && c[2] == b && c[3] == t) v[++k] = c[f] }
    END { if (!k) { print "-"; exit }
          for (x = 1; x <= k; x++) for (y = x + 1; y <= k; y++)
            if (v[y] < v[x]) { s = v[x]; v[x] = v[y]; v[y] = s }
          m = (k % 2) ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2
          printf (m >= 100 ? "%.0f" : m >= 1 ? "%.2f" : "%.3f"), m }' "$tmp/csv"
}

# paired NET BATCH THREADS [IMPL]: the median over the repeats of IMPL's
# (gpuslice's) p50 over onnxruntime's in the same repeat (the two ran back
# to back), which the load of a shared machine moves less than either p50.
paired() {
  awk -v n="$1" -v b="$2" -v t="$3" -v i="${4:-gpuslice}" '
    { split($3, c, ","); if ($2 != n || c[2] != b || c[3] != t) next
      if ($1 == i) g[++kg] = c[7]; else if ($1 == "onnxruntime") o[++ko] = c[7] }
    END { k = kg < ko ? kg : ko; if (!k) { print "-"; exit }
          for (x = 1; x <= k; x++) v[x] = g[x] / o[x]
          for (x = 1; x <= k; x++) for (y = x + 1; y <= k; y++)
            if (v[y] < v[x]) { s = v[x]; v[x] = v[y]; v[y] = s }
          printf "%.2fx", (k % 2) ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2 }' "$tmp/csv"
}

{
  base_head= base_rule=
  if [ -n "${BENCH_BASE:-}" ]; then
    base_head=" base p50 (ms) | base / onnxruntime |" base_rule="---:|---:|"
  fi
  echo "| model | batch | threads | gpuslice p50 (ms) | onnxruntime p50 (ms) | gpuslice / onnxruntime | gpuslice p99 (ms) | onnxruntime p99 (ms) | gpuslice images/s | onnxruntime images/s |$base_head"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|$base_rule"
  for net in $nets; do
    for b in $batches; do
      for t in $threads_list; do
        base_cols=
        if [ -n "${BENCH_BASE:-}" ]; then
          base_cols=" $(med base "$net" "$b" "$t" 7) | $(paired "$net" "$b" "$t" base) |"
        fi
        echo "| $net | $b | $t | $(med gpuslice "$net" "$b" "$t" 7) |" \
          "$(med onnxruntime "$net" "$b" "$t" 7) | $(paired "$net" "$b" "$t") |" \
          "$(med gpuslice "$net" "$b" "$t" 8) | $(med onnxruntime "$net" "$b" "$t" 8) |" \
          "$(med gpuslice "$net" "$b" "$t" 10) | $(med onnxruntime "$net" "$b" "$t" 10) |$base_cols"
      done
    done
  done
  echo
  echo "Medians of $reps repeats; the ratio is the median of each repeat's ratio" \
    "of p50s. onnxruntime's Python call costs $floor ms per run (p50 on an" \
    "Identity model, 1 thread), included in its column."
} >"$tmp/table"
{
  cat "$tmp/report"
  echo "## runs: IMPL MODEL then engine_bench's csv fields"
  echo "## (model,batch,threads,provider,precision,iters,p50_ms,p99_ms,mean_ms,images_per_s)"
  echo
  cat "$tmp/csv"
  echo
  echo "## table"
  echo
  cat "$tmp/table"
} >"$tmp/raw_out"
mkdir -p "$(dirname "$raw_out")"
cp "$tmp/raw_out" "$raw_out"
cat "$tmp/report" "$tmp/table"
echo
echo "raw results: $raw_out"
