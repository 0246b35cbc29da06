#!/usr/bin/env bash
# Runs inside the Soft-RoCE guest (tests/softroce/guest.sh): a 3-host chain over RDMA,
# each "host" bound to its own rxe device and address (rxe cannot live in a network
# namespace on 6.1, so the hosts share the guest's namespace). Run 1 must deliver every
# packet byte-identical and in order; run 2 kills host2 with SIGKILL mid-replay and
# restarts it: the loss must be counted exactly and everything after the reconnect must
# arrive. Prints PASS/FAIL lines.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/rack.sh
BUILD=${BUILD:-build}
RDMESH=$PWD/$BUILD/rdmesh
CHECK=$PWD/$BUILD/tools/chaincheck
read -r A1 A2 A3 <<<"${RDM_RXE_ADDRS:?run me in the Soft-RoCE guest}"
work=${RDM_OUT:?}/chain
rm -rf "$work"
mkdir -p "$work"
pids=()
trap 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done' EXIT

pass() { echo "PASS rdma: $*"; }
fail() { echo "FAIL rdma: $*"; }

PACKETS=8000
"$RDMESH" gen --flows 150 --packets $PACKETS --seed 11 --out "$work/in.pcap" >/dev/null || {
	fail "generate capture"
	exit 1
}

# The rack's certificates: every RDMA hop below proves both ends (protect: auth, the
# default) unless its chain says otherwise.
"$RDMESH" ctl certs --out "$work/certs" host1 host2 host3 rogue >/dev/null &&
	"$RDMESH" ctl certs --out "$work/other" host2 >/dev/null || {
	fail "certificates"
	exit 1
}

chain() { # RATE
	cat <<EOC
chain: {name: rdma3, spi: 9}
transport: {backoff_min_ms: 10, backoff_max_ms: 200, keepalive_ms: 1500, certs: $work/certs}
nodes:
  - name: host1
    listen: $A1:7101
    stages: [stamp]
    next: host2
    transport: rdma
    ingress: {mode: pcap, file: $work/in.pcap, rate: $1, wait_ms: 10000}
  - name: host2
    listen: $A2:7101
    stages: [stamp]
    next: host3
    transport: rdma
  - name: host3
    listen: $A3:7101
    stages: [stamp]
    egress: {pcap: $work/out.pcap, frames: $work/frames.pcap, count: $PACKETS}
EOC
}

node() { # N: node hostN of $CONF (the chain file by default)
	"$RDMESH" node --config "${CONF:-$work/chain.yaml}" --name "host$1" --stats "$work/stats$1" \
		>>"$work/log$1" 2>&1 &
	pids[$1]=$!
}

finish() { # LABEL
	wait_exit "${pids[1]}" 120 || { fail "$1: ingress did not finish"; return 1; }
	if ! wait_exit "${pids[3]}" 60; then
		fail "$1: egress did not account for all packets"
		kill -TERM "${pids[3]}"
		wait_exit "${pids[3]}" 10
	fi
	kill -TERM "${pids[2]}"
	wait_exit "${pids[2]}" 10 || { fail "$1: host2 ignored SIGTERM"; kill -9 "${pids[2]}"; }
	return 0
}

# pair_done LABEL: host1 (the ingress) and host2 (the egress) of a two-node run end;
# an ingress that does not is a failure, an egress still waiting is stopped.
pair_done() {
	wait_exit "${pids[1]}" 60 || { fail "$1: ingress did not finish"; kill -9 "${pids[1]}"; }
	wait_exit "${pids[2]}" 20 || { kill -TERM "${pids[2]}"; wait_exit "${pids[2]}" 5; }
}

show_logs() {
	for i in 1 2 3; do echo "--- $1 host$i"; cat "$work/log$i"; done
}

# cpu_ms PID: user + system CPU time the process has used so far, in ms.
cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{ print int(($14 + $15) * 1000 / hz) }' "/proc/$1/stat"; }

