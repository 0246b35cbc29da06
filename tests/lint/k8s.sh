#!/usr/bin/env bash
# Offline checks of the Kubernetes manifests: every deploy/k8s/**/*.yaml. No cluster is
# needed or contacted. One PASS/FAIL line per file, then the checks that span files;
# exits 1 if any failed.
#
# Per file, two checkers:
# 1. tests/lint/k8s_check.py (its opening comment lists every check): YAML that parses
#    without duplicate keys; every field name, type and required field of the built-in
#    kinds against the Kubernetes API's own models (Debian's python3-kubernetes, API
#    1.22); the NetworkAttachmentDefinition's CNI JSON; references between objects
#    (volumes, ConfigMap and Secret keys, selectors, named ports, env vars, the Multus
#    network, the RDMA resource); and the rdmesh command lines: only the options of the
#    interface (the lists RDMESH_OPTS/RDMESH_REQUIRED there), the files they name inside
#    the mounts that provide them.
# 2. kubectl apply --dry-run=client --validate=false: kubectl itself reads the file,
#    maps each apiVersion/kind to a resource and builds the request it would send. It
#    needs an API server for discovery even for a client-side dry run (with an
#    unreachable server in the kubeconfig both kubectl 1.20 and 1.32 fail: "unable to
#    recognize"), so k8s_check.py serves a stand-in on 127.0.0.1 that answers discovery
#    for the kinds used here (core v1, apps/v1, policy/v1 and Multus'
#    k8s.cni.cncf.io/v1) and "not found" for every object.
# What is not validated: kubectl's own schema validation (--validate=true) needs the
# server's OpenAPI document, which is not here; enum values and formats beyond those
# k8s_check.py lists; admission (Pod Security, quotas, webhooks); whether the cluster
# has the CRD, the device plugin's resource, the CNI plugins, the image.
#
# Last, if build/rdmesh exists and knows pods (`rdmesh help` mentions --join), `rdmesh
# orch --check` validates the ConfigMap's rack.yaml and chain.yaml as the orchestrator
# would; without such a binary that line is a SKIP.
#
# Installs what it misses with apt-get (Debian): kubernetes-client (kubectl),
# python3-yaml, python3-kubernetes.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
PY=/usr/bin/python3 # Debian's python, where apt installs python3-kubernetes
[ -x "$PY" ] || PY=python3
RDMESH=${RDMESH:-build/rdmesh}

need() {
	apt-get install -y "$@" >/dev/null 2>&1 ||
		{ apt-get update >/dev/null 2>&1 && apt-get install -y "$@" >/dev/null 2>&1; }
}
if ! command -v kubectl >/dev/null 2>&1; then
	need kubernetes-client || { echo "FAIL k8s: no kubectl, and apt-get install kubernetes-client failed"; exit 1; }
fi
if ! "$PY" -c 'import yaml, kubernetes.client.models' >/dev/null 2>&1; then
	need python3-yaml python3-kubernetes ||
		{ echo "FAIL k8s: $PY cannot import yaml and kubernetes, and apt-get install python3-yaml python3-kubernetes failed"; exit 1; }
fi

