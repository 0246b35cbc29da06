#!/usr/bin/env bash
# Proven hops (transport.protect: auth, the default), tried as an attacker on the rack
# network would. Hosts are network namespaces: host1 generates traffic (node a), host2
# stamps it (b), host3 takes it out (c), host4 is the attacker's. While the legit chain
# runs, rogue nodes on host4 dial c's data address:
#   - one with no certificate at all (protect: none);
#   - one calling itself b with a certificate from another CA;
#   - one with a valid rack certificate, a's, that is not c's upstream;
#   - a replay of the bytes a proven upstream sent on an earlier connection;
# and a node that dials its next hop meets an impersonator holding a valid rack
# certificate of another name. Each is refused before its first frame, counted in
# auth_refused and logged with the peer and the reason; the legit chain delivers every
# packet. A proven upstream that sends frames of another chain, or with a service index
# that skips a stage, has them dropped (drop_wrong_path). Two nodes configured on one address are refused by `rdmesh check`, and one
# started anyway on a taken address exits non-zero at once. With protect: encrypt an
# eavesdropper on the hop reads none of the packets that auth leaves in the clear.
# Certificates rotate to a new CA under traffic (SIGHUP) without a packet lost.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/rack.sh
BUILD=${BUILD:-build}
RDMESH=$PWD/$BUILD/rdmesh
BAD=$PWD/$BUILD/tools/badframes
work=$(mktemp -d /tmp/rdm-auth.XXXXXX)
trap 'rack_down; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; }

rack_up 4 || { fail "rack set-up"; exit 1; }
C=$RACK_NET.3:7001
"$RDMESH" ctl certs --out "$work/certs" a b c rogue >/dev/null &&
	"$RDMESH" ctl certs --out "$work/other" b >/dev/null || { fail "certificates"; exit 1; }
# The impersonator of b: the rack's CA (so it trusts c) but its own from another CA.
mkdir -p "$work/fake" && cp "$work/certs/ca.pem" "$work/other/b.pem" "$work/other/b.key" "$work/fake/"

PACKETS=6000
cat >"$work/chain.yaml" <<EOC
chain: {name: auth, spi: 21}
transport: {backoff_min_ms: 10, backoff_max_ms: 100, certs: $work/certs}
nodes:
  - name: a
    stages: [stamp]
    next: b
    ingress: {mode: gen, count: $PACKETS, flows: 60, rate: 3000, seed: 3, wait_ms: 10000}
  - name: b
    listen: $RACK_NET.2:7001
    stages: [stamp]
    next: c
  - name: c
    listen: $C
    stages: [stamp]
    egress: {count: $PACKETS}
EOC

# rogue FILE NODE: the attacker's chain FILE, whose ingress NODE sends to c's address.
# Extra transport keys come from $RT.
rogue() {
	cat >"$1" <<EOC
chain: {name: rogue, spi: 21}
transport: {backoff_min_ms: 50, backoff_max_ms: 200$RT}
nodes:
  - name: $2
    stages: [stamp]
    next: c
    ingress: {mode: gen, count: 3000, flows: 10, rate: 0, wait_ms: 2000}
  - name: c
    listen: $C
    stages: [stamp]
EOC
}

# refusals: c's refusal lines so far.
refusals() { grep -c "c: refused" "$work/log.c" 2>/dev/null; }

start() { # start HOST NAME [FILE]: node NAME of FILE (default the chain) on hostHOST
	ip netns exec "$RACK-h$1" "$RDMESH" node --config "${3:-$work/chain.yaml}" --name "$2" \
		--stats "$work/stats.$2" >>"$work/log.$2" 2>&1 &
	eval "pid_$2=$!"
}

start 3 c
start 2 b
wait_log "$work/log.b" "listening on" || fail "b did not start listening"

