#!/usr/bin/env bash
# Fail closed under flow-table pressure, on loopback: a generator sends 2000 flows (HTTP,
# TLS, DNS) through dpi + policy, whose policy denies the TLS application, to an egress
# that writes what leaves. Three runs of the same traffic:
#   A  flows.max 65536: the table holds every flow (the baseline);
#   B  flows.max 256, when_full: evict: a flood of new flows for the table;
#   C  flows.max 256, when_full: refuse-new.
# The packets of TLS flows (port 443) that leave must be no more in B or C than in A
# (the handshake before DPI names the application): a flow refused, or pushed out before
# it was decided, never passes from the middle of its stream.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/rack.sh # wait_exit, wait_log, stat
BUILD=${BUILD:-build}
RDMESH=$PWD/$BUILD/rdmesh
work=$(mktemp -d /tmp/rdm-failclosed.XXXXXX)
pids=""
cleanup() {
	for p in $pids; do kill -9 "$p" 2>/dev/null; done
	[ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; }

"$RDMESH" ctl certs --out "$work/certs" gen inspect out >/dev/null || { fail "certificates"; exit 1; }
cat >"$work/policy.yaml" <<EOP
default: allow
rules:
  - {name: no-tls, match: {app: TLS}, action: deny}
EOP

FLOWS=2000
PACKETS=30000
PORT=$((21000 + $$ % 20000))

# tls_packets PCAP: packets to or from port 443 in a raw-IP capture.
tls_packets() {
	python3 - "$1" <<'EOP'
import struct, sys
d = open(sys.argv[1], "rb").read()
off, n = 24, 0
while off + 16 <= len(d):
    incl = struct.unpack_from("<I", d, off + 8)[0]
    p = d[off + 16:off + 16 + incl]
    off += 16 + incl
    if len(p) >= 24 and p[0] >> 4 == 4 and p[9] == 6:
        ihl = (p[0] & 15) * 4
        sp, dp = struct.unpack_from(">HH", p, ihl)
        n += 443 in (sp, dp)
print(n)
EOP
}

# run LABEL MAX WHEN [RATE [RESTART]]: the chain with flows.max MAX and when_full WHEN, the
# generator at RATE packets/s (0: unpaced); with RESTART, inspect is killed (-9) and
# started again once the generator has sent RESTART packets. Sets $tls_out.
run() {
	local label=$1 max=$2 when=$3 rate=${4:-0} restart=${5:-} p1 p2 p3 pg
	cat >"$work/$label.yaml" <<EOC
chain: {name: failclosed, spi: 31}
transport: {certs: $work/certs}
flows: {max: $max, when_full: $when}
nodes:
  - name: gen
    stages: [stamp]
    next: inspect
    ingress: {mode: gen, count: $PACKETS, flows: $FLOWS, rate: $rate, seed: 11}
  - name: inspect
    listen: 127.0.0.1:$PORT
    stages: [stamp, dpi, {name: policy, file: $work/policy.yaml}]
    next: out
  - name: out
    listen: 127.0.0.1:$((PORT + 1))
    stages: [stamp]
    egress: {pcap: $work/$label.pcap}
EOC
	"$RDMESH" node --config "$work/$label.yaml" --name out --stats "$work/$label.out" \
		>"$work/$label.log.out" 2>&1 &
	p3=$!
	"$RDMESH" node --config "$work/$label.yaml" --name inspect --stats "$work/$label.inspect" \
		>"$work/$label.log.inspect" 2>&1 &
	p2=$!
	pids="$p2 $p3"
	"$RDMESH" node --config "$work/$label.yaml" --name gen >"$work/$label.log.gen" 2>&1 &
	pg=$!
	pids="$p2 $p3 $pg"
	if [ -n "$restart" ]; then
		# The generator's progress lines say how much it sent: restart inspect mid-stream.
		local t=0
		until awk -v n="$restart" '/w0 ingress/ { for (i = 1; i <= NF; i++) if ($i == "sent,") s = $(i - 1) } END { exit !(s + 0 >= n) }' "$work/$label.log.gen" 2>/dev/null; do
			[ $t -ge 600 ] && break
			sleep 0.05
			t=$((t + 1))
		done
		kill -9 $p2
		wait $p2 2>/dev/null
		"$RDMESH" node --config "$work/$label.yaml" --name inspect --stats "$work/$label.inspect" \
			>>"$work/$label.log.inspect" 2>&1 &
		p2=$!
		pids="$p2 $p3 $pg"
		echo "$label: inspect killed and started again at $(grep 'w0 ingress' "$work/$label.log.gen" | tail -1 | cut -d' ' -f2-)"
	fi
	wait $pg
	# Each node has read everything from its upstream once that connection closed: only
	# then is it told to stop (it drains what it queued to the next one).
	wait_log "$work/$label.log.inspect" "upstream .* disconnected" 30 || fail "$label: inspect kept its upstream"
	kill -TERM $p2
	wait_exit $p2 20 || kill -9 $p2
	# After a restart, out saw two upstream connections end: wait for the second.
	local t=0 n=1
	[ -n "$restart" ] && n=2
	until [ "$(grep -c "upstream .* disconnected" "$work/$label.log.out")" -ge $n ]; do
		[ $t -ge 300 ] && { fail "$label: out kept its upstream"; break; }
		sleep 0.1
		t=$((t + 1))
	done
	kill -TERM $p3
	wait_exit $p3 20 || kill -9 $p3
	pids=""
	tls_out=$(tls_packets "$work/$label.pcap")
	echo "$label: flows.max $max, when_full $when: $tls_out TLS packets left;" \
		"policy denied $(stat "$work/$label.inspect" stage_policy_denied)," \
		"from cache $(stat "$work/$label.inspect" stage_policy_refused_from_cache)," \
		"undecidable $(stat "$work/$label.inspect" stage_policy_undecidable_denied)," \
		"refused new $(stat "$work/$label.inspect" stage_policy_flows_refused)," \
		"evicted $(stat "$work/$label.inspect" stage_policy_flows_evicted)," \
		"cache forgot $(stat "$work/$label.inspect" stage_policy_verdict_cache_forgotten)," \
		"moved in $(stat "$work/$label.inspect" stage_dpi_flows_moved_in)"
}

run A 65536 evict
a=$tls_out
run B 256 evict
b=$tls_out
run C 256 refuse-new
c=$tls_out

ev=$(stat "$work/B.inspect" stage_policy_flows_evicted)
[ "${ev:-0}" -gt 0 ] && pass "the small table was flooded: $ev flows evicted in run B" ||
	fail "run B evicted nothing: the test did not press the table"
[ "${a:-0}" -gt 0 ] && [ "${b:-x}" -le "$a" ] &&
	pass "under eviction no more TLS packets leave than with room for every flow ($b <= $a)" ||
	fail "eviction let more of the denied application through: $b > $a"
rf=$(stat "$work/C.inspect" stage_dpi_flows_refused)
[ "${c:-x}" -le "$a" ] && [ "${rf:-0}" -gt 0 ] &&
	pass "refuse-new: no more TLS packets leave than with room ($c <= $a), $rf new flows refused by dpi" ||
	fail "refuse-new: TLS packets $c (baseline $a), dpi flows_refused '$rf'"

# --- a replica restarted mid-stream ---------------------------------------------------------
# The same traffic paced (6000 packets/s), once as it is (P) and once with inspect killed
# and started again a third of the way in (D): the upstream's connection is made again,
# so it marks the flows it goes on sending there as moved (RDM_FF_MOVED); the new inspect
# sees them from the middle, DPI takes them as lost, and the policy denies the ones whose
# decision waits on DPI. No more TLS packets may leave than without the restart.
run P 65536 evict 6000
p=$tls_out
run D 65536 evict 6000 10000
d=$tls_out
mv=$(stat "$work/D.inspect" stage_dpi_flows_moved_in)
ud=$(stat "$work/D.inspect" stage_policy_undecidable_denied)
[ "${mv:-0}" -gt 0 ] && [ "${ud:-0}" -gt 0 ] &&
	pass "restarted mid-stream: the new inspect took $mv flows as moved to it, denied $ud it could not decide from the middle" ||
	fail "restart: flows_moved_in '$mv', undecidable_denied '$ud'"
[ "${p:-0}" -gt 0 ] && [ "${d:-x}" -le "$p" ] &&
	pass "a replica restarted mid-stream lets no more TLS packets through than none restarted ($d <= $p)" ||
	fail "the restart let more of the denied application through: $d > $p"
