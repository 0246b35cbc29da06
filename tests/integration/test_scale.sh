#!/usr/bin/env bash
# Scaling a stage under traffic without breaking a flow. Six hosts:
#   host1 (replays a capture) -> edge (identity) -> {dpi-1, dpi-2, dpi-3} -> log (egress)
# The edge starts with next: [dpi-1]. Mid-replay its chain file lists all three replicas
# and it gets SIGHUP (scale 1 -> 3); later the list is back to [dpi-1] (3 -> 1). New flows
# follow the edge's Maglev table; flows already seen keep their pinned replica until they
# end, and a replica that leaves drains. tests/tools/chaincheck then proves from the
# egress's frames that no packet was lost, each flow kept its order, and every packet of a
# flow passed exactly one dpi replica; the edge's counters say how the replicas drained.
# A second, shorter run drains with a 300 ms timeout instead, over encrypted hops
# (protect: encrypt): the flows still pinned then move to the remaining replica (counted),
# and any packet that costs is counted too.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/rack.sh
BUILD=${BUILD:-build}
RDMESH=$PWD/$BUILD/rdmesh
CHECK=$PWD/$BUILD/tools/chaincheck
work=$(mktemp -d /tmp/rdm-scale.XXXXXX)
trap 'rack_down; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; }

rack_up 6 || { fail "rack set-up"; exit 1; }
# The rack's certificates: every hop proves both ends (transport.protect: auth).
"$RDMESH" ctl certs --out "$work/certs" host1 edge dpi-1 dpi-2 dpi-3 log >/dev/null || { echo "FAIL certificates"; exit 1; }
PACKETS=30000
"$RDMESH" gen --flows 300 --packets $PACKETS --seed 21 --out "$work/in.pcap" >/dev/null ||
	{ fail "generate capture"; exit 1; }

# chain NEXT: the chain file with the edge's next list NEXT.
chain() {
	cat <<EOF
chain: {name: scale, spi: 12}
transport: {backoff_min_ms: 10, backoff_max_ms: 100, drain_ms: ${DRAIN_MS:-20000},
            certs: $work/certs, protect: ${PROTECT:-auth}}
flows: {tcp_closed_ms: 300, udp_idle_ms: 1500, other_idle_ms: 1500}
nodes:
  - {name: host1, id: 1, stages: [stamp], next: edge,
     ingress: {mode: pcap, file: $work/in.pcap, rate: 5000, wait_ms: 10000}}
  - {name: edge, id: 2, listen: "$RACK_NET.2:7001", next: $1,
     stages: [stamp, {name: identity, directory: $PWD/configs/directory.yaml}]}
  - {name: dpi-1, id: 21, listen: "$RACK_NET.3:7001", stages: [stamp, dpi], next: log}
  - {name: dpi-2, id: 22, listen: "$RACK_NET.4:7001", stages: [stamp, dpi], next: log}
  - {name: dpi-3, id: 23, listen: "$RACK_NET.5:7001", stages: [stamp, dpi], next: log}
  - {name: log, id: 3, listen: "$RACK_NET.6:7001", stages: [stamp],
     egress: {frames: $work/frames.pcap, count: $PACKETS}}
EOF
}
chain "[dpi-1]" >"$work/chain.yaml"

# node HOST NAME: start node NAME in namespace HOST, in the background.
node() {
	ip netns exec "$RACK-h$1" "$RDMESH" node --config "$work/chain.yaml" --name "$2" \
		--stats "$work/stats.$2" --metrics "$RACK_NET.$1:$MPORT" --metrics-remote >>"$work/log.$2" 2>&1 &
	eval "pid_${2//-/_}=$!"
}
MPORT=9464