# --- the rogues, one at a time, each until c has refused it ----------------------------
# try LABEL EXPECT FILE NODE: run the rogue NODE of FILE on host4 until c logs a refusal
# saying EXPECT.
try() {
	local before
	before=$(refusals)
	ip netns exec "$RACK-h4" "$RDMESH" node --config "$3" --name "$4" --stats "$work/stats.try" \
		>"$work/log.$1" 2>&1 &
	local p=$!
	local t=0
	until [ "$(refusals)" -gt "$before" ] && grep -q -- "$2" "$work/log.c"; do
		[ $t -ge 100 ] && break
		sleep 0.1
		t=$((t + 1))
	done
	kill -TERM $p 2>/dev/null
	wait_exit $p 10 || kill -9 $p 2>/dev/null
	if grep "c: refused" "$work/log.c" | grep -q -- "$2"; then
		pass "$1: refused by c before its first frame: $(grep "c: refused" "$work/log.c" | grep -- "$2" | head -1 | cut -d' ' -f3-)"
	else
		fail "$1: c did not refuse it ($2)"
		cat "$work/log.$1"
	fi
}

RT=", protect: none" rogue "$work/nocert.yaml" x
try "a rogue node with no certificate" "client $RACK_NET.4:" "$work/nocert.yaml" x
RT=", certs: $work/fake" rogue "$work/fake.yaml" b
try "a rogue 'b' with a certificate from another CA" "certificate verify failed" "$work/fake.yaml" b
RT=", certs: $work/certs" rogue "$work/nota.yaml" a
try "a valid rack certificate ('a') that is not c's upstream" "'a' is not an upstream of node 'c'" \
	"$work/nota.yaml" a

# --- a replayed handshake --------------------------------------------------------------
# A proven upstream's connection is recorded by a relay on host4, then its bytes are
# sent again: a TLS 1.3 server picks a fresh random, so the old Finished cannot verify.
cat >"$work/relay.py" <<'EOP'
import socket, sys, threading
lst = socket.socket(); lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lst.bind(("127.0.0.1", 0)); lst.listen(1)
print(lst.getsockname()[1], flush=True)
cli, _ = lst.accept()
srv = socket.create_connection((sys.argv[1], int(sys.argv[2])))
rec = open(sys.argv[3], "wb")
def back():
    while (d := srv.recv(65536)):
        cli.sendall(d)
    cli.close()
threading.Thread(target=back, daemon=True).start()
while (d := cli.recv(65536)):
    rec.write(d); rec.flush(); srv.sendall(d)
srv.shutdown(socket.SHUT_WR)
EOP
ip netns exec "$RACK-h4" python3 "$work/relay.py" "$RACK_NET.3" 7001 "$work/recorded" >"$work/relay.port" &
relay=$!
wait_log "$work/relay.port" "[0-9]" 10
# b's own certificate, so the recorded connection is one c admits.
if rack_exec 4 "$BAD" --certs "$work/certs" --as b --expect c "127.0.0.1:$(cat "$work/relay.port")" \
	>"$work/bad.out" 2>&1; then
	wait_exit $relay 10 || kill $relay 2>/dev/null
	before=$(refusals)
	rack_exec 4 python3 -c '
import socket, sys
s = socket.create_connection((sys.argv[1], 7001)); s.sendall(open(sys.argv[2], "rb").read())
s.settimeout(5)
try:
    while s.recv(65536): pass
except OSError: pass' "$RACK_NET.3" "$work/recorded"
	t=0
	until [ "$(refusals)" -gt "$before" ] || [ $t -ge 50 ]; do sleep 0.1; t=$((t + 1)); done
	if [ "$(refusals)" -gt "$before" ]; then
		pass "a replayed TCP handshake ($(wc -c <"$work/recorded") bytes) is refused: $(grep "c: refused" "$work/log.c" | tail -1 | cut -d' ' -f3-)"
	else
		fail "a replayed handshake was not refused"
	fi
else
	fail "recording a proven connection: $(cat "$work/bad.out")"
fi

# --- a proven upstream off its path ------------------------------------------------------
# b may send c frames of chain 21 at service index 253 (a, the ingress, starts at 255 and
# each hop counts one down). Frames of another chain, or at 254 (as if b were skipped),
# are dropped and counted, with b named in the log.
if rack_exec 4 "$BAD" --certs "$work/certs" --as b --expect c --spi 21 --si 253 "$C" path \
	>"$work/path.out" 2>&1; then
	wait_log "$work/log.c" "dropped .* from upstream $RACK_NET.4:[0-9]* ('b')" 5 &&
		pass "frames off the path (another chain, a skipped stage) from a proven upstream are dropped: $(grep -o "dropped .* from upstream .*" "$work/log.c" | head -1)" ||
		fail "no log line for frames off the path"
