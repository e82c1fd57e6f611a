# gpuslice k8s mig-manager against the API server: a TEST-ONLY stand-in
# (k8s_api_standin.py, plain HTTP on loopback) serves the Node; a new
# nvidia.com/mig.config is applied (host backend) and the merge PATCHes
# carry pending then success (failed for an unknown config, layout kept);
# a 401, a 500 and an unreachable server are logged, nothing is applied,
# the manager keeps running and catches up once the server answers.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/host_env.sh"
API="$GS_TMP/api"
mkdir -p "$API"
printf 'the-token\n' >"$GS_TMP/token"

start_api() { # [PORT]
  rm -f "$API/port"
  python3 "$(dirname "$0")/k8s_api_standin.py" "$API" node-a the-token "$@" &
  APIPID=$!
  GS_PIDS+=("$APIPID")
  for _ in $(seq 100); do [ -s "$API/port" ] && break; sleep 0.05; done
  PORT=$(cat "$API/port")
}
label() { printf '%s\n' "$1" >"$API/label"; }
# states CONFIG: the states PATCHed for CONFIG, in order ("pending success").
states() {
  python3 - "$API/patches" "$1" <<'PY'
import json, sys
out = []
for line in open(sys.argv[1]) if __import__("os").path.exists(sys.argv[1]) else []:
    l = json.loads(line)["metadata"]["labels"]
    if l.get("gpuslice.dev/mig.config.applied") == sys.argv[2]:
        out.append(l.get("nvidia.com/mig.config.state", "?"))
print(" ".join(out))
PY
}
# wait_state CONFIG: until CONFIG's last PATCHed state is success or failed.
wait_state() {
  local st=""
  for _ in $(seq 200); do
    st=$(states "$1")
    case "$st" in *success | *failed) echo "${st##* }"; return ;; esac
    sleep 0.05
  done
  echo "timeout ($st)"
}
# new_log: the manager's log lines since the mark (mark_log).
mark_log() { LOGFROM=$(($(wc -l <"$GS_TMP/mm.log") + 1)); }
new_log() { tail -n "+$LOGFROM" "$GS_TMP/mm.log"; }
# wait_log PATTERN: until the manager's new log lines match.
wait_log() {
  for _ in $(seq 200); do new_log | grep -Eq -- "$1" && return 0; sleep 0.05; done
  return 1
}

start_api
expect_exit 2 "no --node, no \$NODE_NAME, no --label-file" -- \
  env -u NODE_NAME "$GPUSLICE" k8s mig-manager --config "$CFG" --api-server "http://127.0.0.1:$PORT"
expect_exit 2 "outside a pod without --api-server" -- \
  env -u KUBERNETES_SERVICE_HOST "$GPUSLICE" k8s mig-manager --config "$CFG" --node node-a
expect_exit 0 "start from seven" -- gs apply -f "$CFG" -c seven

label four-and-three
before=$(state_sum)
NODE_NAME=node-a "$GPUSLICE" k8s mig-manager --config "$CFG" \
  --api-server "http://127.0.0.1:$PORT" --token-file "$GS_TMP/token" \
  --interval-ms 50 2>"$GS_TMP/mm.log" &
mm=$!
GS_PIDS+=("$mm")
[ "$(wait_state four-and-three)" = success ] && pass "the Node's label at start: success" ||
  fail "the Node's label at start: success" "$(cat "$API/patches" "$GS_TMP/mm.log")"
[ "$(states four-and-three)" = "pending success" ] && pass "PATCHed pending, then success" ||
  fail "PATCHed pending, then success" "$(states four-and-three)"
[ "$(state_sum)" != "$before" ] && pass "the layout changed" || fail "the layout changed"
expect_exit 0 "assert four-and-three" -- gs assert -f "$CFG" -c four-and-three
contains "$(grep PATCH "$API/requests" | sort -u)" \
  "^PATCH /api/v1/nodes/node-a application/merge-patch\+json$" "merge patches of node-a only"