# inspected SECS HOST:NAME...: until each dpi replica NAME (on host HOST) has inspected
# packets, as its /metrics says.
inspected() {
	local end=$((SECONDS + $1)) hn h n ok
	shift
	while :; do
		ok=1
		for hn in "$@"; do
			h=${hn%%:*} n=${hn#*:}
			rack_exec "$h" curl -sS -m 2 "http://$RACK_NET.$h:$MPORT/metrics" 2>/dev/null |
				awk -v s="rdmesh_stage_packets_total{node=\"$n\",stage=\"dpi\"}" \
					'$1 == s && $2 > 0 { f = 1 } END { exit !f }' || ok=0
		done
		[ $ok = 1 ] && return 0
		[ $SECONDS -ge $end ] && return 1
		sleep 0.2
	done
}
node 6 log; node 5 dpi-3; node 4 dpi-2; node 3 dpi-1; node 2 edge; node 1 host1
# Scale once the replay is under way.
t=0
until grep -q 'w0 ingress' "$work/log.host1" 2>/dev/null || [ $t -ge 100 ]; do sleep 0.1; t=$((t + 1)); done
# Scale up once dpi-1 carries flows, and down once both new replicas have carried some
# (each within 20 s): new flows must reach the added replicas while they are in the table.
inspected 20 3:dpi-1 || fail "dpi-1 inspected no packet within 20 s"
chain "[dpi-1, dpi-2, dpi-3]" >"$work/chain.yaml"
kill -HUP "$pid_edge"
inspected 20 4:dpi-2 5:dpi-3 || fail "dpi-2 and dpi-3 inspected no packet within 20 s of the scale up"
chain "[dpi-1]" >"$work/chain.yaml"
kill -HUP "$pid_edge"
wait_exit "$pid_host1" 60 || fail "ingress did not finish"
wait_exit "$pid_log" 30 || { fail "egress did not account for every packet"; kill -TERM "$pid_log"; }
# The replicas that left drain once their last flows end (TCP closed, UDP idle 1.5 s).
t=0
until [ "$(grep -c 'drained' "$work/log.edge")" -ge 2 ] || [ $t -ge 100 ]; do sleep 0.1; t=$((t + 1)); done
for n in edge dpi_1 dpi_2 dpi_3; do kill -TERM "$(eval echo \$pid_$n)"; done
for n in edge dpi_1 dpi_2 dpi_3; do wait_exit "$(eval echo \$pid_$n)" 10 || fail "$n ignored SIGTERM"; done

grep -q "next hops now 3 replicas (was 1)" "$work/log.edge" &&
	grep -q "next hops now 1 replicas (was 3)" "$work/log.edge" &&
	pass "the edge re-read its next list on SIGHUP: 1 -> 3 -> 1 replicas" ||
	fail "edge did not rescale: $(grep reload "$work/log.edge")"

if "$CHECK" --in "$work/in.pcap" --frames "$work/frames.pcap" --egress-stats "$work/stats.log" \
	--hops "1,2,21|22|23,3" >"$work/check" 2>&1; then
	pass "scale 1 -> 3 -> 1 under traffic: $(head -1 "$work/check" | sed 's/^chaincheck: //'); every flow in order through one dpi replica ($(sed -n 's/^chaincheck: hop 2 flows per replica: //p' "$work/check"))"
else
	fail "chaincheck: $(tail -5 "$work/check")"
fi
per=$(sed -n 's/^chaincheck: hop 2 flows per replica: //p' "$work/check")
if [ -n "$per" ] && ! grep -qE '=0( |$)' <<<"$per"; then
	pass "new flows reached the added replicas while they were in the table ($per)"
else
	fail "a replica got no flow: '$per'"
fi
# Each replica inspected its own flows only: the dpi flow counts add up to the flows seen.
sum=$(($(stat "$work/stats.dpi-1" stage_dpi_flows) + $(stat "$work/stats.dpi-2" stage_dpi_flows) + $(stat "$work/stats.dpi-3" stage_dpi_flows)))
flows=$(sed -n 's/.* in \([0-9]*\) flows.*/\1/p' "$work/check" | head -1)
[ "$sum" = "$flows" ] && pass "dpi replicas saw $sum flows in all, one replica each ($flows flows at the egress)" ||
	fail "dpi flows $sum, egress flows $flows"
idle=$(stat "$work/stats.edge" drained_idle)
late=$(stat "$work/stats.edge" drain_timeouts)
moved=$(stat "$work/stats.edge" pins_moved)
[ "$idle" = 2 ] && [ "$late" = 0 ] && [ "$moved" = 0 ] &&
	pass "both leaving replicas drained idle (drained_idle $idle, drain_timeouts $late, pins moved $moved)" ||
	fail "drain counters: drained_idle '$idle' drain_timeouts '$late' pins_moved '$moved'"

# --- the drain timeout: 3 -> 1 while the leaving replicas still carry flows ----------------
for n in log dpi-1 dpi-2 dpi-3 edge host1; do rm -f "$work/stats.$n" "$work/log.$n"; done
rm -f "$work/frames.pcap"
# This run's hops are encrypted (protect: encrypt): the same results are due.
export PROTECT=encrypt
DRAIN_MS=300 chain "[dpi-1, dpi-2, dpi-3]" >"$work/chain.yaml"
node 6 log; node 5 dpi-3; node 4 dpi-2; node 3 dpi-1; node 2 edge; node 1 host1
t=0
until grep -q 'w0 ingress' "$work/log.host1" 2>/dev/null || [ $t -ge 100 ]; do sleep 0.1; t=$((t + 1)); done
# Scale down while the leaving replicas carry flows.
inspected 20 4:dpi-2 5:dpi-3 || fail "timeout run: dpi-2 and dpi-3 inspected no packet within 20 s"
DRAIN_MS=300 chain "[dpi-1]" >"$work/chain.yaml"
kill -HUP "$pid_edge"
wait_exit "$pid_host1" 60 || fail "timeout run: ingress did not finish"
wait_exit "$pid_log" 30 || { fail "timeout run: egress did not account for every packet"; kill -TERM "$pid_log"; }
for n in edge dpi_1 dpi_2 dpi_3; do kill -TERM "$(eval echo \$pid_$n)"; done
for n in edge dpi_1 dpi_2 dpi_3; do wait_exit "$(eval echo \$pid_$n)" 10 || fail "$n ignored SIGTERM"; done
late=$(stat "$work/stats.edge" drain_timeouts)
moved=$(stat "$work/stats.edge" pins_moved)
got=$(stat "$work/stats.log" egress_packets)
lost=$(stat "$work/stats.log" egress_lost)
dropped=$(stat "$work/stats.edge" drops)
# A timeout moves flows that are still busy: what it costs must be counted, never silent.
if [ "${late:-0}" = 2 ] && [ "${moved:-0}" -gt 0 ] && [ $((got + lost)) = $PACKETS ] &&
	[ "$lost" = "$dropped" ]; then
	pass "encrypted hops, drain timeout (300 ms): both leaving replicas closed by timeout, $moved flows moved on; $got packets arrived, $lost lost and counted at the edge ($dropped)"
else
	fail "drain timeout run: drain_timeouts '$late' pins_moved '$moved' delivered '$got' lost '$lost' edge drops '$dropped'"
fi
exit 0