else
	fail "sending frames off the path: $(cat "$work/path.out")"
fi

# --- the legit chain: everything arrives ------------------------------------------------
start 1 a
wait_exit "$pid_a" 60 || fail "a did not finish"
if wait_exit "$pid_c" 30; then
	lost=$(grep -o 'lost [0-9]*' "$work/log.c" | tail -1)
	[ "$(stat "$work/stats.c" egress_packets)" = "$PACKETS" ] && [ "$lost" = "lost 0" ] &&
		pass "the legit chain delivered all $PACKETS packets, 0 lost, while the rogues were refused" ||
		fail "legit chain: egress $(stat "$work/stats.c" egress_packets) of $PACKETS ($lost)"
else
	fail "c did not account for all $PACKETS packets"
	kill -9 "$pid_c"
fi
wrong=$(stat "$work/stats.c" drop_wrong_path)
[ "$wrong" = 6 ] && pass "c counted all 6 off the path (drop_wrong_path 6), and no frame of the legit chain" ||
	fail "c's drop_wrong_path is '$wrong', not 6"
refused=$(stat "$work/stats.c" auth_refused)
[ "${refused:-0}" -ge 4 ] && [ "$(stat "$work/stats.c" protect)" = auth ] &&
	pass "c counted $refused refusals (auth_refused), protect auth in its report" ||
	fail "c's auth_refused is '$refused'"
grep -q "upstream $RACK_NET.2:[0-9]* connected, proven as 'b'" "$work/log.c" &&
	pass "c names its proven upstream in the log" || fail "no proven upstream line"
kill -TERM "$pid_b"; wait_exit "$pid_b" 10 || kill -9 "$pid_b"

# --- an impersonated next hop -----------------------------------------------------------
# b is told its next hop c is on host4, where a node with the valid rack certificate
# 'rogue' listens: b must refuse it and send it nothing.
cat >"$work/imp.yaml" <<EOC
chain: {name: imp, spi: 21}
transport: {backoff_min_ms: 50, backoff_max_ms: 200, certs: $work/certs}
nodes:
  - {name: b, stages: [stamp], next: c,
     ingress: {mode: gen, count: 1000, flows: 5, rate: 0, wait_ms: 3000}}
  - {name: c, listen: "$RACK_NET.4:7001", stages: [stamp]}
EOC
cat >"$work/imp-rogue.yaml" <<EOC
chain: {name: imp, spi: 21}
transport: {certs: $work/certs}
nodes:
  - {name: rogue, listen: "$RACK_NET.4:7001", stages: [stamp], egress: {}}
EOC
start 4 rogue "$work/imp-rogue.yaml"
wait_log "$work/log.rogue" "listening on" || fail "the impersonator did not listen"
rack_exec 2 "$RDMESH" node --config "$work/imp.yaml" --name b --stats "$work/stats.imp" \
	>"$work/log.imp" 2>&1
grep -q "refused server $RACK_NET.4:7001: refused its certificate: hostname mismatch: expected 'c', the certificate names 'rogue'" "$work/log.imp" &&
	[ "$(stat "$work/stats.imp" auth_refused)" -ge 1 ] && [ "$(stat "$work/stats.imp" tx_frames)" = 0 ] &&
	pass "an impersonated next hop (valid certificate 'rogue' where 'c' was expected) is refused, nothing sent" ||
	{ fail "impersonated next hop"; cat "$work/log.imp"; }
kill -TERM "$pid_rogue"; wait_exit "$pid_rogue" 10 || kill -9 "$pid_rogue"
[ "$(stat "$work/stats.rogue" rx_frames)" = 0 ] && pass "the impersonator received no frame" ||
	fail "the impersonator received frames: $(grep ' rx ' "$work/log.rogue")"

# --- two nodes on one address -----------------------------------------------------------
sed "s/listen: $RACK_NET.2:7001/listen: $C/" "$work/chain.yaml" >"$work/dup.yaml"
if "$RDMESH" check "$work/dup.yaml" >"$work/dup.out" 2>&1; then
	fail "rdmesh check took two nodes on one address"