contains "$(cat "$GS_TMP/mm.log")" "watching nvidia.com/mig.config of node node-a on http://127.0.0.1:$PORT" "the log names the node and server"

label balanced
[ "$(wait_state balanced)" = success ] && pass "a label change: success" ||
  fail "a label change: success" "$(cat "$API/patches" "$GS_TMP/mm.log")"
[ "$(states balanced)" = "pending success" ] && pass "again pending, then success" ||
  fail "again pending, then success" "$(states balanced)"
expect_exit 0 "assert balanced" -- gs assert -f "$CFG" -c balanced

before=$(state_sum)
label no-such-config
[ "$(wait_state no-such-config)" = failed ] && pass "an unknown config name: failed" ||
  fail "an unknown config name: failed" "$(cat "$API/patches")"
[ "$(states no-such-config)" = "pending failed" ] && pass "PATCHed pending, then failed" ||
  fail "PATCHed pending, then failed" "$(states no-such-config)"
contains "$(cat "$GS_TMP/mm.log")" "failed: .*no config 'no-such-config'" "the log says why"
[ "$(state_sum)" = "$before" ] && pass "the layout is unchanged" || fail "the layout is unchanged"

# trouble CASE SETUP PATTERN CONFIG RECOVER: with the server in trouble,
# a new label is not applied, the error is logged and the manager runs on;
# once the server answers, CONFIG is applied.
trouble() {
  local name=$1 setup=$2 pattern=$3 config=$4 recover=$5 before
  before=$(state_sum)
  : >"$API/patches"
  mark_log
  eval "$setup"
  label "$config"
  wait_log "$pattern" && pass "$name: the error is logged" ||
    fail "$name: the error is logged" "$(new_log)"
  sleep 0.3 # several checks
  [ "$(new_log | grep -c "applying config '$config'")" = 0 ] &&
    [ "$(state_sum)" = "$before" ] && pass "$name: nothing applied" ||
    fail "$name: nothing applied" "$(new_log)"
  kill -0 "$mm" 2>/dev/null && pass "$name: the manager runs on" ||
    fail "$name: the manager runs on"
  eval "$recover"
  [ "$(wait_state "$config")" = success ] && pass "$name: recovered, $config applied" ||
    fail "$name: recovered, $config applied" "$(new_log)"
  expect_exit 0 "$name: assert $config" -- gs assert -f "$CFG" -c "$config"
}
trouble "401" 'echo 401 >"$API/mode"' \
  "API server: GET http://127.0.0.1:$PORT/api/v1/nodes/node-a: HTTP 401: Unauthorized" \
  seven 'echo ok >"$API/mode"'
contains "$(new_log)" "API server answering again" "the recovery is logged"
n=$(new_log | grep -c "HTTP 401")
[ "$n" = 1 ] && pass "a lasting error is logged once" || fail "a lasting error is logged once" "$n times"
trouble "500" 'echo 500 >"$API/mode"' \
  "HTTP 500: etcdserver: request timed out" four-and-three 'echo ok >"$API/mode"'
trouble "a wrong token" 'printf "stale\n" >"$GS_TMP/token"' "HTTP 401" \
  balanced 'printf "the-token\n" >"$GS_TMP/token"'
trouble "unreachable" 'kill "$APIPID"; wait "$APIPID" 2>/dev/null' \
  "API server: GET http://127.0.0.1:$PORT/.*(onnect|refused)" seven 'start_api "$PORT"'

kill "$mm"
wait "$mm"
st=$?
[ "$st" -eq 0 ] && pass "the manager stops on SIGTERM" || fail "the manager stops on SIGTERM" "exit $st"
[ -n "${SHOW_LOG:-}" ] && cat "$GS_TMP/mm.log"
kill "$APIPID"
wait "$APIPID" 2>/dev/null
finish
