# Killing `gpuslice apply` at random points never leaves corrupt or mixed
# state: afterwards the layout is the old one or the new one.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/host_env.sh"
ROUNDS=${GS_KILL_ROUNDS:-200}
# Stretch each step of the host backend's commit so that kills land inside
# it, not only before or after (a test hook read by the CLI).
export GPUSLICE_TEST_STEP_DELAY_US=${GPUSLICE_TEST_STEP_DELAY_US:-4000}

expect_exit 0 "start from seven" -- gs apply -f "$CFG" -c seven
bad=0 landed=0
for i in $(seq "$ROUNDS"); do
  if [ $((i % 2)) -eq 0 ]; then target=seven; else target=balanced; fi
  gs apply -f "$CFG" -c "$target" >/dev/null 2>&1 &
  pid=$!
  sleep "0.0$((RANDOM % 10))$((RANDOM % 10))"
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  [ $? -eq 137 ] && landed=$((landed + 1)) # killed, not finished
  if ! gs list >/dev/null 2>"$GS_TMP/err"; then
    bad=$((bad + 1)); echo "round $i: list failed: $(cat "$GS_TMP/err")"; continue
  fi
  matches=0
  for c in seven balanced; do
    gs assert -f "$CFG" -c "$c" >/dev/null 2>&1 && matches=$((matches + 1))
  done
  if [ "$matches" -ne 1 ]; then
    bad=$((bad + 1)); echo "round $i: layout is neither old nor new:"; gs list
  fi
done
echo "$ROUNDS rounds, $landed kills landed while apply ran"
[ "$bad" -eq 0 ] && pass "no corrupt or mixed state in $ROUNDS rounds" || fail "state was corrupt or mixed $bad times"
[ "$landed" -gt $((ROUNDS / 4)) ] && pass "most kills landed mid-apply ($landed)" || fail "too few kills landed ($landed)"
ls "$GPUSLICE_STATE_DIR" | grep -q '\.tmp' && stale=yes || stale=no
expect_exit 0 "a clean apply afterwards" -- gs apply -f "$CFG" -c seven
ls "$GPUSLICE_STATE_DIR" | grep -q '\.tmp' && fail "temporary files left after a clean apply" || pass "no temporary files left (stale before: $stale)"
finish