# --- run 0: an idle node uses about no CPU ----------------------------------------------
# host2 connected to host3 over RDMA, nothing flowing: after the spin window both must
# sleep on their completion channels.
chain 0 >"$work/chain.yaml"
node 3; node 2
wait_log "$work/log2" 'up over rdma' 30
sleep 1
c2=$(cpu_ms "${pids[2]}") c3=$(cpu_ms "${pids[3]}")
sleep 4
d2=$(($(cpu_ms "${pids[2]}") - c2)) d3=$(($(cpu_ms "${pids[3]}") - c3))
# A node that polls burns the whole window (4000 ms); one that sleeps only its timers'
# work, which takes the emulated guest longer the busier the host is (210 ms was seen on
# a host loaded about fourfold): a quarter of the window tells the two apart.
if [ $d2 -le 1000 ] && [ $d3 -le 1000 ]; then
	pass "idle nodes on an RDMA hop sleep: CPU over 4 s: host2 $d2 ms, host3 $d3 ms"
else
	fail "idle nodes burn CPU: host2 $d2 ms, host3 $d3 ms over 4 s"
fi
kill -TERM "${pids[2]}" "${pids[3]}"
wait "${pids[2]}" "${pids[3]}" 2>/dev/null
rm -f "$work"/stats* "$work"/log*

# --- run 1 ----------------------------------------------------------------------------
chain 0 >"$work/chain.yaml"
node 3; node 2; node 1
if finish "run 1"; then
	if "$CHECK" --in "$work/in.pcap" --frames "$work/frames.pcap" --ip "$work/out.pcap" \
		--egress-stats "$work/stats3" --hops 1,2,3 >"$work/check1" 2>&1 &&
		[ "$(stat "$work/stats3" egress_packets)" = $PACKETS ] &&
		[ "$(stat "$work/stats1" drops)" = 0 ] && [ "$(stat "$work/stats2" drops)" = 0 ]; then
		pass "3-host chain over RDMA (rxe0 -> rxe1 -> rxe2): $PACKETS packets byte-identical, in order, with state and hop stamps, no drops"
	else
		fail "3-host chain over RDMA"
	fi
	cat "$work/check1"
	if [ "$(stat "$work/stats1" down_handshakes)" -ge 1 ] && [ "$(stat "$work/stats2" down_handshakes)" -ge 1 ] &&
		[ "$(stat "$work/stats3" auth_refused)" = 0 ] && [ "$(stat "$work/stats1" down_transport)" = rdma ]; then
		pass "every RDMA hop proved both ends first (protect: auth): handshakes host1 $(stat "$work/stats1" down_handshakes) ($(stat "$work/stats1" down_handshake_us) us), host2 $(stat "$work/stats2" down_handshakes) ($(stat "$work/stats2" down_handshake_us) us)"
	else
		fail "proven RDMA hops: down_handshakes host1 '$(stat "$work/stats1" down_handshakes)' host2 '$(stat "$work/stats2" down_handshakes)', transport '$(stat "$work/stats1" down_transport)'"
	fi
	for i in 1 2; do
		echo "host$i -> next: inline $(stat "$work/stats$i" down_inline_sends), zero copy $(stat "$work/stats$i" down_zero_copy), credit stalls $(stat "$work/stats$i" down_credit_stalls), credit msgs $(stat "$work/stats$i" down_credit_msgs), rnr $(stat "$work/stats$i" down_rnr_errors), retry $(stat "$work/stats$i" down_retry_errors)"
	done
	rnr=$(($(stat "$work/stats1" down_rnr_errors) + $(stat "$work/stats2" down_rnr_errors)))
	[ "$rnr" = 0 ] && pass "no RNR errors under an unlimited ingress (credits hold the sender back)" ||
		fail "RNR errors: $rnr"
	[ "$(stat "$work/stats2" down_zero_copy)" -gt 0 ] && [ "$(stat "$work/stats2" down_inline_sends)" -gt 0 ] &&
		pass "host2 forwards small frames inline and large ones zero copy from the receive slot" ||
		fail "inline/zero-copy counters"
fi
show_logs "run 1"

# --- run 2: kill -9 host2 mid-replay ----------------------------------------------------
rm -f "$work"/stats* "$work"/log* "$work/out.pcap" "$work/frames.pcap"
# 1000 pkt/s: 8 s of replay, so that a restarted host2 (slow to start in a loaded guest)
# is back well before the ingress ends.
chain 1000 >"$work/chain.yaml"
node 3; node 2; node 1
# Kill once packets flow: the first progress line of the ingress (start-up in the guest
# is slow, and a kill before the first connection would test nothing).
t=0
until grep -q 'w0 ingress' "$work/log1" 2>/dev/null || [ $t -ge 300 ]; do
	sleep 0.1
	t=$((t + 1))
