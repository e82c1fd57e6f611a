#!/usr/bin/env bash
# gpuslice serve --gpu-wait (key gpu_wait) reaches the workers' command
# lines: left auto, a serve of several workers asks each for
# --gpu-wait=block (a sleeping wait: the workers share the host's cores),
# one worker alone gets no flag (the driver's wait) unless it is one of
# several for its instance, and neither does a busy-polling serve (its
# workers spin); a running worker keeps its wait through serve --remove of
# the others; a value given is passed as it is. --plan-before-ready is
# passed the same way, and bad values of it refused.
# Skips (77) when the models cannot be generated.
. "$(dirname "$0")/serve_lib.sh"

# worker_args: each worker's command line, a line each.
worker_args() {
  local p
  for p in $(pgrep -f -- "--model-repository=$tmp/models"); do
    tr '\0' ' ' <"/proc/$p/cmdline"
    echo
  done
}

# expect_waits WHAT N FLAG: N workers, each with FLAG ("none": no --gpu-wait).
expect_waits() {
  local args n
  args=$(worker_args | grep " worker ")
  n=$(grep -c . <<<"$args")
  [ "$n" = "$2" ] || fail "$1: $n workers, not $2: $args"
  if [ "$3" = none ]; then
    ! grep -q -- "--gpu-wait" <<<"$args" || fail "$1: a --gpu-wait flag: $args"
  else
    [ "$(grep -c -- " $3 " <<<"$args ")" = "$2" ] ||
      fail "$1: not every worker has $3: $args"
  fi
  echo "ok: $1: $2 workers, $3"
}

# admin_then_waits --remove|--add N: the admin call on the second instance,
# then (within 10 s) N workers, each with --gpu-wait=block.
admin_then_waits() {
  "$GPUSLICE" serve "$1" "${all[1]}" >/dev/null || fail "serve $1 ${all[1]}"
  for _ in $(seq 100); do
    [ "$(worker_args | grep -c " worker ")" = "$2" ] && break
    sleep 0.1
  done
  expect_waits "auto after serve $1" "$2" --gpu-wait=block
}

stop_serve() {
  kill "$serve_pid" && wait "$serve_pid"
  serve_pid=
  for _ in $(seq 100); do
    pgrep -f -- "--model-repository=$tmp/models" >/dev/null || return 0
    sleep 0.1
  done
  fail "workers still running after the serve ended"
}

start_serve
labels=$(status_json | python3 -c 'import json, sys
print(" ".join(w["worker"] for w in json.load(sys.stdin)["workers"]))')
read -r -a all <<<"$labels"
[ "${#all[@]}" -ge 2 ] || fail "want 2 or more workers, got: $labels"
expect_waits "auto, ${#all[@]} workers" "${#all[@]}" --gpu-wait=block
stop_serve

start_serve --instances "${all[0]}"
expect_waits "auto, one worker" 1 none
stop_serve

start_serve --instances "${all[0]}" --workers-per-instance 2
expect_waits "auto, one instance, two workers" 2 --gpu-wait=block
stop_serve

# serve --remove leaves one instance: its running worker keeps its wait,
# and a worker of an instance added back is counted with the one left
start_serve
admin_then_waits --remove 1
admin_then_waits --add 2
stop_serve

start_serve --busy-poll-us 300
expect_waits "auto with --busy-poll-us" "${#all[@]}" none
stop_serve

start_serve --gpu-wait driver
expect_waits "--gpu-wait driver" "${#all[@]}" --gpu-wait=driver
stop_serve

cat >"$tmp/serve.yaml" <<YAML
gpu_wait: spin
YAML
start_serve -f "$tmp/serve.yaml" --instances "${all[0]}"
expect_waits "gpu_wait: spin from -f" 1 --gpu-wait=spin
stop_serve

# --plan-before-ready (key plan_before_ready) reaches the workers as given;
# none given: no flag (the worker's default). Bad values are refused by
# serve itself, and by the worker.
start_serve --instances "${all[0]}" --plan-before-ready 4
worker_args | grep " worker " | grep -q -- " --plan-before-ready=4 " ||
  fail "--plan-before-ready 4 not passed: $(worker_args)"
stop_serve
printf 'plan_before_ready: all\n' >"$tmp/plan.yaml"
start_serve -f "$tmp/plan.yaml" --instances "${all[0]}"
worker_args | grep " worker " | grep -q -- " --plan-before-ready=all " ||
  fail "plan_before_ready: all not passed: $(worker_args)"
stop_serve
start_serve --instances "${all[0]}"
! worker_args | grep -q -- "--plan-before-ready" ||
  fail "a --plan-before-ready flag without the option: $(worker_args)"
stop_serve
echo "ok: --plan-before-ready passed as given"
for bad in 0 x 1048577 ""; do
  timeout 20 "$GPUSLICE" serve --model-repository "$tmp/models" \
    --plan-before-ready "$bad" >"$tmp/bad.log" 2>&1
  rc=$?
  [ $rc = 2 ] && grep -q -- "--plan-before-ready: '$bad' is not N" "$tmp/bad.log" ||
    fail "serve --plan-before-ready '$bad': exit $rc, $(cat "$tmp/bad.log")"
  timeout 20 "$GPUSLICE" worker --model-repository "$tmp/models" \
    --plan-before-ready "$bad" >"$tmp/bad.log" 2>&1
  rc=$?
  [ $rc = 2 ] && grep -q -- "--plan-before-ready: '$bad' is not N" "$tmp/bad.log" ||
    fail "worker --plan-before-ready '$bad': exit $rc, $(cat "$tmp/bad.log")"
done
echo "ok: --plan-before-ready 0, x, 1048577 and '' refused (exit 2): $(head -n 1 "$tmp/bad.log")"

timeout 20 "$GPUSLICE" serve --model-repository "$tmp/models" --gpu-wait fast \
  >"$tmp/bad.log" 2>&1
rc=$?
[ $rc = 2 ] && grep -q -- "--gpu-wait 'fast'" "$tmp/bad.log" ||
  fail "--gpu-wait fast: exit $rc, $(cat "$tmp/bad.log")"
echo "ok: --gpu-wait fast refused (exit 2): $(head -n 1 "$tmp/bad.log")"
echo PASS