else
	grep -q "listen $C is node 'b''s address too" "$work/dup.out" &&
		pass "rdmesh check refuses two nodes on one address: $(cut -d' ' -f2- "$work/dup.out")" ||
		fail "check's message: $(cat "$work/dup.out")"
fi
mv "$work/log.c" "$work/log.c.1" # the next wait is for the new c's own line
start 3 c
wait_log "$work/log.c" "listening on" || fail "c did not listen again"
cat >"$work/second.yaml" <<EOC
chain: {name: second, spi: 21}
transport: {certs: $work/certs}
nodes:
  - {name: b, listen: "$C", stages: [stamp]}
EOC
rack_exec 3 timeout 20 "$RDMESH" node --config "$work/second.yaml" --name b >"$work/log.second" 2>&1
rc=$?
[ $rc = 1 ] && grep -q "cannot listen on $C: Address already in use" "$work/log.second" &&
	pass "a second node started on a taken address exits 1 at once: $(grep -o 'cannot listen.*' "$work/log.second")" ||
	fail "second node on a taken address: rc $rc: $(cat "$work/log.second")"
kill -TERM "$pid_c"; wait_exit "$pid_c" 10 || kill -9 "$pid_c"

# --- certificate rotation under traffic -----------------------------------------------------
# The chain runs on a copy of the rack's folder. Mid-traffic every node's files are
# replaced by ones from a new CA (the old CA still trusted beside the new one, for the
# change-over), and every node gets SIGHUP: no packet is lost and no connection is made
# again (its flows are not decided again), and from then on c proves itself with the new
# certificate: a client that trusts only the new CA reaches it, one that trusts only
# the old one refuses it.
rm -rf "$work/rot" "$work/new" "$work/only-new"
cp -r "$work/certs" "$work/rot"
"$RDMESH" ctl certs --out "$work/new" a b c >/dev/null || fail "new certificates"
RC=$RACK_NET.3:7201
cat >"$work/rot.yaml" <<EOC
chain: {name: rot, spi: 23}
transport: {backoff_min_ms: 50, backoff_max_ms: 200, certs: $work/rot}
nodes:
  - {name: a, stages: [stamp], next: b,
     ingress: {mode: gen, count: 9000, flows: 30, rate: 3000, seed: 8, wait_ms: 10000}}
  - {name: b, listen: "$RACK_NET.2:7201", stages: [stamp], next: c}
  - {name: c, listen: "$RC", stages: [stamp], egress: {}}
EOC
for f in a b c; do rm -f "$work/log.rot.$f" "$work/stats.rot.$f"; done
for h in 3:c 2:b 1:a; do
	ip netns exec "$RACK-h${h%%:*}" "$RDMESH" node --config "$work/rot.yaml" --name "${h#*:}" \
		--stats "$work/stats.rot.${h#*:}" >>"$work/log.rot.${h#*:}" 2>&1 &
	eval "rot_${h#*:}=$!"
	[ "${h#*:}" = a ] || wait_log "$work/log.rot.${h#*:}" "listening on" 10
done
wait_log "$work/log.rot.c" "egress: [0-9]* packets" 10 || fail "rotation: no traffic at c"
cat "$work/certs/ca.pem" "$work/new/ca.pem" >"$work/rot/ca.pem.new" && mv "$work/rot/ca.pem.new" "$work/rot/ca.pem"
for f in a b c; do
	for x in pem key; do cp "$work/new/$f.$x" "$work/rot/$f.$x.new" && mv "$work/rot/$f.$x.new" "$work/rot/$f.$x"; done