done
kill -9 "${pids[2]}"
wait "${pids[2]}" 2>/dev/null
echo "killed host2"
sleep 1
node 2
echo "restarted host2"
if finish "run 2"; then
	after=$(stat "$work/stats1" ingress_reconnect_seq)
	lost=$(stat "$work/stats3" egress_lost)
	got=$(stat "$work/stats3" egress_packets)
	if "$CHECK" --in "$work/in.pcap" --frames "$work/frames.pcap" --egress-stats "$work/stats3" \
		--hops 1,2,3 --after "$after" >"$work/check2" 2>&1 &&
		[ "$lost" -gt 0 ] && [ "$after" -gt 0 ] && [ $((got + lost)) -eq $PACKETS ]; then
		pass "kill -9 of host2 detected, host1 reconnected (epoch 2): $lost lost and counted exactly, all $((PACKETS - after)) sent after the reconnect arrived"
	else
		fail "kill -9 run: got $got lost $lost reconnect at $after"
	fi
	cat "$work/check2"
fi
show_logs "run 2"

# --- run 2b: rogues at an RDMA listener ---------------------------------------------------
# host3 listens (RDMA and TCP) for host2 only. Each rogue dials it over RDMA from host1's
# address with a chain of its own, and must be refused before any frame: no certificate
# (protect: none, a bare RDMA connect request), a certificate from another CA, and a valid
# rack certificate that is not host3's upstream.
rm -f "$work"/stats* "$work"/log*
chain 0 >"$work/chain.yaml"
node 3
rogue() { # FILE NAME TRANSPORT-EXTRA
	cat >"$1" <<EOC
chain: {name: rdma3, spi: 9}
transport: {backoff_min_ms: 50, backoff_max_ms: 200$3}
nodes:
  - name: $2
    listen: $A1:7199
    stages: [stamp]
    next: host3
    transport: rdma
    ingress: {mode: gen, count: 1000000, flows: 10, rate: 2000, wait_ms: 600000}
  - name: host3
    listen: $A3:7101
    stages: [stamp]
    egress: {count: 1}
EOC
}
refusals() { grep -c "host3: refused" "$work/log3" 2>/dev/null; }
try_rogue() { # LABEL EXPECT FILE NAME
	local before t=0
	before=$(refusals)
	"$RDMESH" node --config "$3" --name "$4" >"$work/log.$4" 2>&1 &
	local p=$!
	until [ "$(refusals)" -gt "$before" ] && grep "host3: refused" "$work/log3" | grep -q -- "$2"; do
		[ $t -ge 300 ] && break
		sleep 0.1
		t=$((t + 1))
	done
	kill -TERM $p 2>/dev/null
	wait_exit $p 10 || kill -9 $p 2>/dev/null
	if grep "host3: refused" "$work/log3" | grep -q -- "$2"; then
		pass "rdma rogue: $1: refused by host3 before its first frame: $(grep "host3: refused" "$work/log3" | grep -- "$2" | head -1 | cut -d' ' -f3-)"
	else
		fail "rdma rogue: $1: host3 did not refuse it ($2)"
		cat "$work/log.$4"
	fi
}
wait_log "$work/log3" 'listening on' 30
rogue "$work/nocert.yaml" x ", protect: none"
try_rogue "no certificate (a bare RDMA connect request)" "RDMA connect request without a binding" "$work/nocert.yaml" x
mkdir -p "$work/fake" && cp "$work/certs/ca.pem" "$work/other/host2.pem" "$work/other/host2.key" "$work/fake/"
rogue "$work/fake.yaml" host2 ", certs: $work/fake"
try_rogue "'host2' with a certificate from another CA" "certificate verify failed" "$work/fake.yaml" host2
rogue "$work/nota.yaml" rogue ", certs: $work/certs"
try_rogue "a valid rack certificate ('rogue') that is not host3's upstream" \
	"'rogue' is not an upstream of node 'host3'" "$work/nota.yaml" rogue
