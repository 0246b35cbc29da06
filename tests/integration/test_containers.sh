#!/usr/bin/env bash
# rdmesh in containers: the image (deploy/image/build.sh, cached by content) runs the
# demo chain (configs/chain.yaml: edge with identity, dpi with the policy, log with the
# flow log) with the orchestrator in a container and every replica in a container of its
# own (a rack node each, its own network namespace and address on podman's bridge;
# podman with runc and explicit limits, as this machine needs). Checks: the image runs as
# orch and node (ctl from the host); every replica comes up in its own container; the
# traffic arrives whole (every packet delivered or denied by the policy, 0 lost); a
# container stopped, and one killed, is declared dead and its replica runs in another.
# Pods (dpi is pod-backed beside its host replica): two dpi containers that are in no
# rack.yaml join under traffic with one-time tokens (podman's own addresses, certificates
# from the orchestrator) and receive new flows without a packet lost; one killed (podman
# kill) leaves the plan and its flows move, what it held counted at the egress and
# nothing lost after; the other stopped (SIGTERM) leaves gracefully, nothing lost;
# containers with a reused, forged or no token are refused, and the orchestrator logs
# who and why.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/rack.sh # until_status, stat
BUILD=${BUILD:-build}
RDMESH=$PWD/$BUILD/rdmesh
work=$(mktemp -d /tmp/rdm-ctr.XXXXXX)
NET=10.88.77 # on podman's default bridge (10.88.0.0/16), clear of its dynamic leases
C=rdm$$
PACKETS=80000
trap 'podman rm -f -t 0 $(podman ps -aq --filter "name=^$C-") >/dev/null 2>&1; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

pass() { echo "PASS $*"; }
# wait_ctr NAME TEXT SECS: until container NAME's output says TEXT (a grep pattern).
wait_ctr() {
	local t=0
	until podman logs "$C-$1" 2>&1 | grep -- "$2" >/dev/null; do
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
	  sub(/frames: ..\/build\/demo\/frames.pcap/, "frames: " w "/frames.pcap")
	  sub(/count: 200000/, "count: " n); sub(/rate: 10000/, "rate: 4000")
	  sub(/count: 0 /, "count: " n " ")
	  if ($0 ~ /^transport:/) { print; print "  drain_ms: 2000      # a leaving pod drains for 2 s"; next }
	  if ($0 ~ /name: dpi/) dpi = 1
	  if (dpi && $0 ~ /replicas: 1/) { print; print "    pods: {deployment: rdmesh-dpi, namespace: rdmesh}"; dpi = 0; next }
	  print }' configs/chain.yaml >"$work/chain.yaml"
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
egress_lost() { sed -n 's/^egress ([^)]*): [0-9]* packets, \([0-9]*\) not yet arrived.*/\1/p' "$work/status"; }

# ---- pods: dpi containers in no rack.yaml join under traffic with one-time tokens ----
mkdir -p "$work/podca" && cp "$work/certs/ca.pem" "$work/podca/" # a pod holds the CA's certificate only
for p in a b; do
	"$RDMESH" ctl token --certs "$work/certs" --stage dpi --ttl 600 >"$work/tok-$p" || fail "ctl token"
done
# pod NAME TOKEN_FILE [podman run options]: a dpi pod; podman gives it its address.
pod() {
	local name=$1 token=$2
	shift 2
	podman run "$@" --name "$C-$name" --runtime runc --ulimit nofile=4096:4096 --ulimit nproc=4096:4096 \
		-v "$work:$work" -v "$PWD/configs:$PWD/configs:ro" "$IMAGE" node --orch "$ORCH" \
		--join "$token" --stage dpi --name "$name" --ca "$work/podca/ca.pem" --certs /tmp/certs \
		--dir "$work/$name"
}
killed="" lost0="" lost1=""
t_pods=$(date +%s.%N)
pod dpi-pod-a "$work/tok-a" -d >/dev/null && pod dpi-pod-b "$work/tok-b" -d >/dev/null ||
	fail "pod containers"