mapfile -t files < <(find deploy/k8s -name '*.yaml' | sort)
[ ${#files[@]} -gt 0 ] || { echo "FAIL k8s: no manifest under deploy/k8s"; exit 1; }
tmp=$(mktemp -d /tmp/rdm-k8s.XXXXXX)
srv=
trap '[ -n "$srv" ] && kill "$srv" 2>/dev/null; rm -rf "$tmp"' EXIT

# The stand-in API server (discovery only), and a kubeconfig pointing at it.
"$PY" tests/lint/k8s_check.py serve "$tmp/port" 2>"$tmp/serve.log" &
srv=$!
for _ in $(seq 50); do
	[ -s "$tmp/port" ] && break
	sleep 0.1
done
[ -s "$tmp/port" ] || { echo "FAIL k8s: the stand-in API server did not start: $(cat "$tmp/serve.log")"; exit 1; }
cat >"$tmp/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: offline, cluster: {server: "http://127.0.0.1:$(cat "$tmp/port")"}}]
contexts: [{name: offline, context: {cluster: offline, user: nobody}}]
current-context: offline
users: [{name: nobody, user: {}}]
EOF
kver=$(kubectl version --client 2>/dev/null | grep -o 'v[0-9]*\.[0-9]*\.[0-9]*' | head -1)
echo "k8s: ${#files[@]} manifests; kubectl ${kver:-?} (client-side dry run, discovery from a stand-in on 127.0.0.1); field schema: python3-kubernetes $("$PY" -c 'import kubernetes; print(kubernetes.__version__)' 2>/dev/null)"

if ! "$PY" tests/lint/k8s_check.py check . "${files[@]}" >"$tmp/check" 2>"$tmp/check.err"; then
	echo "FAIL k8s: k8s_check.py: $(tail -3 "$tmp/check.err")"
	exit 1
fi
pass=0 fail=0 skip=0
for f in "${files[@]}"; do
	line=$(awk -F'\t' -v f="$f" '$1 == f' "$tmp/check")
	st=$(cut -f2 <<<"$line")
	what=$(cut -f3- <<<"$line")
	if kout=$(KUBECONFIG="$tmp/kubeconfig" timeout 60 kubectl apply --dry-run=client --validate=false \
		--cache-dir "$tmp/cache" -f "$f" 2>&1); then
		kst=ok
		kn=$(grep -c '(dry run)' <<<"$kout")
		# kubectl must have seen every object k8s_check.py did
		[ "$st" = ok ] && [ "$kn" -ne $(($(grep -o ', ' <<<"$what" | wc -l) + 1)) ] &&
			kst=fail kout="it created $kn objects, not those of $what: $kout"
	else
		kst=fail
	fi
	if [ "$st" = ok ] && [ "$kst" = ok ]; then
		echo "PASS $f: $what (kubectl dry run: $kn created)"
		pass=$((pass + 1))
	else
		[ "$st" = ok ] || echo "FAIL $f: $what"
		[ "$kst" = ok ] || echo "FAIL $f: kubectl apply --dry-run=client: $(tr '\n' ' ' <<<"$kout" | cut -c1-400)"
		fail=$((fail + 1))
	fi
done
while IFS=$'\t' read -r _ st what; do
	if [ "$st" = ok ]; then
		echo "PASS $what"
		pass=$((pass + 1))
	else
		echo "FAIL $what"
		fail=$((fail + 1))
	fi
done < <(awk -F'\t' '$1 == "-"' "$tmp/check")

# rdmesh's own check of the ConfigMap's rack.yaml and chain.yaml.
if [ -x "$RDMESH" ] && { "$RDMESH" orch --help 2>&1 | grep -q -- '--pod-cert-s' ||
	"$RDMESH" help 2>&1 | grep -q -- '--join'; }; then
	mkdir -p "$tmp/config"
	"$PY" -c 'import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d.get("kind") == "ConfigMap" and d["metadata"]["name"] == "rdmesh-config":
        for k, v in d["data"].items():
            open(sys.argv[2] + "/" + k, "w").write(v)' deploy/k8s/10-config.yaml "$tmp/config"
	if out=$(timeout 30 "$RDMESH" orch --check --rack "$tmp/config/rack.yaml" --chain "$tmp/config/chain.yaml" 2>&1); then
		echo "PASS rdmesh orch --check: the ConfigMap's rack.yaml ($(grep -c '^  - name:' "$tmp/config/rack.yaml") hosts) and chain.yaml ($(grep -c '^  - name:' "$tmp/config/chain.yaml") pod-backed stages) load"
		pass=$((pass + 1))
	else
		echo "FAIL rdmesh orch --check of the ConfigMap's rack.yaml and chain.yaml: $(tail -3 <<<"$out" | tr '\n' ' ')"
		fail=$((fail + 1))
	fi
else
	echo "SKIP rdmesh orch --check: no $RDMESH that knows pod-backed stages (make build/rdmesh)"
	skip=$((skip + 1))
fi

echo "k8s: $pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