kill -TERM "${pids[3]}"
wait_exit "${pids[3]}" 10 || kill -9 "${pids[3]}"
refused=$(stat "$work/stats3" auth_refused) rx=$(stat "$work/stats3" up_rx_frames)
if [ "${refused:-0}" -ge 3 ] && [ "${rx:-1}" = 0 ] && [ "$(stat "$work/stats3" egress_packets)" = 0 ]; then
	pass "host3 counted $refused refusals (auth_refused) and took 0 frames from the rogues"
else
	fail "rogues at host3: auth_refused '$refused', up_rx_frames '$rx', egress_packets '$(stat "$work/stats3" egress_packets)'"
	show_logs "rogues"
fi

# --- run 3: transport auto ---------------------------------------------------------------
# host1 -> host2 between rxe addresses must choose RDMA; host1 -> host4, whose address is
# on a dummy interface with no RDMA device, must fall back to TCP and still deliver.
rm -f "$work"/stats* "$work"/log*
modprobe dummy 2>/dev/null
ip link add rdmdummy0 type dummy 2>/dev/null
ip addr add 10.89.0.1/32 dev rdmdummy0 2>/dev/null
ip link set rdmdummy0 up
for peer in "$A2" 10.89.0.1; do
	cat >"$work/chain.yaml" <<EOC
chain: {name: auto, spi: 4}
# shm: false: the two nodes stand for two hosts, though they share the guest.
transport: {backoff_min_ms: 10, backoff_max_ms: 100, certs: $work/certs, shm: false}
nodes:
  - name: host1
    listen: $A1:7301
    stages: [stamp]
    next: host2
    transport: auto
    ingress: {mode: gen, count: 500, flows: 20, rate: 0, wait_ms: 15000}
  - name: host2
    listen: $peer:7301
    stages: [stamp]
    egress: {count: 500}
EOC
	node 2; node 1
	pair_done "auto to $peer"
	want=rdma
	[ "$peer" = 10.89.0.1 ] && want=tcp
	got=$(stat "$work/stats1" down_transport)
	if [ "$got" = $want ] && [ "$(stat "$work/stats2" egress_packets)" = 500 ]; then
		pass "transport auto towards $peer chose $got and delivered 500 of 500 (fallbacks: $(stat "$work/stats1" down_auto_fallbacks))"
	else
		fail "transport auto towards $peer: chose '$got', want $want; delivered $(stat "$work/stats2" egress_packets)"
		show_logs "auto $peer"
	fi
	grep 'transport auto' "$work/log1"
	rm -f "$work"/stats* "$work"/log*
done
# The same towards host2's rxe address, with host1 as a pod without CAP_IPC_LOCK and a
# memlock limit of 64 KiB: RDMA cannot be set up on host1's side; it says why (the
# limit and the sizes) and falls back to TCP, delivering all.
sed -i "s/listen: 10.89.0.1:7301/listen: $A2:7301/" "$work/chain.yaml"
node 2
capsh --drop=cap_ipc_lock -- -c "ulimit -l 64; exec $RDMESH node --config $work/chain.yaml --name host1 --stats $work/stats1" \
	>>"$work/log1" 2>&1 &
pids[1]=$!
pair_done "auto at 64 KiB of memlock"
if [ "$(stat "$work/stats1" down_transport)" = tcp ] && [ "$(stat "$work/stats2" egress_packets)" = 500 ] &&
	grep -q "cannot register RDMA buffers: the memlock limit (64 KiB)" "$work/log1" &&
	[ "$(stat "$work/stats1" down_auto_fallbacks)" = 1 ]; then
	pass "transport auto at 64 KiB of memlock without CAP_IPC_LOCK: '$(grep -o 'the memlock limit (64 KiB)[^:]*' "$work/log1" | head -1)'; fell back to TCP (1), 500 of 500 delivered"
else
	fail "auto at low memlock: transport '$(stat "$work/stats1" down_transport)', delivered '$(stat "$work/stats2" egress_packets)', fallbacks '$(stat "$work/stats1" down_auto_fallbacks)'"
	show_logs "memlock"
fi
rm -f "$work"/stats* "$work"/log*