two='$1 ~ /^dpi-5[0-9]$/ && $5 == "running" && $7 > 0 { n++ } END { exit n < 2 }'
if until_status 30 "$two"; then
	lost0=$(egress_lost)
	joined=$(awk '$1 ~ /^dpi-5[0-9]$/ { printf "%s on %s (%s, %s frames); ", $1, $3, $4, $7 }' "$work/status")
	# grep reads on (no -q): with pipefail, podman would fail on the pipe grep -q left
	if [ "$lost0" = 0 ] && podman logs "$C-orch" 2>&1 | grep "join: dpi-pod-a (.*token .*one-time, now spent" >/dev/null &&
		podman logs "$C-dpi-pod-b" 2>&1 | grep "joined as a replica of dpi" >/dev/null; then
		pass "two dpi pods joined under traffic in $(awk -v a="$t_pods" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s, certificates from the orchestrator, new flows on them: ${joined}0 lost so far"
	else
		fail "pods joined but: lost so far '$lost0'; orch: $(podman logs "$C-orch" 2>&1 | grep -i 'join' | tail -3)"
	fi
	killed=$(awk '$1 ~ /^dpi-5[0-9]$/ && $3 == "dpi-pod-b" { print $1 }' "$work/status")
	killed_frames=$(awk '$1 == "'"$killed"'" { print $7 }' "$work/status")
	podman kill "$C-dpi-pod-b" >/dev/null 2>&1
	if wait_ctr orch "pod dpi-pod-b: silent for .*gone; its replica $killed leaves the plan" 20 &&
		until_status 10 '$1 == "'"$killed"'" { seen = 1 } END { exit seen }'; then
		sleep 1
		until_status 5 '/^egress/' >/dev/null
		lost1=$(egress_lost)
		pass "pod killed (podman kill): $(podman logs "$C-orch" 2>&1 | grep -o "pod dpi-pod-b: silent for [0-9]* ms: gone; its replica $killed leaves the plan" | head -1); $lost1 packets it held missing at the egress so far"
	else
		fail "killed pod: $(podman logs "$C-orch" 2>&1 | grep -i 'dpi-pod-b' | tail -3); $(head -20 "$work/status")"
	fi
else
	fail "pods did not join: $(cat "$work/status" 2>/dev/null | head -20); orch: $(podman logs "$C-orch" 2>&1 | grep -i 'join\|pod' | tail -5); pod: $(podman logs "$C-dpi-pod-a" 2>&1 | tail -3)"
fi
# A pod that stops (podman stop: SIGTERM, as Kubernetes scaling down sends) says it
# leaves: its replica leaves the plan at once, drains, and the pod exits; nothing lost.
if [ -n "$lost1" ]; then
	left=$(awk '$1 ~ /^dpi-5[0-9]$/ && $3 == "dpi-pod-a" { print $1 }' "$work/status")
	t0=$(date +%s.%N)
	podman stop -t 30 "$C-dpi-pod-a" >/dev/null 2>&1
	secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
	code=$(podman inspect -f '{{.State.ExitCode}}' "$C-dpi-pod-a" 2>/dev/null)
	if [ "$code" = 0 ] && [ -s "$work/dpi-pod-a/$left.stats" ] &&
		podman logs "$C-orch" 2>&1 | grep "pod dpi-pod-a is leaving (stopping): its replica $left leaves the plan" >/dev/null; then
		pass "pod stopped (podman stop, SIGTERM): it said it leaves, $left left the plan, drained and stopped; the container exited 0 in $secs s"
	else
		fail "pod stop: exit '$code' after $secs s; $(podman logs "$C-dpi-pod-a" 2>&1 | tail -3); orch: $(podman logs "$C-orch" 2>&1 | grep 'dpi-pod-a' | tail -2)"
	fi
