#!/usr/bin/env bash
# Runs inside the Soft-RoCE guest (tests/softroce/guest.sh): the orchestrator deploying a
# chain whose hops run over RDMA. A rack of three nodes, each bound to its own rxe device
# and address (rxe cannot live in a network namespace on 6.1, so the nodes share the
# guest's namespace; their replicas listen on, and bind their connections to, their own
# node's address), `rdmesh orch` on loopback and one `rdmesh node --orch` agent per node.
# The chain is edge (replays a capture) -> dpi -> log (egress), transport rdma on both hops.
#   1. deploy with RDMA hops: every replica comes up (ctl status shows it running, or done
#      when it has already finished its run), the edge's and the dpi's
#      hops run over RDMA (their counters say down_transport rdma), and chaincheck proves
#      every packet arrived intact, in order, through 101,201,301.
#   2. scale a stage with RDMA hops: `ctl scale dpi 2` mid-replay, then back to 1; no packet
#      lost, each flow through exactly one dpi replica, and the dpi replicas' flow counts
#      add up to the flows at the egress.
# Prints PASS/FAIL lines. The guest is emulated (TCG) and slow, so the runs are short and
# the waits generous.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/rack.sh
BUILD=${BUILD:-build}
RDMESH=$PWD/$BUILD/rdmesh
CHECK=$PWD/$BUILD/tools/chaincheck
read -r A1 A2 A3 <<<"${RDM_RXE_ADDRS:?run me in the Soft-RoCE guest}"
read -r X1 X2 X3 <<<"${RDM_RXE_DEVS:?run me in the Soft-RoCE guest}"
base=${RDM_OUT:?}/orch
rm -rf "$base"
mkdir -p "$base"
ORCH=127.0.0.1:7390
pids=()
trap 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done' EXIT
started=$SECONDS

pass() { echo "PASS rdma: $*"; }
fail() { echo "FAIL rdma: $*"; }

"$RDMESH" ctl certs --out "$base/certs" orch ctl host1 host2 host3 >/dev/null ||
	{ fail "orch: rdmesh ctl certs"; exit 1; }
cat >"$base/rack.yaml" <<EOR
orchestrator: {listen: "$ORCH"}
ports: 7400-7499
nodes:
  - {name: host1, control: 127.0.0.1, data: $A1, rdma_device: $X1, capacity: 4}
  - {name: host2, control: 127.0.0.1, data: $A2, rdma_device: $X2, capacity: 4}
  - {name: host3, control: 127.0.0.1, data: $A3, rdma_device: $X3, capacity: 4}
EOR

# chain PACKETS RATE: the chain file of a run in $work.
chain() {
	# Flow timeouts are five times test_scale.sh's, as the rate is a fifth: a flow must not
	# idle out between two of its packets (a dpi replica would count it twice), yet end
	# soon enough after its last one for a leaving replica to drain.
	cat <<EOC
chain: {name: rdmaorch, spi: 23}
# protect: auth (the default): every RDMA hop proves both ends with the rack's certificates
transport: {max_frame: 4096, backoff_min_ms: 10, backoff_max_ms: 200, keepalive_ms: 1500}
flows: {tcp_closed_ms: 1500, udp_idle_ms: 7500, other_idle_ms: 7500}
stages:
  - name: edge
    run: [stamp]
    transport: rdma
    ingress: {mode: pcap, file: $work/in.pcap, rate: $2, wait_ms: 60000}
  - name: dpi
    run: [stamp, dpi]
    transport: rdma
  - name: log
    run: [stamp]
    egress: {frames: $work/frames.pcap, count: $1}
EOC
}

ctl() { "$RDMESH" ctl --orch "$ORCH" --certs "$base/certs" "$@"; }

