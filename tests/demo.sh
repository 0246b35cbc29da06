#!/usr/bin/env bash
# make demo: the orchestrator deploys the default chain (configs/chain.yaml: edge ->
# dpi -> log, with identity, nDPI, the firewall policy and the flow log) onto a rack of
# four hosts (configs/rack.yaml), traffic flows, dpi is scaled from 1 to 3 replicas under
# it, and `rdmesh ctl status` is shown before and after. Hosts are network namespaces
# where this machine can make them, else processes on loopback addresses. Ends with a
# summary: delivery and loss, per-application and per-verdict tables from the flow log,
# hop latency, flows per dpi replica. Everything stays in build/demo/.
# RDM_DEMO_LOOPBACK=1 runs the hosts on loopback even where namespaces work.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/rack.sh
. tests/lib/nshcheck.sh
BUILD=${BUILD:-build}
RDMESH=$PWD/$BUILD/rdmesh
CHAIN=$PWD/configs/chain.yaml
out=$PWD/build/demo
rm -rf "$out"
mkdir -p "$out"
pids=()
trap 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; rack_down' EXIT

"$RDMESH" ctl certs --out "$out/certs" orch ctl host1 host2 host3 host4 >/dev/null || exit 1
# Hosts: namespaces (configs/rack.yaml's addresses), or loopback.
if [ -z "${RDM_DEMO_LOOPBACK:-}" ] && [ "$(id -u)" -eq 0 ] && rack_up 4 2>/dev/null; then
	RACKFILE=$PWD/configs/rack.yaml
	ORCH=$RACK_NET.1:7000
	on() { local i=$1; shift; ip netns exec "$RACK-h$i" "$@"; }
	spawn() { local i=$1; shift; exec ip netns exec "$RACK-h$i" "$@"; }
	echo "demo: a rack of 4 hosts: network namespaces $RACK-h1..4 (10.77.0.1-4) on a bridge"
else
	rack_down
	RACKFILE=$out/rack-loopback.yaml
	ORCH=127.0.0.1:7000
	sed -e 's/10\.77\.0\.[0-9]*/127.0.0.1/' configs/rack.yaml >"$RACKFILE"
	on() { shift; "$@"; }
	spawn() { shift; exec "$@"; }
	echo "demo: no network namespaces here: the 4 hosts are processes on 127.0.0.1"
fi
ctl() { on 1 "$RDMESH" ctl --orch "$ORCH" --certs "$out/certs" "$@"; }
"$RDMESH" orch --rack "$RACKFILE" --chain "$CHAIN" --check >"$out/rendered.yaml" 2>"$out/placement" ||
	{ cat "$out/placement"; exit 1; }

spawn 1 "$RDMESH" orch --rack "$RACKFILE" --chain "$CHAIN" --certs "$out/certs" \
	--state "$out/orch.state" 2>"$out/orch.log" &
pids+=($!)
for i in 1 2 3 4; do
	spawn "$i" "$RDMESH" node --orch "$ORCH" --name "host$i" --certs "$out/certs" \
		--dir "$out/host$i" 2>"$out/host$i.log" &
	pids+=($!)
done
echo "demo: orchestrator on host1 ($ORCH), one node agent per host; deploying $CHAIN"
t=0
until ctl status >"$out/status" 2>/dev/null &&
	awk '$5 == "running" { n++ } END { exit n < 3 }' "$out/status"; do
	sleep 0.5
	t=$((t + 1))
	[ $t -ge 60 ] && { echo "demo: the chain did not come up; logs in $out" >&2; cat "$out/status" 2>/dev/null; exit 1; }
done
# until_status SECS AWK: polls ctl status into $out/status until AWK (over it) exits 0;
# 1 if it never did within SECS.
until_status() {
	local end=$((SECONDS + $1))
	until ctl status >"$out/status" 2>/dev/null && awk "$2" "$out/status"; do
		[ $SECONDS -ge $end ] && return 1
		sleep 0.5
	done
}
# frames_on ID...: an awk program: every replica ID has handled frames.
frames_on() {
	local c=""
	for id in "$@"; do c="$c && f[\"$id\"] > 0"; done
	echo "\$1 ~ /-[0-9]+\$/ && \$7 ~ /^[0-9]+\$/ { f[\$1] = \$7 } END { exit !(1 $c) }"
}
# The status worth showing: traffic through the whole chain.
until_status 30 "$(frames_on edge-1 dpi-1 log-1)"
echo
echo "=== rdmesh ctl status (before) ======================================================"
ctl status
echo
echo "=== rdmesh ctl scale dpi 3 =========================================================="
ctl scale dpi 3 || exit 1
# Until the new replicas carry traffic.
until_status 30 "$(frames_on dpi-2 dpi-3)"
echo
echo "=== rdmesh ctl status (after) ======================================================="
ctl status
echo
echo "demo: traffic flows until the generator is done (progress every second; a packet"
echo "      not yet arrived is one behind a later packet of its origin: still on its way)"
t0=$SECONDS
while ctl status >"$out/status" 2>/dev/null && ! awk '$1 == "edge-1" && $5 == "done" { d = 1 } END { exit !d }' "$out/status"; do
	sleep 1
	printf '  %3ds  %s\n' $((SECONDS - t0)) "$(awk '$1 ~ /^(edge|dpi|log)-/ { printf "%s %s pps  ", $1, $6 }
		/^egress \(.*\): [0-9]+ packets, [0-9]+ not yet arrived/ { e = sprintf("| egress %s %s packets, %s not yet arrived", $2, $3, $5) }
		END { printf "%s", e }' "$out/status")"
	[ $((SECONDS - t0)) -ge 90 ] && { echo "demo: still running after 90 s; stopping it" >&2; break; }
