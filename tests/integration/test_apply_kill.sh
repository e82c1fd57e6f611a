# Killing `gpuslice apply` at random points never leaves corrupt or mixed
# state: afterwards the layout is the old one or the new one.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/host_env.sh"
ROUNDS=${GS_KILL_ROUNDS:-200}
# Stretch each step of the host backend's commit so that kills land inside
# it, not only before or after (a test hook read by the CLI).
export GPUSLICE_TEST_STEP_DELAY_US=${GPUSLICE_TEST_STEP_DELAY_US:-4000}

expect_exit 0 "start from seven" -- gs apply -f "$CFG" -c seven
bad=0 landed=0 finished=0 killed_old=0 killed_new=0 other=0
for i in $(seq "$ROUNDS"); do
  if [ $((i % 2)) -eq 0 ]; then target=seven old=balanced; else target=balanced old=seven; fi
  # The binary itself in the background, not the gs function: $! of a
  # backgrounded function is a subshell, and killing it leaves apply running.
  "$GPUSLICE" apply -f "$CFG" -c "$target" >/dev/null 2>&1 &
  pid=$!
  sleep "0.0$((RANDOM % 10))$((RANDOM % 10))"
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  st=$?
  case $st in
  137) landed=$((landed + 1)) ;;     # killed, not finished
  0) finished=$((finished + 1)) ;;   # done before the kill
  *) other=$((other + 1)); echo "round $i: apply exited $st" ;;
  esac
  # A corrupt file fails every later round too: the first one ends the loop.
  if ! gs list >/dev/null 2>"$GS_TMP/err"; then
    bad=$((bad + 1)); echo "round $i: list failed: $(cat "$GS_TMP/err")"; break
  fi
  now=
  for c in seven balanced; do
    gs assert -f "$CFG" -c "$c" >/dev/null 2>&1 && now="$now$c"
  done
  case $now in
  "$old") [ "$st" = 137 ] && killed_old=$((killed_old + 1)) ;;
  "$target") [ "$st" = 137 ] && killed_new=$((killed_new + 1)) ;;
  *) bad=$((bad + 1)); echo "round $i: layout is neither old nor new:"; gs list; break ;;
  esac
done
echo "$i rounds: $landed killed ($killed_old left the old layout," \
  "$killed_new the new one), $finished finished first, $other other exits"
[ "$bad" -eq 0 ] && pass "no corrupt or mixed state in $ROUNDS rounds" || fail "state was corrupt or mixed after round $i"
[ "$other" -eq 0 ] && pass "apply either finished or was killed" || fail "apply exited otherwise $other times"
# The kills must really land while apply runs: some rounds killed (exit
# 137), and among those some before its commit and some after, so the
# window between them was hit too.
[ "$landed" -gt $((i / 4)) ] && pass "most kills landed mid-apply ($landed)" || fail "too few kills landed ($landed of $i)"
[ "$killed_old" -gt 0 ] && [ "$killed_new" -gt 0 ] &&
  pass "kills landed both before and after apply's commit" ||
  fail "kills did not span the apply (killed with the old layout $killed_old, with the new $killed_new)"
ls "$GPUSLICE_STATE_DIR" | grep -q '\.tmp' && stale=yes || stale=no
expect_exit 0 "a clean apply afterwards" -- gs apply -f "$CFG" -c seven
ls "$GPUSLICE_STATE_DIR" | grep -q '\.tmp' && fail "temporary files left after a clean apply" || pass "no temporary files left (stale before: $stale)"
finish
