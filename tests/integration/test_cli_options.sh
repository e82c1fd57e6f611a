# Options declared once (tools/cli_opts.c): for serve, worker and perf a
# value out of its declared range exits 2 with a message naming the option
# and the bad value, before anything starts; the usage lists every option
# with its range; serve.yaml keys go through the same check.
. "$(dirname "$0")/lib.sh"

mkdir -p "$GS_TMP/models"
# one range error per command, each at the edge of the range
expect_exit 2 "serve --router-threads 17 (1..16)" -- \
  gs serve --model-repository "$GS_TMP/models" --http-port 0 --router-threads 17
contains "$ERR" "serve: --router-threads '17': a whole number from 1 to 16" \
  "serve names the option and the value"
expect_exit 2 "worker --ready-fd 2 (3..1024)" -- \
  gs worker --model-repository "$GS_TMP/models" --ready-fd 2
contains "$ERR" "worker: --ready-fd '2': a whole number from 3 to 1024" \
  "worker names the option and the value"
expect_exit 2 "perf --percentile 100 (1..99)" -- gs perf -m simple --percentile 100
contains "$ERR" "perf: --percentile '100': a whole number from 1 to 99" \
  "perf names the option and the value"
# the same check from serve.yaml, with the file's line and column
printf 'model_repository: %s\nworkers_per_instance: 65\n' "$GS_TMP/models" \
  >"$GS_TMP/w.yaml"
expect_exit 2 "serve.yaml workers_per_instance: 65 (1..64)" -- gs serve -f "$GS_TMP/w.yaml"
contains "$ERR" "--workers-per-instance '65': a whole number from 1 to 64" \
  "serve.yaml value names the option"
contains "$ERR" "w.yaml:2:23: bad value for 'workers_per_instance'" \
  "serve.yaml value names file:line:column"
# the top of each range is accepted (the command then fails for its own
# reason: perf finds no server)
expect_exit 1 "perf --percentile 99 passes the check" -- \
  gs perf -m simple --percentile 99 -u 127.0.0.1:1 -p 10
# the usage comes from the same table
for verb in serve worker perf; do
  expect_exit 0 "$verb --help" -- gs "$verb" --help
  contains "$OUT" "^options:" "$verb --help lists its options"
done
contains "$(gs serve --help)" "--router-threads N +HTTP router loops.*" \
  "serve --help: --router-threads with its help"
contains "$(gs serve --help | tr '\n' ' ')" "\(1\.\.16\)" \
  "serve --help: --router-threads' range"
finish
