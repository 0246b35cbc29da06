#!/usr/bin/env bash
# transport: auto and replicas on one host (one network namespace): shared memory when the
# next replica runs here, even when it is still starting as its upstream dials (as after
# `ctl scale`), and TCP after a while when its shm listener never answers (here: its
# abstract socket name is held by a squatter that accepts and never speaks). Every packet
# arrives either way.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/rack.sh
BUILD=${BUILD:-build}
RDMESH=$PWD/$BUILD/rdmesh
work=$(mktemp -d /tmp/rdm-shmauto.XXXXXX)
trap 'rack_down; rm -rf "$work"' EXIT

pass() { echo "PASS shm-auto: $*"; }
fail() { echo "FAIL shm-auto: $*"; }

rack_up 1 || { fail "rack set-up"; exit 1; }
"$RDMESH" ctl certs --out "$work/certs" host1 host2 >/dev/null || { fail "certificates"; exit 1; }
PACKETS=3000
"$RDMESH" gen --flows 50 --packets $PACKETS --seed 3 --out "$work/in.pcap" >/dev/null ||
	{ fail "generate capture"; exit 1; }

# chain PORT: host1 replays in.pcap to host2 (egress), both at 10.77.0.1.
chain() {
	cat <<EOC
chain: {name: shmauto, spi: 9}
transport: {backoff_min_ms: 10, backoff_max_ms: 100, certs: $work/certs}
nodes:
  - name: host1
    listen: 10.77.0.1:$1
    stages: [stamp]
    ingress: {mode: pcap, file: $work/in.pcap, rate: 20000, wait_ms: 20000}
    next: host2
    transport: auto
  - name: host2
    listen: 10.77.0.1:$(($1 + 1))
    stages: [stamp]
    egress: {count: $PACKETS}
EOC
}

# run NAME PORT DELAY: host1 first, host2 DELAY seconds later; both must finish.
run() {
	chain "$2" >"$work/$1.yaml"
	rack_exec 1 "$RDMESH" node --config "$work/$1.yaml" --name host1 --stats "$work/$1.s1" \
		>"$work/$1.log1" 2>&1 &
	local p1=$!
	sleep "$3"
	rack_exec 1 "$RDMESH" node --config "$work/$1.yaml" --name host2 --stats "$work/$1.s2" \
		>"$work/$1.log2" 2>&1 &
	local p2=$!
	wait_exit $p1 60 || { kill -9 $p1 2>/dev/null; fail "$1: host1 did not finish"; }
	wait_exit $p2 30 || { kill -9 $p2 2>/dev/null; fail "$1: host2 did not finish"; }
}

# 1. The next replica starts half a second after its upstream dials: shared memory.
run late 7510 0.5
if grep -q 'next hop host2 .* up over shm' "$work/late.log1" &&
	[ "$(stat "$work/late.s2" egress_packets)" = $PACKETS ]; then
	pass "a replica on this host that starts after its upstream dialled is reached over shared memory; $PACKETS of $PACKETS packets"
else
	fail "late replica: $(grep 'next hop' "$work/late.log1" | tr '\n' ' ') egress $(stat "$work/late.s2" egress_packets)"
fi

# 2. Its shm name is held by something that accepts and never speaks: TCP after the wait.
rack_exec 1 python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind("\0rdmesh-shm 10.77.0.1:7521")
s.listen(16)
print("squatting", flush=True)
held = []
while True:
    c, _ = s.accept()
    held.append(c)
' >"$work/squat.log" 2>&1 &
squat=$!
wait_log "$work/squat.log" squatting 10 || fail "the squatter did not start"
run squat 7520 0
kill $squat 2>/dev/null
if grep -q 'transport auto: no shared-memory listener at 10.77.0.1:7521 after [0-9]* ms: using tcp' "$work/squat.log1" &&
	grep -q 'next hop host2 .* up over tcp' "$work/squat.log1" &&
	grep -q 'listen on 10.77.0.1:7521 (shm): .*upstreams on this host use TCP' "$work/squat.log2" &&
	[ "$(stat "$work/squat.s2" egress_packets)" = $PACKETS ]; then
	pass "a replica whose shm listener never answers is reached over TCP after the wait, and says why; $PACKETS of $PACKETS packets"
else
	fail "squatted shm name: $(grep -E 'next hop|transport auto' "$work/squat.log1" | tr '\n' ' ') | $(grep 'shm' "$work/squat.log2" | tr '\n' ' ') egress $(stat "$work/squat.s2" egress_packets)"
fi