# up PACKETS RATE: the capture, the chain file, the orchestrator and the three agents.
up() {
	"$RDMESH" gen --flows $(($1 / 20)) --packets "$1" --seed 23 --out "$work/in.pcap" >/dev/null ||
		{ fail "$label: rdmesh gen"; return 1; }
	chain "$1" "$2" >"$work/chain.yaml"
	# dead-ms: heartbeats in an emulated guest can be late; no node may be declared dead.
	"$RDMESH" orch --rack "$base/rack.yaml" --chain "$work/chain.yaml" --certs "$base/certs" \
		--state "$work/orch.state" --dead-ms 10000 >>"$work/orch.log" 2>&1 &
	orch_pid=$!
	pids+=("$orch_pid")
	agents=()
	for i in 1 2 3; do
		"$RDMESH" node --orch "$ORCH" --name "host$i" --certs "$base/certs" \
			--dir "$work/host$i" >>"$work/host$i.log" 2>&1 &
		agents+=($!)
		pids+=($!)
	done
}

# The replicas in `ctl status`, "ID STATE NODE ADDRESS FRAMES" per line.
replicas() {
	ctl status 2>/dev/null | awk '$1 ~ /^[a-z]+-[0-9]+$/ && NF >= 7 { print $1, $5, $3, $4, $7 }'
}

# Replica states from `ctl status`, "ID=STATE" per line.
states() { replicas | awk '{ print $1 "=" $2 }'; }

# wait_up N SECS: until ctl status lists N replicas, each of them running or done: every
# replica of the plan came up, whether it still runs or has already finished its run (an
# edge that replayed its capture, an egress that counted every packet, are done). Prints
# the replicas as ctl status last showed them. (A deadline, not a count of tries: one ctl
# call takes a second or two in the emulated guest.)
wait_up() {
	local end=$((SECONDS + $2)) r
	while :; do
		r=$(replicas)
		[ "$(grep -c . <<<"$r")" = "$1" ] &&
			! awk '$2 != "running" && $2 != "done" { bad = 1 } END { exit !bad }' <<<"$r" &&
			{ echo "$r"; return 0; }
		[ $SECONDS -ge $end ] && break
		sleep 0.5
	done
	echo "$r"
	return 1
}

# wait_frames ID SECS: until ctl status shows replica ID has handled frames.
wait_frames() {
	local end=$((SECONDS + $2))
	until replicas | awk -v id="$1" '$1 == id && $5 ~ /^[0-9]+$/ && $5 > 0 { ok = 1 } END { exit !ok }'; do
		[ $SECONDS -ge $end ] && return 1
		sleep 0.5
	done
}

# The counters file of replica ID, whichever node ran it (empty when none yet).
statf() { ls "$work"/host*/"$1.stats" 2>/dev/null | head -1; }

# wait_stats ID SECS: until replica ID has ended and written its counters.
wait_stats() {
	local t=0
	until [ -n "$(statf "$1")" ]; do
		[ $t -ge $(($2 * 10)) ] && return 1
		sleep 0.1
		t=$((t + 1))
	done
}

# wait_log PATTERN SECS: until a node's log shows PATTERN.
wait_log() {
	local t=0
	until grep -qE "$1" "$work"/host*.log 2>/dev/null; do
		[ $t -ge $(($2 * 10)) ] && return 1
		sleep 0.1
		t=$((t + 1))
	done
}

# Stops the agents (their replicas write their counters) and then the orchestrator.
down() {
	for p in "${agents[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${agents[@]}"; do
		wait_exit "$p" 30 || { fail "$label: an agent ignored SIGTERM"; kill -9 "$p"; }
	done
	kill -TERM "$orch_pid"
	wait_exit "$orch_pid" 10 || { fail "$label: the orchestrator ignored SIGTERM"; kill -9 "$orch_pid"; }
}

show_logs() {
	for f in "$work"/orch.log "$work"/host*.log; do
		echo "--- $label: $(basename "$f")"
		tail -60 "$f"
	done
}

