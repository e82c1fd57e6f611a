# deploy/gpuslice-device-plugin.yaml: a DaemonSet that parses as YAML, whose
# container runs `gpuslice k8s device-plugin` with options the CLI takes,
# and mounts every host path the plugin writes (its sockets' directory, the
# CDI directory, the state directory). No cluster here: the manifest is
# checked, not applied.
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
"$PY" -c 'import yaml' 2>/dev/null || { echo "not ok - python3-yaml is needed"; exit 1; }
M="$GS_SOURCE_DIR/deploy/gpuslice-device-plugin.yaml"
facts=$("$PY" - "$M" <<'PY'
import sys, yaml
d = yaml.safe_load(open(sys.argv[1]))
assert d["kind"] == "DaemonSet", d["kind"]
spec = d["spec"]["template"]["spec"]
c = spec["containers"][0]
mounts = {m["mountPath"] for m in c["volumeMounts"]}
host = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"]}
print(" ".join(c["command"]))
print(" ".join(sorted(mounts)))
print(" ".join(sorted(host.values())))
print(c["securityContext"].get("privileged"))
PY
)
[ $? -eq 0 ] && pass "the manifest parses as a DaemonSet" || fail "the manifest parses" "$facts"
cmd=$(sed -n 1p <<<"$facts")
contains "$cmd" "^gpuslice k8s device-plugin " "its container runs the device plugin"
# Every option it passes is one the CLI takes: run them with --help.
args=$(sed 's/^gpuslice k8s device-plugin //' <<<"$cmd")
expect_exit 0 "the manifest's options are the CLI's" -- gs k8s device-plugin $args --help
for p in /var/lib/kubelet/device-plugins /var/run/cdi /var/lib/gpuslice; do
  contains "$(sed -n 2p <<<"$facts")" "(^| )$p( |$)" "mounted in the container: $p"
  contains "$(sed -n 3p <<<"$facts")" "(^| )$p( |$)" "from the host: $p"
done
contains "$(sed -n 4p <<<"$facts")" "True" "privileged (instances, cgroups, /dev)"
echo "$GS_PASSED passed, $GS_FAILED failed"
[ "$GS_FAILED" -eq 0 ]
