# deploy/gpuslice-device-plugin.yaml: a DaemonSet that parses as YAML, whose
# first container runs `gpuslice k8s device-plugin` with options the CLI takes
# (the mig-manager's below, which reads its Node from the API server),
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

# The mig-manager container: its options are the CLI's, it reads its own
# Node (--node from the downward API's NODE_NAME) from the API server under
# the gpuslice service account, which the RBAC file lets get and patch
# nodes; no kubectl sidecar any more. Its command, with NODE_NAME expanded
# as the kubelet does, is run here against the test-only stand-in API
# server (plus --api-server and --token-file, since there is no pod).
mm=$("$PY" - "$M" "$GS_SOURCE_DIR/deploy/gpuslice-rbac.yaml" <<'PY'
import sys, yaml
d = yaml.safe_load(open(sys.argv[1]))
spec = d["spec"]["template"]["spec"]
c = {c["name"]: c for c in spec["containers"]}
m = c["mig-manager"]
assert "node-labels" not in c, list(c)
assert spec["serviceAccountName"] == "gpuslice"
env = {e["name"]: e for e in m["env"]}
assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName", env
cmd = m["command"]
assert cmd[cmd.index("--node") + 1] == "$(NODE_NAME)", cmd
assert "--label-file" not in cmd, cmd
docs = list(yaml.safe_load_all(open(sys.argv[2])))
sa = [x for x in docs if x["kind"] == "ServiceAccount"][0]["metadata"]["name"]
role = [x for x in docs if x["kind"] == "ClusterRole"][0]
bind = [x for x in docs if x["kind"] == "ClusterRoleBinding"][0]
assert sa == "gpuslice" and bind["roleRef"]["name"] == role["metadata"]["name"]
assert {"kind": "ServiceAccount", "name": sa, "namespace": "kube-system"} in bind["subjects"]
rule = [r for r in role["rules"] if "nodes" in r["resources"]][0]
assert {"get", "patch"} <= set(rule["verbs"]), rule
print(" ".join(cmd))
PY
)
[ $? -eq 0 ] && pass "mig-manager: --node from the downward API, RBAC get/patch nodes, no sidecar" ||
  fail "the mig-manager container" "$mm"
contains "$mm" "^gpuslice k8s mig-manager " "a container runs the mig-manager"
expect_exit 0 "its options are the CLI's" -- gs k8s mig-manager ${mm#gpuslice k8s mig-manager } --help
(
  . "$(dirname "$0")/host_env.sh"
  A="$GS_TMP/api"
  mkdir -p "$A"
  echo seven >"$A/label"
  echo tok >"$GS_TMP/token"
  python3 "$(dirname "$0")/k8s_api_standin.py" "$A" node-a tok &
  api=$!
  for _ in $(seq 100); do [ -s "$A/port" ] && break; sleep 0.05; done
  args=${mm#gpuslice k8s mig-manager }
  args=${args//\$(NODE_NAME)/node-a}
  args=${args//\/etc\/gpuslice\/config.yaml/$CFG}
  # shellcheck disable=SC2086 # the manifest's words
  "$GPUSLICE" k8s mig-manager $args --api-server "http://127.0.0.1:$(cat "$A/port")" \
    --token-file "$GS_TMP/token" --interval-ms 50 2>"$GS_TMP/mm.log" &
  m=$!
  for _ in $(seq 200); do grep -q '"success"' "$A/patches" 2>/dev/null && break; sleep 0.05; done
  kill "$m" "$api"
  wait "$m" "$api" 2>/dev/null
  grep -q '"gpuslice.dev/mig.config.applied": "seven", "nvidia.com/mig.config.state": "success"' \
    "$A/patches" 2>/dev/null || { cat "$GS_TMP/mm.log" "$A/requests"; exit 1; }
)
[ $? -eq 0 ] && pass "the manifest's command applies node-a's label and PATCHes success" ||
  fail "the manifest's command applies node-a's label and PATCHes success"

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