done
# The generator is done: until the egress has every frame the edge sent and no packet is
# missing (within 30 s), then the nodes stop (the flow log writes the flows still open).
until_status 30 '$1 == "edge-1" { e = $7 } $1 == "log-1" { l = $7 } /^egress \(/ { g = $5 }
	END { exit !(e != "" && l != "" && l + 0 >= e + 0 && g == "0") }'
for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[$i]}" 2>/dev/null; wait "${pids[$i]}" 2>/dev/null; done
pids=()

eg=$out/host3/log-1.stats
[ -s "$eg" ] || eg=$(ls "$out"/host*/log-1.stats 2>/dev/null | head -1)
ed=$(ls "$out"/host*/edge-1.stats 2>/dev/null | head -1)
[ -s "$eg" ] && [ -s "$ed" ] || { echo "demo: no counters from the edge or the log; logs in $out" >&2; exit 1; }
us() { awk -v v="$1" 'BEGIN { printf "%9.1f us", v / 1000 }'; }
echo
echo "rdmesh demo: edge (generator, identity) -> dpi x1, then x3 (nDPI, policy) -> log (flow log)"
printf '  %-22s %s\n' "packets sent" "$(stat "$ed" ingress_sent) of $(stat "$ed" ingress_taken) generated"
printf '  %-22s %s\n' "packets delivered" "$(stat "$eg" egress_packets) ($(stat "$eg" egress_bytes) bytes)"
printf '  %-22s %s\n' "flows" "$(stat "$eg" egress_flows)"
printf '  %-22s %s\n' "lost (sequence gaps)" "$(stat "$eg" egress_lost)"
printf '  %-22s %s\n' "new flows steered" "pins moved $(stat "$ed" pins_moved), detoured $(stat "$ed" pins_detoured)"
echo
printf '  %-10s %-8s %10s %10s %10s %10s\n' "replica" "node" "flows" "inspected" "denied" "rejected"
for f in "$out"/host*/dpi-*.stats; do
	printf '  %-10s %-8s %10s %10s %10s %10s\n' "$(basename "$f" .stats)" "$(basename "$(dirname "$f")")" \
		"$(stat "$f" stage_dpi_flows)" "$(stat "$f" stage_dpi_packets_inspected)" \
		"$(stat "$f" stage_policy_denied)" "$(stat "$f" stage_policy_rejected)"
done
python3 - "$out/flows.json" <<'EOP' || echo "demo: could not read the flow log" >&2
import collections, json, sys
apps = collections.defaultdict(lambda: [0, 0, 0])
verdicts = collections.defaultdict(lambda: [0, 0])
for line in open(sys.argv[1]):
    l = json.loads(line)
    if l.get("event") == "update":
        continue
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
printf '  %-22s %12s %12s %12s\n' "edge -> dpi" "$(us "$(stat "$eg" hop1_p50_ns)")" \
	"$(us "$(stat "$eg" hop1_p99_ns)")" "$(us "$(stat "$eg" hop1_max_ns)")"
printf '  %-22s %12s %12s %12s\n' "dpi -> log" "$(us "$(stat "$eg" hop2_p50_ns)")" \
	"$(us "$(stat "$eg" hop2_p99_ns)")" "$(us "$(stat "$eg" hop2_max_ns)")"
printf '  %-22s %12s %12s\n' "end to end" "$(us "$(stat "$eg" e2e_p50_ns)")" \
	"$(us "$(stat "$eg" e2e_p99_ns)")"
echo
# What the flows' state costs on the wire: the egress's frames capture, as a next hop
# would receive it (each flow's state once, then its slot), read back by Wireshark.
nsh=$(nsh_check "$out/frames.pcap" 2>/dev/null)
echo "  NSH headers in $out/frames.pcap (Wireshark: tshark -r it):"
echo "$nsh" | awk '{ printf "    %s records for %s packets: %s header bytes per packet, the largest %s (over 252: %s); records Wireshark flags: %s\n", $2, $4, $6, $8, $10, $12 }'
echo
echo "  orchestrator log: $out/orch.log (rdmesh ctl logs shows it live); state: $out/orch.state"
echo "  flow log: $out/flows.json; per-replica counters: $out/host*/*.stats"
[ "$(stat "$eg" egress_packets)" -gt 0 ] && [ "$(stat "$eg" egress_lost)" = 0 ]