# rdma_hops ID...: each replica's counters say its next hop ran over RDMA, proven first
# (protect: auth: a binding handshake, then the RDMA set-up's MACs).
rdma_hops() {
	local id f t h bad=""
	for id in "$@"; do
		f=$(statf "$id")
		t=$([ -n "$f" ] && stat "$f" down_transport)
		h=$([ -n "$f" ] && stat "$f" down_handshakes)
		[ "$t" = rdma ] || bad="$bad $id: down_transport '${t:-no counters}', want rdma;"
		[ "${h:-0}" -ge 1 ] || bad="$bad $id: down_handshakes '${h:-no counters}', want 1 or more;"
	done
	[ -z "$bad" ] && return 0
	echo "$bad"
	return 1
}

# --- 1. deploy with RDMA hops ---------------------------------------------------------------
label="deploy with RDMA hops"
work=$base/deploy
mkdir -p "$work"
N1=3000
up $N1 1000 || exit 1
ok=1
if r=$(wait_up 3 120); then
	pass "$label: ctl status shows edge-1, dpi-1 and log-1 up ($(awk '{ printf "%s%s %s on %s at %s", n++ ? ", " : "", $1, $2, $3, $4 }' <<<"$r"))"
else
	fail "$label: ctl status did not show 3 replicas up (running, or done after their run) within 120 s: $(awk '{ printf "%s=%s ", $1, $2 }' <<<"$r")"
	ok=0
fi
wait_log 'next hop dpi-1 .* up over rdma' 60 && wait_log 'next hop log-1 .* up over rdma' 60 ||
	{ fail "$label: the edge -> dpi and dpi -> log hops did not come up over RDMA within 60 s"; ok=0; }
wait_stats log-1 180 || { fail "$label: the egress did not count $N1 packets within 180 s"; ok=0; }
wait_stats edge-1 30 || { fail "$label: the edge's replay did not end"; ok=0; }
down
if why=$(rdma_hops edge-1 dpi-1); then
	pass "$label: the edge and dpi replicas' counters say down_transport rdma, each hop proven (down_handshakes)"
else
	fail "$label:$why"
	ok=0
fi
eg=$(statf log-1)
if [ -n "$eg" ] && "$CHECK" --in "$work/in.pcap" --frames "$work/frames.pcap" --egress-stats "$eg" \
	--hops 101,201,301 >"$work/check" 2>&1 && [ "$(stat "$eg" egress_packets)" = $N1 ] &&
	[ "$(stat "$eg" egress_lost)" = 0 ] && [ "$(stat "$(statf edge-1)" drops)" = 0 ] &&
	[ "$(stat "$(statf dpi-1)" drops)" = 0 ]; then
	pass "$label: $(head -1 "$work/check" | sed 's/^chaincheck: //'), through 101,201,301, no drops"
else
	fail "$label: want all $N1 packets intact through 101,201,301 with no loss or drops; egress got '$(stat "$eg" egress_packets 2>/dev/null)' lost '$(stat "$eg" egress_lost 2>/dev/null)', edge drops '$(stat "$(statf edge-1)" drops 2>/dev/null)', dpi drops '$(stat "$(statf dpi-1)" drops 2>/dev/null)'"
	ok=0
fi
cat "$work/check" 2>/dev/null
[ $ok = 1 ] || show_logs

# --- 2. scale a stage with RDMA hops --------------------------------------------------------
label="scale a stage with RDMA hops"
work=$base/scale
mkdir -p "$work"
N2=20000 # 20 s: a loaded build host makes each ctl call take seconds
up $N2 1000 || exit 1
ok=1
# The edge replays once its hop to dpi-1 is up: scale as soon as it does, so that both
# changes land mid-replay although every ctl call is slow here.
wait_log 'edge-1: w0 ingress' 120 || { fail "$label: the replay did not start within 120 s"; ok=0; }
if ctl scale dpi 2 >"$work/scale-up" 2>&1 && wait_log 'next hop dpi-2 .* up over rdma' 60 &&
	wait_up 4 60 >/dev/null; then
	pass "$label: ctl scale dpi 2 mid-replay: dpi-2 running on $(grep -l 'dpi-2: started' "$work"/host*.log | xargs -r -n1 basename | sed 's/\.log$//'), the edge reached it over RDMA"
else
	fail "$label: after ctl scale dpi 2 want 4 replicas up and the edge's hop to dpi-2 up over RDMA: $(cat "$work/scale-up"; states | tr '\n' ' ')"
	ok=0