fi
out=$(ctl scale dpi 3 2>&1) && fail "ctl scale of a pod-backed stage succeeded: $out" ||
	{ echo "$out" | grep "kubectl -n rdmesh scale deployment/rdmesh-dpi --replicas 3" >/dev/null &&
		pass "ctl scale dpi 3: refused, the pod orchestrator owns the count: $(echo "$out" | grep kubectl | sed 's/^ *//')" ||
		fail "ctl scale dpi 3: $out"; }

wait_ctr "$loghost" "log-1: done (counters in" 60 # logged once its counters are written
# dpi's counters (what the policy denied) come when its node stops: podman stop (SIGTERM).
podman stop -t 30 "$C-$dpihost" >/dev/null 2>&1
eg=$work/$loghost/log-1.stats
delivered=$(stat "$eg" egress_packets)
lost=$(stat "$eg" egress_lost)
denied=0
for dp in "$work/$dpihost/dpi-1.stats" "$work"/dpi-pod-a/dpi-5*.stats; do
	denied=$((denied + $(stat "$dp" stage_policy_denied) + $(stat "$dp" stage_policy_rejected)))
done
# What the killed pod's policy denied is not known (its counters died with it): the rest.
rest=$((PACKETS - delivered - denied - lost))
if [ -z "$killed" ] && [ "$lost" = 0 ] && [ "$rest" = 0 ]; then
	pass "traffic end to end between containers: $PACKETS sent, $delivered delivered at the egress ($loghost), $denied denied by the policy, 0 lost"
# lost1 is read a second after the pod left, while frames are still on their way: a gap
# counted then may still fill (a late frame), so the count may fall, never grow.
elif [ -n "$killed" ] && [ "$lost0" = 0 ] && [ "$lost" -le "$lost1" ] && [ "$rest" -ge 0 ] && [ "$rest" -le "${killed_frames:-0}" ]; then
	pass "traffic end to end between containers: $PACKETS sent, $delivered delivered at the egress ($loghost), $denied denied by the policy on the other dpi replicas, $lost lost: all held by the killed pod's $killed (counted at the egress; none after it left, none when the other pod left), $rest denied there before it died"
else
	fail "egress: $(grep -E 'egress_(packets|lost)' "$eg" 2>/dev/null | tr '\n' ' '); policy denied '$denied'; lost before the kill '$lost0', after it '$lost1', at the end '$lost'; the rest '$rest' (killed replica had ${killed_frames:-?} frames)"
fi

# Refused joins: a reused one-time token, a forged one, none at all.
printf 'rdmj1:dpi:1:%s:0011223344556677:%032d\n' $(($(date +%s) + 600)) 0 >"$work/tok-forged"
: >"$work/tok-none"
refusals=""
for c in "c tok-a used already (by dpi-pod-a)" "d tok-forged not signed by this rack's CA" "e tok-none no join token"; do
	set -- $c
	name=dpi-pod-$1 file=$2
	shift 2
	why="$*"
	pod "$name" "$work/$file" >"$work/$name.out" 2>&1
	rc=$?
	if [ $rc = 1 ] && grep -q "refused us: .*$why" "$work/$name.out" &&
		podman logs "$C-orch" 2>&1 | grep "join refused: .*(name '$name', stage 'dpi'): .*$why" >/dev/null; then
		refusals="$refusals $name ($file): '$why';"
	else
		fail "$name with $file: exit $rc: $(tail -2 "$work/$name.out"); orch: $(podman logs "$C-orch" 2>&1 | grep "$name" | tail -2)"
	fi
done
[ "$(echo "$refusals" | grep -o ';' | wc -l)" = 3 ] &&
	pass "joins refused and logged by the orchestrator, each container exits 1 with the reason:$refusals"
ctl status >"$work/status" 2>&1
grep -q "^pods: 2 joins taken, 3 refused" "$work/status" && pass "ctl status: $(grep '^pods:' "$work/status")" ||
	fail "ctl status pods line: $(head -3 "$work/status")"

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