done
kill -HUP "$rot_c" "$rot_b" "$rot_a"
wait_exit "$rot_a" 60 || fail "rotation: the ingress did not finish"
mkdir -p "$work/only-new" && cp "$work/new/ca.pem" "$work/new/b.pem" "$work/new/b.key" "$work/only-new/"
rack_exec 4 "$BAD" --certs "$work/only-new" --as b --expect c "$RC" >"$work/rot.new.out" 2>&1
new_rc=$?
rack_exec 4 "$BAD" --certs "$work/certs" --as b --expect c "$RC" >"$work/rot.old.out" 2>&1
old_rc=$?
wait_log "$work/log.rot.b" "upstream .* disconnected" 10
kill -TERM "$rot_b"; wait_exit "$rot_b" 10 || kill -9 "$rot_b"
wait_log "$work/log.rot.c" "upstream $RACK_NET.2:[0-9]* disconnected" 10
kill -TERM "$rot_c"; wait_exit "$rot_c" 10 || kill -9 "$rot_c"
got=$(stat "$work/stats.rot.c" egress_packets) lost=$(stat "$work/stats.rot.c" egress_lost)
if [ "$got" = 9000 ] && [ "$lost" = 0 ] && [ "$(stat "$work/stats.rot.a" down_connects)" = 1 ] &&
	[ "$(stat "$work/stats.rot.b" down_connects)" = 1 ] &&
	grep -q "certificates read again" "$work/log.rot.b"; then
	pass "certificates rotated to a new CA under traffic: 9000 of 9000 delivered, 0 lost, no hop connected again"
else
	fail "rotation: delivered '$got', lost '$lost', connects a '$(stat "$work/stats.rot.a" down_connects)' b '$(stat "$work/stats.rot.b" down_connects)'"
	cat "$work/log.rot.b"
fi
[ $new_rc = 0 ] && [ $old_rc != 0 ] && grep -q "certificate verify failed" "$work/rot.old.out" &&
	pass "after the rotation c proves itself with the new certificate: a client of the new CA reaches it, one of the old CA refuses it" ||
	fail "after the rotation: new CA client rc $new_rc ($(cat "$work/rot.new.out")), old CA client rc $old_rc ($(cat "$work/rot.old.out"))"

# --- protect: encrypt: what an eavesdropper on the rack network sees ------------------------
# host1 sends generated HTTP, TLS and DNS to host2 while tcpdump on host2 keeps the hop's
# bytes. With auth the packets travel in the clear after the handshake (HTTP headers are
# there to read); with encrypt nothing of them is, and everything still arrives.
# sees MODE: runs the hop with protect MODE; prints how many HTTP User-Agent lines the
# capture shows, then what the egress counted.
sees() {
	cat >"$work/enc.yaml" <<EOC
chain: {name: enc, spi: 22}
transport: {certs: $work/certs, protect: $1}
nodes:
  - {name: a, stages: [stamp], next: b,
     ingress: {mode: gen, count: 4000, flows: 40, rate: 0, seed: 5, wait_ms: 10000}}
  - {name: b, listen: "$RACK_NET.2:7101", stages: [stamp], egress: {count: 4000}}
EOC
	rm -f "$work/enc.pcap" "$work/tcpdump.err"
	ip netns exec "$RACK-h2" tcpdump -i eth0 -w "$work/enc.pcap" -U "tcp port 7101" 2>"$work/tcpdump.err" &
	local td=$!
	wait_log "$work/tcpdump.err" "listening on" 10
	ip netns exec "$RACK-h2" "$RDMESH" node --config "$work/enc.yaml" --name b --stats "$work/stats.enc" \
		>"$work/log.enc.b" 2>&1 &
	local pb=$!
	wait_log "$work/log.enc.b" "listening on" 10
	ip netns exec "$RACK-h1" "$RDMESH" node --config "$work/enc.yaml" --name a >"$work/log.enc.a" 2>&1
	wait_exit $pb 30 || kill -9 $pb
	kill -INT $td
	wait $td 2>/dev/null
	echo "$(grep -ac 'User-Agent:' "$work/enc.pcap") $(stat "$work/stats.enc" egress_packets)"
}
read -r clear_ua clear_n <<<"$(sees auth)"
read -r enc_ua enc_n <<<"$(sees encrypt)"
[ "${clear_ua:-0}" -gt 0 ] && [ "$enc_ua" = 0 ] && [ "$enc_n" = 4000 ] && [ "$clear_n" = 4000 ] &&
	[ "$(stat "$work/stats.enc" protect)" = encrypt ] &&
	pass "protect: encrypt hides the packets from the wire: HTTP User-Agent lines captured: auth $clear_ua, encrypt 0; 4000 of 4000 delivered both times" ||
	fail "encrypt: User-Agent lines auth '$clear_ua' encrypt '$enc_ua', delivered $clear_n / $enc_n"

for f in c.1 b a; do echo "--- $f"; grep -v "ingress:\|egress:" "$work/log.$f" | head -30; done
