# Planning against catalog models (--gpu): no state, no hardware needed.
. "$(dirname "$0")/lib.sh"

# nvidia-smi fails this request in some orders; any order must work here.
expect_exit 0 "create --dry-run a100-40gb 1g.5gb 1g.5gb 2g.10gb 3g.20gb" -- \
  gs create --dry-run --gpu a100-40gb 1g.5gb 1g.5gb 2g.10gb 3g.20gb
contains "$OUT" "create +3g\.20gb at [04]:4" "the plan places the 3g.20gb"
contains "$OUT" "4 created" "four instances planned"
for order in "19,19,14,9" "9,19,14,19" "14,9,19,19"; do
  expect_exit 0 "order $order by ID fits" -- gs create --dry-run --gpu a100-40gb "$order"
done
expect_exit 0 "MIG-prefixed names are accepted" -- \
  gs create --dry-run --gpu h100-80gb "MIG 1g.10gb" "MIG 3g.40gb"
expect_exit 0 "explicit start" -- gs create --dry-run --gpu h100-80gb 3g.40gb:4
contains "$OUT" "3g\.40gb at 4:4" "the explicit start is kept"
expect_exit 0 "CI-qualified profile" -- gs create --dry-run --gpu h200 1c.3g.71gb
contains "$OUT" "1c\.3g\.71gb" "the compute instance is named"
expect_exit 0 "--ci 1c,1c,1c in a 3g" -- gs create --dry-run --gpu a100-80gb 3g.40gb --ci 1c,1c,1c

# Bad input: exit 2 for input errors, 1 for impossible layouts.
expect_exit 2 "unknown profile" -- gs create --dry-run --gpu a100-40gb 1g.6gb
contains "$ERR" "did you mean '1g\.5gb'" "the closest name is suggested"
expect_exit 2 "illegal start" -- gs create --dry-run --gpu a100-40gb 3g.20gb:2
contains "$ERR" "cannot start at slice 2: starts are 0,4" "legal starts are listed"
expect_exit 1 "eight 1g on a 7-slice GPU" -- gs create --dry-run --gpu a100-40gb 19,19,19,19,19,19,19,19
contains "$ERR" "at most 7" "the maximum is named"
expect_exit 1 "7g beside 1g" -- gs create --dry-run --gpu a100-40gb 7g.40gb 1g.5gb
contains "$ERR" "compute slices" "the compute budget is named"
expect_exit 1 "overlapping explicit starts" -- gs create --dry-run --gpu a100-40gb 4g.20gb:0 2g.10gb:2
contains "$ERR" "overlaps" "the overlap is named"
expect_exit 2 "unknown model" -- gs create --dry-run --gpu a100 1g.5gb
contains "$ERR" "a100-40gb" "a close model is suggested"
expect_exit 2 "--gpu without --dry-run" -- gs create --gpu a100-40gb 1g.5gb
expect_exit 2 "no profile" -- gs create --dry-run --gpu a100-40gb
expect_exit 2 "unknown verb" -- gs frobnicate

# profiles: every model answers, as nvidia-smi mig -lgip/-lgipp would.
for m in a30 a100-40gb a100-80gb h100-80gb h100-94gb h200 gh200 b200; do
  expect_exit 0 "profiles --gpu $m" -- gs profiles --gpu "$m"
done
expect_exit 0 "profiles --gpu h200 --json" -- gs --json profiles --gpu h200
n=$(json_get "$OUT" 'len(d["devices"][0]["profiles"])')
[ "$n" = 7 ] && pass "h200 has 7 GI profiles" || fail "h200 has 7 GI profiles" "got $n"
sms=$(json_get "$OUT" '[p["sms"] for p in d["devices"][0]["profiles"]]')
[ "$sms" = "[16, 16, 26, 32, 60, 64, 132]" ] && pass "h200 SMs per profile" || fail "h200 SMs" "$sms"
expect_exit 0 "profiles --ci" -- gs profiles --gpu a30 --ci
contains "$OUT" "2c \(ID 1\): 1 @ \{0\}" "CI profiles of the A30's 2g"

# apply --dry-run against a model, from a mig-parted file.
cfg="$GS_SOURCE_DIR/tests/data/configs/h100-examples.yaml"
if [ -f "$cfg" ]; then
  expect_exit 0 "apply --dry-run --gpu h100-80gb all-balanced" -- \
    gs apply --dry-run --gpu h100-80gb -f "$cfg" -c all-balanced
  expect_exit 2 "apply a missing config name" -- \
    gs apply --dry-run --gpu h100-80gb -f "$cfg" -c no-such-config
  contains "$ERR" "all-balanced" "the names in the file are listed"
fi
finish