# --- run 3b: an encrypted RDMA hop ---------------------------------------------------------
# sees MODE: host1 -> host2 over RDMA with protect MODE, generated traffic (HTTP among it),
# RoCEv2 (UDP 4791) captured on host1's veth; prints the HTTP User-Agent lines the capture
# shows and what the egress counted.
sees() {
	cat >"$work/enc.yaml" <<EOC
chain: {name: enc, spi: 6}
transport: {backoff_min_ms: 10, backoff_max_ms: 100, protect: $1, certs: $work/certs}
nodes:
  - name: host1
    listen: $A1:7351
    stages: [stamp]
    next: host2
    transport: rdma
    ingress: {mode: gen, count: 3000, flows: 30, rate: 0, seed: 5, wait_ms: 15000}
  - name: host2
    listen: $A2:7351
    stages: [stamp]
    egress: {count: 3000}
EOC
	rm -f "$work/enc.pcap" "$work/tcpdump.err" "$work"/stats*
	tcpdump -i "${NETDEV1:?}" -w "$work/enc.pcap" -U "udp port 4791" 2>"$work/tcpdump.err" &
	local td=$!
	wait_log "$work/tcpdump.err" "listening on" 10
	CONF=$work/enc.yaml node 2
	CONF=$work/enc.yaml node 1
	pair_done "encrypted rdma ($1)" >&2
	kill -INT $td
	wait $td 2>/dev/null
	echo "$(grep -ac 'User-Agent:' "$work/enc.pcap") $(stat "$work/stats2" egress_packets) $(stat "$work/stats1" down_transport)"
}
read -r NETDEV1 _ <<<"${RDM_RXE_NETDEVS:?}"
read -r clear_ua clear_n clear_t <<<"$(sees auth)"
read -r enc_ua enc_n enc_t <<<"$(sees encrypt)"
if [ "${clear_ua:-0}" -gt 0 ] && [ "$enc_ua" = 0 ] && [ "$enc_n" = 3000 ] && [ "$clear_n" = 3000 ] &&
	[ "$enc_t" = rdma ] && [ "$(stat "$work/stats2" protect)" = encrypt ] && [ "$(stat "$work/stats2" up_rx_tls_errors)" = 0 ]; then
	pass "protect: encrypt on an RDMA hop (AES-GCM per message) hides the packets from the wire: HTTP User-Agent lines in the RoCEv2 capture: auth $clear_ua, encrypt 0; 3000 of 3000 delivered both times"
else
	fail "encrypted RDMA hop: User-Agent lines auth '$clear_ua' encrypt '$enc_ua', delivered $clear_n / $enc_n, transport '$enc_t'"
	show_logs "encrypted rdma"
fi
rm -f "$work"/stats* "$work"/log*

# --- run 4: an encrypted TCP hop with kernel TLS -------------------------------------------
# The guest's Debian kernel has the tls module (the host's has not): with protect: encrypt
# OpenSSL hands the session's keys to the kernel, and the node goes on writing plaintext
# with sendmsg, the kernel making the records (down_ktls_tx 1).
cat >"$work/chain.yaml" <<EOC
chain: {name: ktls, spi: 5}
transport: {backoff_min_ms: 10, backoff_max_ms: 100, protect: encrypt, certs: $work/certs}
nodes:
  - name: host1
    listen: $A1:7401
    stages: [stamp]
    next: host2
    transport: tcp
    ingress: {mode: gen, count: 3000, flows: 30, rate: 0, wait_ms: 15000}
  - name: host2
    listen: $A2:7401
    stages: [stamp]
    egress: {count: 3000}
EOC
node 2; node 1
pair_done ktls
if [ "$(stat "$work/stats2" egress_packets)" = 3000 ] && [ "$(stat "$work/stats1" down_ktls_tx)" = 1 ] &&
	[ "$(stat "$work/stats2" protect)" = encrypt ]; then
	pass "an encrypted TCP hop (protect: encrypt) with kernel TLS sending: 3000 of 3000 delivered, down_ktls_tx 1"
else
	fail "encrypted hop with kernel TLS: delivered $(stat "$work/stats2" egress_packets), down_ktls_tx '$(stat "$work/stats1" down_ktls_tx)'; tls module: $(grep -c '^tls ' /proc/modules)"
	show_logs "ktls"
fi