fi
# Flows must reach dpi-2 before it leaves (the flows-per-replica checks below need some on
# it): wait until its counters, as ctl status shows them, have moved.
wait_frames dpi-2 60 || { fail "$label: ctl status showed no frames through dpi-2 within 60 s"; ok=0; }
# The scale down must land mid-replay too: the replay lasts N2 / 1000 s.
[ -n "$(statf edge-1)" ] && { fail "$label: the replay ended before the scale down (raise N2)"; ok=0; }
if ctl scale dpi 1 >"$work/scale-down" 2>&1 && wait_up 3 60 >/dev/null; then
	pass "$label: ctl scale dpi 1 mid-replay: back to edge-1, dpi-1, log-1"
else
	fail "$label: after ctl scale dpi 1 want 3 replicas up: $(cat "$work/scale-down"; states | tr '\n' ' ')"
	ok=0
fi
wait_stats log-1 180 || { fail "$label: the egress did not count $N2 packets within 180 s"; ok=0; }
wait_stats edge-1 30 || { fail "$label: the edge's replay did not end"; ok=0; }
# dpi-2 stops once the edge has drained it (its flows ended) and writes its counters.
wait_stats dpi-2 60 || { fail "$label: dpi-2 did not stop within 60 s of the scale down"; ok=0; }
down
if why=$(rdma_hops edge-1 dpi-1 dpi-2); then
	pass "$label: edge-1, dpi-1 and dpi-2 say down_transport rdma"
else
	fail "$label:$why"
	ok=0
fi
eg=$(statf log-1)
if [ -n "$eg" ] && "$CHECK" --in "$work/in.pcap" --frames "$work/frames.pcap" --egress-stats "$eg" \
	--hops "101,201|202,301" >"$work/check" 2>&1 && [ "$(stat "$eg" egress_packets)" = $N2 ] &&
	[ "$(stat "$eg" egress_lost)" = 0 ]; then
	pass "$label: $(head -1 "$work/check" | sed 's/^chaincheck: //'); each flow through one dpi replica ($(sed -n 's/^chaincheck: hop 1 flows per replica: //p' "$work/check"))"
else
	fail "$label: want all $N2 packets intact, each flow through one of dpi-1/dpi-2; egress got '$(stat "$eg" egress_packets 2>/dev/null)' lost '$(stat "$eg" egress_lost 2>/dev/null)'"
	ok=0
fi
cat "$work/check" 2>/dev/null
per=$(sed -n 's/^chaincheck: hop 1 flows per replica: //p' "$work/check")
if [ -n "$per" ] && ! grep -qE '=0( |$)' <<<"$per"; then
	pass "$label: both dpi replicas carried flows ($per)"
else
	fail "$label: want flows on both dpi-1 and dpi-2, got '$per'"
	ok=0
fi
f1=$(stat "$(statf dpi-1)" stage_dpi_flows 2>/dev/null)
f2=$(stat "$(statf dpi-2)" stage_dpi_flows 2>/dev/null)
flows=$(sed -n 's/.* in \([0-9]*\) flows.*/\1/p' "$work/check" | head -1)
if [ -n "$f1" ] && [ -n "$f2" ] && [ -n "$flows" ] && [ $((f1 + f2)) = "$flows" ]; then
	pass "$label: dpi-1 saw $f1 flows and dpi-2 $f2: $((f1 + f2)), the $flows flows at the egress"
else
	fail "$label: want the dpi replicas' stage_dpi_flows to add up to the egress's flows: dpi-1 '$f1' + dpi-2 '$f2', egress '$flows'"
	ok=0
fi
edge=$(statf edge-1)
echo "edge-1: drained_idle $(stat "$edge" drained_idle) drain_timeouts $(stat "$edge" drain_timeouts) pins_moved $(stat "$edge" pins_moved) drops $(stat "$edge" drops)"
[ $ok = 1 ] || show_logs
echo "orch.sh: $((SECONDS - started)) s"
exit 0
