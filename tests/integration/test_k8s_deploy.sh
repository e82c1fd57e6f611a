# deploy/gpuslice-device-plugin.yaml: a DaemonSet that parses as YAML, whose
# first container runs `gpuslice k8s device-plugin` with options the CLI takes
# (the mig-manager's and its kubectl label copier's below),
# and mounts every host path the plugin writes (its sockets' directory, the
# CDI directory, the state directory), and whose metrics container's port
# agrees with the pod's annotations and the ServiceMonitor. No cluster
# here: the manifests are checked, not applied.
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
host = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"]
        if "hostPath" in v}
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

# The mig-manager container: its options are the CLI's, its label files
# are shared with the node-labels container, which copies the label from
# the API server and the state back (run here with a stand-in kubectl).
mm=$("$PY" - "$M" "$GS_TMP" <<'PY'
import sys, yaml
d = yaml.safe_load(open(sys.argv[1]))
spec = d["spec"]["template"]["spec"]
c = {c["name"]: c for c in spec["containers"]}
m, n = c["mig-manager"], c["node-labels"]
assert spec["serviceAccountName"] == "gpuslice"
mm_mounts = {v["name"]: v["mountPath"] for v in m["volumeMounts"]}
nl_mounts = {v["name"]: v["mountPath"] for v in n["volumeMounts"]}
assert mm_mounts["labels"] == nl_mounts["labels"], (mm_mounts, nl_mounts)
open(sys.argv[2] + "/sidecar.sh", "w").write(
    n["args"][0].replace(nl_mounts["labels"], sys.argv[2] + "/labels-dir"))
print(" ".join(m["command"]))
PY
)
[ $? -eq 0 ] && pass "mig-manager and node-labels share the label files" || fail "the mig-manager container" "$mm"
contains "$mm" "^gpuslice k8s mig-manager " "a container runs the mig-manager"
expect_exit 0 "its options are the CLI's" -- gs k8s mig-manager ${mm#gpuslice k8s mig-manager } --help
mkdir -p "$GS_TMP/bin" "$GS_TMP/labels-dir"
cat >"$GS_TMP/bin/kubectl" <<SH
#!/bin/sh
case "\$1" in
get) echo "\$*" >>"$GS_TMP/kubectl.log"; printf %s "\$(cat "$GS_TMP/node-label")" ;;
label) echo "\$*" >>"$GS_TMP/kubectl.log" ;;
esac
SH
printf '#!/bin/sh\nkill $PPID\n' >"$GS_TMP/bin/sleep"
chmod +x "$GS_TMP/bin/kubectl" "$GS_TMP/bin/sleep"
echo all-1g.10gb >"$GS_TMP/node-label"
printf 'gpuslice.dev/mig.config.applied=all-1g.10gb\nnvidia.com/mig.config.state=success\n' \
  >"$GS_TMP/labels-dir/labels.state"
(NODE_NAME=node-a PATH="$GS_TMP/bin:$PATH" sh "$GS_TMP/sidecar.sh"; true) 2>/dev/null
contains "$(cat "$GS_TMP/labels-dir/labels")" "^nvidia.com/mig.config=all-1g.10gb$" "the node's label lands in the label file"
contains "$(cat "$GS_TMP/kubectl.log")" "^get node node-a " "read from this node"
contains "$(cat "$GS_TMP/kubectl.log")" "^label node node-a --overwrite nvidia.com/mig.config.state=success$" "the state goes back to the node"
: >"$GS_TMP/node-label"
(NODE_NAME=node-a PATH="$GS_TMP/bin:$PATH" sh "$GS_TMP/sidecar.sh"; true) 2>/dev/null
[ ! -s "$GS_TMP/labels-dir/labels" ] && pass "a removed label empties the file" || fail "a removed label empties the file"

# The metrics container: its options are the CLI's, the port it listens on
# is the one the container, the pod's prometheus.io annotations, its
# readiness probe and the ServiceMonitor's Service name; run with the
# manifest's command (on a free loopback port), its probe's path answers.
mx=$("$PY" - "$M" "$GS_SOURCE_DIR/deploy/gpuslice-metrics-servicemonitor.yaml" <<'PY'
import sys, yaml
d = yaml.safe_load(open(sys.argv[1]))
tpl = d["spec"]["template"]
spec = tpl["spec"]
c = {c["name"]: c for c in spec["containers"]}["metrics"]
cmd = c["command"]
port = int(cmd[cmd.index("--listen") + 1].rsplit(":", 1)[1])
cport = c["ports"][0]
assert cport["containerPort"] == port, (cport, port)
ann = tpl["metadata"]["annotations"]
assert ann["prometheus.io/scrape"] == "true" and int(ann["prometheus.io/port"]) == port, ann
probe = c["readinessProbe"]["httpGet"]
assert probe["port"] == cport["name"], probe
mounts = {m["mountPath"] for m in c["volumeMounts"]}
assert "/var/lib/gpuslice" in mounts, mounts
assert spec["hostPID"] is True
svc, sm = list(yaml.safe_load_all(open(sys.argv[2])))
assert svc["kind"] == "Service" and sm["kind"] == "ServiceMonitor"
assert svc["spec"]["selector"].items() <= tpl["metadata"]["labels"].items(), svc["spec"]["selector"]
sport = svc["spec"]["ports"][0]
assert sport["targetPort"] == cport["name"] and sport["port"] == port, sport
assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
assert sm["spec"]["endpoints"][0]["port"] == sport["name"]
assert sm["spec"]["endpoints"][0]["path"] == probe["path"]
print(" ".join(cmd))
print(probe["path"])
PY
)
[ $? -eq 0 ] && pass "metrics: one port in the container, annotations, probe, Service and ServiceMonitor" ||
  fail "metrics: the ports and names agree" "$mx"
mcmd=$(sed -n 1p <<<"$mx")
contains "$mcmd" "^gpuslice k8s metrics " "a container runs the metrics exporter"
expect_exit 0 "its options are the CLI's" -- gs ${mcmd#gpuslice } --help
margs=$(sed 's/--listen [^ ]*/--listen 127.0.0.1:0/' <<<"${mcmd#gpuslice }")
"$GPUSLICE" $margs 2>"$GS_TMP/metrics.log" &
mpid=$!
GS_PIDS+=("$mpid")
url=
for _ in $(seq 100); do
  url=$(sed -n 's|.*serving \(http://[^ ]*\)/metrics.*|\1|p' "$GS_TMP/metrics.log")
  [ -n "$url" ] && break
  sleep 0.1
done
st=$(curl -s -o /dev/null -w '%{http_code}' "$url$(sed -n 2p <<<"$mx")")
[ "$st" = 200 ] && pass "the manifest's metrics command answers its probe's path" ||
  fail "the metrics command answers its probe" "status $st" "$(cat "$GS_TMP/metrics.log")"
kill "$mpid"
wait "$mpid"
echo "$GS_PASSED passed, $GS_FAILED failed"
[ "$GS_FAILED" -eq 0 ]
