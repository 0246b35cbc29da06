#!/usr/bin/env bash
# Smoke test of `rdmesh bench --quick`: every path on this host (native, overlay, sidecar)
# the full-chain row (SASE stages against bare forwarding) and the polling modes produce
# numbers, the targets table and the projection are written, and the CSV, the markdown and
# both pictures are written. It checks no
# speed: that is what the benchmark itself reports.
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
out=$(mktemp -d /tmp/rdm-bench-smoke.XXXXXX)
trap 'rm -rf "$out"' EXIT
pass() { echo "PASS bench: $*"; }
fail() { echo "FAIL bench: $*"; }

# The bench's namespaces carry this prefix: what is left behind is counted among them only
# (other tests may make and remove namespaces meanwhile).
export RDM_BENCH_NS=rdbt$$
if ! "$BUILD/rdmesh" bench --quick --out "$out" >"$out/log" 2>&1; then
	fail "rdmesh bench --quick exited non-zero"
	tail -30 "$out/log"
	exit 1
fi
tail -40 "$out/log"
for f in bench.csv bench.md latency.png throughput.png; do
	[ -s "$out/$f" ] && pass "$f written" || fail "$f missing or empty"
done
for f in latency.png throughput.png; do
	head -c 8 "$out/$f" | od -An -tx1 | grep -q '89 50 4e 47' || fail "$f is not a PNG"
done
num() { awk -v v="$1" 'BEGIN { exit !(v + 0 > 0) }'; }
for p in native overlay sidecar; do
	ok=1
	for m in hop_1hop hop_3hop transport_rtt_half; do
		v=$(awk -F, -v p=$p -v m=$m '$1 == p && $2 == m { print $5; exit }' "$out/bench.csv")
		num "$v" || { ok=0; echo "  $p $m: '$v'"; }
	done
	v=$(awk -F, -v p=$p '$1 == p && $2 == "throughput" { print $9; exit }' "$out/bench.csv")
	num "$v" || { ok=0; echo "  $p throughput: '$v'"; }
	if [ $p != sidecar ]; then
		v=$(awk -F, -v p=$p '$1 == p && $2 == "sockperf" { print $5; exit }' "$out/bench.csv")
		num "$v" || { ok=0; echo "  $p sockperf: '$v'"; }
	fi
	[ $ok = 1 ] && pass "$p: latency (1 and 3 hops), round trip, throughput$([ $p != sidecar ] && echo ', sockperf') all measured" ||
		fail "$p: some measures missing"
done
ok=1
for p in chain-bare chain-full; do
	v=$(awk -F, -v p=$p '$1 == p && $2 == "hop_2hop" { print $5; exit }' "$out/bench.csv")
	num "$v" || { ok=0; echo "  $p latency: '$v'"; }
	v=$(awk -F, -v p=$p '$1 == p && $2 == "throughput" { print $9; exit }' "$out/bench.csv")
	num "$v" || { ok=0; echo "  $p throughput: '$v'"; }
done
grep -q '^| full |.* % | [0-9.]* | [0-9]* |$' "$out/bench.md" || { ok=0; echo "  no nDPI share or header bytes in bench.md"; }
grep -q '^| full chain >= 0.7x bare forwarding, packets/s (the median of 3 rounds, .* sorted [0-9.]*, [0-9.]*, [0-9.]*;' "$out/bench.md" ||
	{ ok=0; echo "  the full/bare target is not judged on 3 rounds"; }
[ $ok = 1 ] && pass "full chain (identity, dpi, policy, flowlog) and bare chain: latency, throughput, nDPI share; the target on the median of 3 rounds" ||
	fail "full chain row incomplete"
ok=1
for m in hop_1hop hop_3hop; do
	v=$(awk -F, -v m=$m '$1 == "shm" && $2 == m { print $5; exit }' "$out/bench.csv")
	num "$v" || { ok=0; echo "  shm $m: '$v'"; }
done
v=$(awk -F, '$1 == "shm" && $2 == "throughput" { print $9; exit }' "$out/bench.csv")
num "$v" || { ok=0; echo "  shm throughput: '$v'"; }
grep -q '^| shm hop p50 with poll: busy' "$out/bench.md" || { ok=0; echo "  no shm target row"; }
# Forwarding per core: a number, or (as --quick's short runs may give the middle node the
# same CPU milliseconds in both) the targets row saying the runs were too short to judge.
v=$(awk -F, '$1 == "shm" && $2 == "forward_per_core" { print $9; exit }' "$out/bench.csv")
num "$v" || grep -q '^| bare forwarding >= 1 Mpps per core over shm .*too short to judge' "$out/bench.md" ||
	{ ok=0; echo "  shm forwarding per core: '$v'"; }
v=$(awk -F, '$1 == "shm" && $2 == "hop_1hop_load80" { print $7; exit }' "$out/bench.csv")
num "$v" || { ok=0; echo "  shm p99.9 at 80% load: '$v'"; }
grep -q '^| shm hop p99.9 <= 3x p50 at 80% of peak load' "$out/bench.md" || { ok=0; echo "  no shm load target row"; }
grep -q '^| (beside it, the machine.s own floor: .* [0-9.]* gaps per second past [0-9.]* us' "$out/bench.md" ||
	{ ok=0; echo "  no machine jitter row beside the p99.9 target"; }
[ $ok = 1 ] && pass "shm (nodes on one host, shared memory): latency (1 and 3 hops, polling), throughput, forwarding per core, p99.9 at 80% of the peak and the machine's own gaps beside it, its targets" ||
	fail "shm rows missing"
ok=1
for pm in sleep adaptive busy; do
	v=$(awk -F, -v p=native-poll-$pm '$1 == p && $2 == "hop_1hop" { print $5; exit }' "$out/bench.csv")
	num "$v" || { ok=0; echo "  poll $pm: '$v'"; }
done
grep -q '^| TCP hop p50 with poll: adaptive' "$out/bench.md" || { ok=0; echo "  no polling target row"; }
grep -q '^| NSH header bytes per packet' "$out/bench.md" || { ok=0; echo "  no header bytes target row"; }
grep -q '^| 64 B | [0-9.]* | 0.8[0-9] | [0-9.]* |' "$out/bench.md" || { ok=0; echo "  no projection row"; }
[ $ok = 1 ] && pass "polling modes (sleep, adaptive, busy) measured; the targets table and the RDMA projection written" ||
	fail "polling rows, targets or projection missing"
left=$(ip netns list | awk '{ print $1 }' | grep -c "^$RDM_BENCH_NS-")
[ "$left" -le 0 ] && pass "no namespaces left behind" || fail "$left bench namespaces left behind"
