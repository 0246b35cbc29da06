#!/usr/bin/env bash
# make demo: runs configs/demo.yaml on three hosts made of network namespaces and prints
# a summary. Captures and per-node counters stay in build/demo/.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/rack.sh
BUILD=${BUILD:-build}
RDMESH=$PWD/$BUILD/rdmesh
CONF=${CONF:-$PWD/configs/demo.yaml}
out=$PWD/build/demo
mkdir -p "$out"
rm -f "$out"/stats* "$out"/log* "$out"/*.pcap
trap 'rack_down' EXIT

[ "$(id -u)" -eq 0 ] || { echo "demo: needs root for network namespaces" >&2; exit 1; }
"$RDMESH" check "$CONF" || exit 1
echo "demo: building a rack of 3 hosts (namespaces $RACK-h1..3, bridge in $RACK-sw)"
rack_up 3 || exit 1

pids=()
for i in 3 2 1; do
	(cd "$out" && exec ip netns exec "$RACK-h$i" "$RDMESH" node --config "$CONF" \
		--name "host$i" --stats "$out/stats$i" 2>"$out/log$i") &
	pids[$i]=$!
done
echo "demo: chain running (progress every second)"
t=0
while kill -0 "${pids[1]}" 2>/dev/null || kill -0 "${pids[3]}" 2>/dev/null; do
	sleep 1
	t=$((t + 1))
	printf '  %3ds  %-52s | %s\n' "$t" "$(grep -h 'ingress' "$out/log1" | tail -1 | cut -d' ' -f3-)" \
		"$(grep -h 'egress' "$out/log3" | tail -1 | cut -d' ' -f3-)"
	if [ $t -ge 60 ]; then
		echo "demo: still running after 60 s; stopping it" >&2
		break
	fi
done
wait "${pids[1]}" 2>/dev/null
kill -TERM "${pids[3]}" 2>/dev/null
wait "${pids[3]}" 2>/dev/null
kill -TERM "${pids[2]}" 2>/dev/null
wait "${pids[2]}" 2>/dev/null

s1=$out/stats1 s2=$out/stats2 s3=$out/stats3
for f in "$s1" "$s2" "$s3"; do
	[ -s "$f" ] || { echo "demo: a node left no counters ($f); logs in $out" >&2; exit 1; }
done
us() { awk -v v="$1" 'BEGIN { printf "%9.1f us", v / 1000 }'; }
drops=$(($(stat "$s1" drops) + $(stat "$s2" drops) + $(stat "$s3" drops)))
echo
echo "rdmesh demo: host1 (generator) -> host2 -> host3 (egress), TCP hops between namespaces"
printf '  %-22s %s\n' "packets sent" "$(stat "$s1" ingress_sent) of $(stat "$s1" ingress_taken) generated"
printf '  %-22s %s\n' "packets delivered" "$(stat "$s3" egress_packets) ($(stat "$s3" egress_bytes) bytes)"
printf '  %-22s %s\n' "flows" "$(stat "$s3" egress_flows)"
printf '  %-22s %s\n' "lost (sequence gaps)" "$(stat "$s3" egress_lost)"
printf '  %-22s %s\n' "drops (all nodes)" "$drops"
echo
printf '  %-22s %12s %12s %12s\n' "hop latency" "p50" "p99" "max"
printf '  %-22s %12s %12s %12s\n' "host1 -> host2" "$(us "$(stat "$s3" hop1_p50_ns)")" \
	"$(us "$(stat "$s3" hop1_p99_ns)")" "$(us "$(stat "$s3" hop1_max_ns)")"
printf '  %-22s %12s %12s %12s\n' "host2 -> host3" "$(us "$(stat "$s3" hop2_p50_ns)")" \
	"$(us "$(stat "$s3" hop2_p99_ns)")" "$(us "$(stat "$s3" hop2_max_ns)")"
printf '  %-22s %12s %12s\n' "end to end" "$(us "$(stat "$s3" e2e_p50_ns)")" \
	"$(us "$(stat "$s3" e2e_p99_ns)")"
echo
echo "  captures: $out/out.pcap (IP), $out/frames.pcap (NSH frames; tcpdump -r reads both)"
[ "$(stat "$s3" egress_packets)" -gt 0 ]
