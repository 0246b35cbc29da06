#!/usr/bin/env bash
# make demo: runs configs/demo.yaml on three hosts made of network namespaces and prints
# a summary: delivery, per-application and per-verdict counts, hop latency. Captures, the
# flow log and per-node counters stay in build/demo/.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/rack.sh
BUILD=${BUILD:-build}
RDMESH=$PWD/$BUILD/rdmesh
CONF=${CONF:-$PWD/configs/demo.yaml}
out=$PWD/build/demo
mkdir -p "$out"
rm -f "$out"/stats* "$out"/log* "$out"/*.pcap "$out"/flows.json*
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
echo "rdmesh demo: host1 (generator, identity) -> host2 (dpi, policy) -> host3 (flowlog, egress),"
echo "             TCP hops between namespaces"
printf '  %-22s %s\n' "packets sent" "$(stat "$s1" ingress_sent) of $(stat "$s1" ingress_taken) generated"
printf '  %-22s %s\n' "packets delivered" "$(stat "$s3" egress_packets) ($(stat "$s3" egress_bytes) bytes)"
printf '  %-22s %s\n' "flows" "$(stat "$s3" egress_flows)"
printf '  %-22s %s\n' "lost (sequence gaps)" "$(stat "$s3" egress_lost)"
printf '  %-22s %s\n' "drops (all nodes)" "$drops"
printf '  %-22s %s\n' "policy (packets)" "allowed $(stat "$s2" stage_policy_allowed), logged $(stat "$s2" stage_policy_logged), denied $(stat "$s2" stage_policy_denied), rejected $(stat "$s2" stage_policy_rejected) (replies $(($(stat "$s2" stage_policy_replies_tcp_rst) + $(stat "$s2" stage_policy_replies_icmp))))"
printf '  %-22s %s\n' "dpi (flows)" "$(stat "$s2" stage_dpi_flows_detected) detected, $(stat "$s2" stage_dpi_flows_gaveup) gave up; $(stat "$s2" stage_dpi_packets_inspected) packets inspected, $(stat "$s2" stage_dpi_packets_fastpath) on the fast path"
# Per application and per verdict, from the flow log (one JSON line per flow).
python3 - "$out/flows.json" <<'EOP' || echo "demo: could not read the flow log" >&2
import collections, json, sys
apps = collections.defaultdict(lambda: [0, 0, 0])
verdicts = collections.defaultdict(lambda: [0, 0])
for line in open(sys.argv[1]):
    l = json.loads(line)
    pk = l["packets_fwd"] + l["packets_rev"]
    a = apps[l["app"] or "(none)"]
    a[0] += 1; a[1] += pk; a[2] += l["bytes_fwd"] + l["bytes_rev"]
    v = verdicts[(l["verdict"], l["rule"] or "-")]
    v[0] += 1; v[1] += pk
print()
print("  %-22s %8s %10s %12s" % ("application", "flows", "packets", "bytes"))
for name, (f, p, b) in sorted(apps.items(), key=lambda kv: -kv[1][1]):
    print("  %-22s %8d %10d %12d" % (name, f, p, b))
print()
print("  %-10s %-22s %8s %10s" % ("verdict", "rule", "flows", "packets"))
for (v, r), (f, p) in sorted(verdicts.items(), key=lambda kv: -kv[1][0]):
    print("  %-10s %-22s %8d %10d" % (v, r, f, p))
EOP
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
echo "  flow log: $out/flows.json"
[ "$(stat "$s3" egress_packets)" -gt 0 ]
