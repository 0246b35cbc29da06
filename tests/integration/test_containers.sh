#!/usr/bin/env bash
# rdmesh in containers: the image (deploy/image/build.sh, cached by content) runs the
# demo chain (configs/chain.yaml: edge with identity, dpi with the policy, log with the
# flow log) with the orchestrator in a container and every replica in a container of its
# own (a rack node each, its own network namespace and address on podman's bridge;
# podman with runc and explicit limits, as this machine needs). Checks: the image runs as
# orch and node (ctl from the host); every replica comes up in its own container; the
# traffic arrives whole (every packet delivered or denied by the policy, 0 lost); a
# container stopped, and one killed, is declared dead and its replica runs in another.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/rack.sh # until_status, stat
BUILD=${BUILD:-build}
RDMESH=$PWD/$BUILD/rdmesh
work=$(mktemp -d /tmp/rdm-ctr.XXXXXX)
NET=10.88.77 # on podman's default bridge (10.88.0.0/16), clear of its dynamic leases
C=rdm$$
PACKETS=30000
trap 'podman rm -f -t 0 $(podman ps -aq --filter "name=^$C-") >/dev/null 2>&1; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

pass() { echo "PASS $*"; }
# wait_ctr NAME TEXT SECS: until container NAME's output says TEXT (a grep pattern).
wait_ctr() {
	local t=0
	until podman logs "$C-$1" 2>&1 | grep -q -- "$2"; do
		[ $t -ge $(($3 * 5)) ] && return 1
		sleep 0.2
		t=$((t + 1))
	done
}
fail() { echo "FAIL $*"; }

t0=$(date +%s)
if ! deploy/image/build.sh --rdmesh "$RDMESH" >"$work/image.log" 2>&1; then
	fail "image: $(tail -3 "$work/image.log")"
	exit 0
fi
IMAGE=localhost/rdmesh:$(deploy/image/build.sh --rdmesh "$RDMESH" --print-tag)
pass "image $IMAGE ($(grep -o 'size.*' "$work/image.log" | head -1 | cut -c1-60); $(($(date +%s) - t0)) s: $(grep -q cached "$work/image.log" && echo cached || echo built))"

# The configs' rack, on container addresses: host N at $NET.N (N = 1..4), the
# orchestrator at $NET.10.
sed -e "s/10\.77\.0\.\([0-9]*\)/$NET.\1/g" -e "s/listen: $NET.1:7000/listen: $NET.10:7000/" \
	configs/rack.yaml >"$work/rack.yaml"
# The demo chain with its files at absolute paths (each container mounts them at the same
# path), a count the egress stops at, and the flow log in the shared work directory.
awk -v d="$PWD" -v w="$work" -v n=$PACKETS '
	{ sub(/directory: directory.yaml/, "directory: " d "/configs/directory.yaml")
	  sub(/file: policy.yaml/, "file: " d "/configs/policy.yaml")
	  sub(/file: ..\/build\/demo\/flows.json/, "file: " w "/flows.json")
	  sub(/count: 200000/, "count: " n); sub(/rate: 10000/, "rate: 5000")
	  sub(/count: 0 /, "count: " n " "); print }' configs/chain.yaml >"$work/chain.yaml"
"$RDMESH" ctl certs --out "$work/certs" orch ctl host1 host2 host3 host4 >/dev/null || { fail "certificates"; exit 1; }
ORCH=$NET.10:7000
ctl() { "$RDMESH" ctl --orch "$ORCH" --certs "$work/certs" "$@"; }
# run NAME IP ARGS...: a container of the image, detached.
run() {
	local name=$1 ip=$2
	shift 2
	podman run -d --name "$C-$name" --runtime runc --ulimit nofile=4096:4096 --ulimit nproc=4096:4096 \
		--ip "$ip" -v "$work:$work" -v "$PWD/configs:$PWD/configs:ro" "$IMAGE" "$@" >/dev/null
}
run orch $NET.10 orch --rack "$work/rack.yaml" --chain "$work/chain.yaml" --certs "$work/certs" \
	--state "$work/orch.state" --listen "$ORCH" --dead-ms 3000 || { fail "orchestrator container"; exit 1; }
for i in 1 2 3 4; do
	run "host$i" "$NET.$i" node --orch "$ORCH" --name "host$i" --certs "$work/certs" --dir "$work/host$i" ||
		fail "node container host$i"
done
ips=$(for n in orch host1 host2 host3 host4; do podman inspect -f '{{.NetworkSettings.IPAddress}}' "$C-$n"; done | tr '\n' ' ')
up='($5 == "running" || $5 == "done") && $1 ~ /-[0-9]+$/ { r[$1] = $3 } END { exit !(r["edge-1"] && r["dpi-1"] && r["log-1"]) }'
if until_status 30 "$up"; then
	pass "the demo chain in containers: orchestrator and 4 nodes each in its own container ($ips); $(awk '$1 ~ /^(edge|dpi|log)-1$/ { printf "%s on %s (%s); ", $1, $3, $4 }' "$work/status")"
else
	fail "containers: $(cat "$work/status" 2>/dev/null | head -20); orch: $(podman logs "$C-orch" 2>&1 | tail -5)"
fi
loghost=$(awk '$1 == "log-1" { print $3 }' "$work/status")
dpihost=$(awk '$1 == "dpi-1" { print $3 }' "$work/status")
wait_ctr "$loghost" "log-1: done (counters in" 60 # logged once its counters are written
# dpi's counters (what the policy denied) come when its node stops: podman stop (SIGTERM).
podman stop -t 30 "$C-$dpihost" >/dev/null 2>&1
eg=$work/$loghost/log-1.stats
dp=$work/$dpihost/dpi-1.stats
delivered=$(stat "$eg" egress_packets)
denied=$(($(stat "$dp" stage_policy_denied) + $(stat "$dp" stage_policy_rejected)))
if [ "$(stat "$eg" egress_lost)" = 0 ] && [ $((delivered + denied)) = $PACKETS ]; then
	pass "traffic end to end between containers: $PACKETS sent, $delivered delivered at the egress ($loghost), $denied denied by the policy in dpi's container ($dpihost), $(stat "$eg" egress_lost) lost"
else
	fail "egress: $(grep -E 'egress_(packets|lost)' "$eg" 2>/dev/null | tr '\n' ' '); policy denied '$denied' ($dp)"
fi
# A container gone (stopped above, then one killed): its node is declared dead and its
# replica placed in another container.
if wait_ctr orch "$dpihost: silent for" 20 &&
	until_status 20 '$1 == "dpi-1" && $3 != "'"$dpihost"'" && ($5 == "running" || $5 == "done") { ok = 1 } END { exit !ok }'; then
	next=$(awk '$1 == "dpi-1" { print $3 }' "$work/status")
	podman kill "$C-$next" >/dev/null 2>&1
	if wait_ctr orch "$next: silent for" 20 &&
		until_status 20 '$1 == "dpi-1" && $3 != "'"$next"'" && $3 != "'"$dpihost"'" && ($5 == "running" || $5 == "done") { ok = 1 } END { exit !ok }'; then
		pass "containers gone: $dpihost's stopped, then $next's killed (podman kill): each declared dead, dpi-1 runs in $(awk '$1 == "dpi-1" { print $3 }' "$work/status")'s container"
	else
		fail "killed container $next: $(podman logs "$C-orch" 2>&1 | grep -i "$next" | tail -3); $(head -20 "$work/status")"
	fi
else
	fail "stopped container $dpihost: $(podman logs "$C-orch" 2>&1 | grep -i "$dpihost" | tail -3); $(head -20 "$work/status")"
fi
exit 0
