#!/usr/bin/env bash
# The orchestrator, end to end, on four namespace hosts (configs/rack.yaml: host N is
# 10.77.0.N; the orchestrator runs on host1 at 10.77.0.1:7000). Every node is
# `rdmesh node --orch`, every change goes through `rdmesh ctl`:
#   1. deploy configs/rack.yaml + configs/chain.yaml: ctl status shows every replica
#      running; refused, with the deployment untouched: broken YAML (ctl apply), a
#      certificate from another CA, an expired one, a name not in the rack; ctl apply,
#      drain and logs;
#   2. scale dpi 1 -> 3 -> 1 while traffic flows: no loss, every flow in order through
#      one dpi replica (chaincheck on the egress's frames, the flow log, the per-replica
#      dpi counters), and both leaving replicas drained;
#   3. kill -9 a node: its replica comes back elsewhere within the dead time, and the
#      loss is confined to flows through it, and counted;
#   4. the same with the node's link cut (ip link set down), then restored;
#   5. kill the orchestrator during traffic: forwarding goes on; restart it: it
#      reconciles without redeploying anything; a replayed old epoch is refused; an
#      orchestrator that lost its state moves past the nodes' epoch.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/rack.sh
BUILD=${BUILD:-build}
RDMESH=$PWD/$BUILD/rdmesh
CHECK=$PWD/$BUILD/tools/chaincheck
REPLAY=$PWD/$BUILD/tools/orchreplay
work=$(mktemp -d /tmp/rdm-orch.XXXXXX)
ORCH=$RACK_NET.1:7000
# Heartbeats on a loaded 2-core host can be a second late: a dead time of 3 s declares no
# living node dead (its replicas would run twice), yet a dead one is replaced within seconds.
DEAD_MS=3000
trap 'rack_down; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; }

rack_up 4 || { fail "rack set-up"; exit 1; }
"$RDMESH" ctl certs --out "$work/certs" orch ctl host1 host2 host3 host4 host9 >/dev/null &&
	"$RDMESH" ctl certs --out "$work/rogue" host4 >/dev/null || { fail "certificates"; exit 1; }
# The rogue node trusts the rack's CA, but its own certificate comes from another CA.
cp "$work/certs/ca.pem" "$work/rogue/ca.pem"
# host3's certificate from the rack's CA, expired yesterday.
mkdir -p "$work/expired" && cp "$work/certs/ca.pem" "$work/certs/ca.key" "$work/expired/" &&
	"$RDMESH" ctl certs --out "$work/expired" --days -1 host3 >/dev/null || { fail "expired certificate"; exit 1; }
mkdir -p build/demo # configs/chain.yaml writes its flow log there
PACKETS=30000
"$RDMESH" gen --flows 300 --packets $PACKETS --seed 21 --out "$work/in.pcap" >/dev/null ||
	{ fail "generate capture"; exit 1; }

ctl() { rack_exec 1 "$RDMESH" ctl --orch "$ORCH" --certs "$work/certs" "$@"; }

# orch_start CHAIN: the orchestrator on host1, its state in $work/RUN.state.
orch_start() {
	ip netns exec "$RACK-h1" "$RDMESH" orch --rack configs/rack.yaml --chain "$1" --certs "$work/certs" \
		--state "$work/$run.state" --dead-ms $DEAD_MS >>"$work/$run.orch.log" 2>&1 &
	pid_orch=$!
}

# agent I: host I's node agent; its files in $work/RUN.hostI.
agent() {
	ip netns exec "$RACK-h$1" "$RDMESH" node --orch "$ORCH" --name "host$1" --certs "$work/certs" \
		--dir "$work/$run.host$1" >>"$work/$run.host$1.log" 2>&1 &
	eval "pid_$1=$!"
}

stop_all() {
	for i in 1 2 3 4; do kill -TERM "$(eval echo "\${pid_$i:-0}")" 2>/dev/null; done
	for i in 1 2 3 4; do wait_exit "$(eval echo "\${pid_$i:-0}")" 20 2>/dev/null || kill -9 "$(eval echo "\${pid_$i:-0}")" 2>/dev/null; done
	kill -TERM "${pid_orch:-0}" 2>/dev/null
	wait_exit "${pid_orch:-0}" 10 2>/dev/null
	pid_1=0 pid_2=0 pid_3=0 pid_4=0 pid_orch=0
}

# a replica's row: ID NODE STATE
replica_is() { until_status "$4" "\$1 == \"$1\" && \$3 == \"$2\" && \$5 == \"$3\" { ok = 1 } END { exit !ok }"; }
# up_is ID...: an awk program over ctl status: each replica ID is up, i.e. running, or done
# when it has already finished its run (an edge whose traffic ended).
up_is() {
	local ids=""
	for id in "$@"; do ids="$ids && r[\"$id\"]"; done
	echo "(\$5 == \"running\" || \$5 == \"done\") && \$1 ~ /-[0-9]+\$/ { r[\$1] = 1 } END { exit !(1 $ids) }"
}
# frames_is SECS ID...: until ctl status shows every replica ID has handled frames.
frames_is() {
	local secs=$1 ids=""
	shift
	for id in "$@"; do ids="$ids && f[\"$id\"] > 0"; done
	until_status "$secs" "\$1 ~ /-[0-9]+\$/ && \$7 ~ /^[0-9]+\$/ { f[\$1] = \$7 } END { exit !(1 $ids) }"
}
epoch_now() { ctl status 2>/dev/null | sed -n 's/.*  epoch \([0-9]*\) .*/\1/p'; }

# chain DPI EXTRA_STAGE: the test chain. With EXTRA_STAGE=1 a source stage feeds the edge,
# so the edge (whose steering the test watches) outlives the replay.
chain() {
	cat <<EOF
chain: {name: orchtest, spi: 13}
transport: {backoff_min_ms: 10, backoff_max_ms: 100, drain_ms: 20000, keepalive_ms: 1000}
flows: {tcp_closed_ms: 300, udp_idle_ms: 1500, other_idle_ms: 1500}
stages:
EOF
	[ "$2" = 1 ] && cat <<EOF
  - name: src
    run: [stamp]
    placement: {labels: {zone: a}}
    ingress: {mode: pcap, file: $work/in.pcap, rate: 5000, wait_ms: 15000}
EOF
	cat <<EOF
  - name: edge
    run: [stamp, {name: identity, directory: $PWD/configs/directory.yaml}]
    placement: {labels: {zone: a}}
EOF
	[ "$2" = 1 ] || cat <<EOF
    ingress: {mode: pcap, file: $work/in.pcap, rate: 5000, wait_ms: 15000}
EOF
	cat <<EOF
  - name: dpi
    run: [stamp, dpi]
    replicas: $1
  - name: log
    run: [stamp, {name: flowlog, file: $work/$run.flows.json, interval_s: 0}]
    placement: {labels: {zone: b}}
    egress: {frames: $work/$run.frames.pcap, count: $PACKETS}
EOF
}

# wait_file PATH SECS
wait_file() {
	local t=0
	until [ -s "$1" ] || [ $t -ge $(($2 * 10)) ]; do sleep 0.1; t=$((t + 1)); done
	[ -s "$1" ]
}
# started I: 0 once host I's ingress replica is replaying
started() {
	local t=0
	until grep -q 'w0 ingress' "$work/$run.host$1.log" 2>/dev/null || [ $t -ge 150 ]; do sleep 0.1; t=$((t + 1)); done
}

# --- 1. deploy the configs/ examples; refusals leave it untouched ------------------------
run=deploy
orch_start configs/chain.yaml
for i in 1 2 3 4; do agent $i; done
if until_status 20 "$(up_is edge-1 dpi-1 log-1)"; then
	pass "deploy configs/rack.yaml + configs/chain.yaml: ctl status shows edge-1, dpi-1, log-1 up ($(awk '$1 ~ /^(edge|dpi|log)-1$/ { printf "%s on %s; ", $1, $3 }' "$work/status"))"
else
	fail "deploy: not every replica running: $(cat "$work/status")"
fi
# The data plane is proven in orchestrated mode too: each replica proves itself with
# its host's certificate, and dpi-1 (on host2) takes frames only from its upstream's host.
dpi_at=$(awk '$1 == "dpi-1" { print $4 }' "$work/status")
ip netns exec "$RACK-h4" "$PWD/$BUILD/tools/badframes" "$dpi_at" >/dev/null 2>&1
ip netns exec "$RACK-h4" "$PWD/$BUILD/tools/badframes" --certs "$work/certs" --as host4 --expect host2 \
	"$dpi_at" >"$work/bad.host4" 2>&1
t=0
until { grep -q "dpi-1: refused client $RACK_NET.4:[0-9]*: TLS handshake failed" "$work/deploy.host2.log" &&
	grep -q "dpi-1: refused client $RACK_NET.4:[0-9]*: refused 'host4': 'host4' is not an upstream of node 'dpi-1'" \
		"$work/deploy.host2.log"; } 2>/dev/null || [ $t -ge 50 ]; do
	sleep 0.1
	t=$((t + 1))
done
if [ $t -lt 50 ] && grep -q "refused us: 'host4' is not an upstream" "$work/bad.host4"; then
	pass "orchestrated data plane: dpi-1 ($dpi_at) refuses a sender with no certificate and host4's valid certificate (not its upstream's host)"
else
	fail "orchestrated data plane rogues: $(grep 'dpi-1: refused' "$work/deploy.host2.log" | head -2) / $(cat "$work/bad.host4")"
fi
e0=$(epoch_now)
sed 's/^    replicas: 1$/    replcas: 1/' configs/chain.yaml >"$work/broken.yaml"
if out=$(ctl apply --yes "$work/broken.yaml" 2>&1); then
	fail "broken YAML applied: $out"
elif grep -qE "broken.yaml:[0-9]+:[0-9]+: .*unknown key 'replcas' \(did you mean 'replicas'\?\)" <<<"$out" &&
	grep -q "nothing changed" <<<"$out" && [ "$(epoch_now)" = "$e0" ]; then
	pass "broken YAML refused: $(head -1 <<<"$out" | sed "s|$work/||"); epoch still $e0"
else
	fail "broken YAML: '$out', epoch $(epoch_now) (was $e0)"
fi
# Hostile files for ctl apply: a 100,000-key mapping (its duplicate-key check was
# quadratic and froze the orchestrator's loop for tens of seconds), and a FIFO (which
# blocked it until someone wrote). Each is refused; ctl status answers right after, no
# node is declared dead and the epoch stays.
python3 -c 'import sys; sys.stdout.write("".join("k%d: %d\n" % (i, i) for i in range(100000)))' >"$work/huge.yaml"
mkfifo "$work/fifo.yaml"
out_huge=$(ctl apply --yes "$work/huge.yaml" 2>&1)
out_fifo=$(ctl apply --yes "$work/fifo.yaml" 2>&1)
if grep -q "huge.yaml:1:1: unknown key 'k0'" <<<"$out_huge" && grep -q "fifo.yaml: not a regular file" <<<"$out_fifo" &&
	ctl status >/dev/null 2>&1 && [ "$(epoch_now)" = "$e0" ] && ! grep -q 'dead; epoch' "$work/deploy.orch.log"; then
	pass "hostile ctl apply: a 100,000-key mapping ('$(head -1 <<<"$out_huge" | sed "s|$work/||")') and a FIFO ('$(head -1 <<<"$out_fifo" | sed "s|$work/||")') refused; status answers, epoch still $e0, no node declared dead"
else
	fail "hostile apply: '$out_huge' / '$out_fifo', epoch $(epoch_now) (was $e0)"
fi
# Files that take seconds to read are checked off the loop that hears the nodes: a
# 100,000-node rack given as a chain, and 12 MB of one flow sequence. ctl status answers
# while they are read (asked once the orchestrator logged the check under way); each is
# refused; no node is declared dead and the epoch stays.
python3 -c 'import sys; sys.stdout.write("nodes:\n" + "".join("  - {name: n%d, control: 10.1.%d.%d, data: 10.1.%d.%d, capacity: 4}\n" % (i, i // 250, i % 250, i // 250, i % 250) for i in range(100000)))' >"$work/rack100k.yaml"
python3 -c 'import sys; sys.stdout.write("chain: {name: big, spi: 9}\nstages: [" + ",".join("1" for _ in range(4000000)) + "]\n")' >"$work/seq.yaml"
for f in rack100k seq; do
	t0=$(date +%s%N)
	ctl apply --yes "$work/$f.yaml" >"$work/apply.$f" 2>&1 &
	pid_apply=$!
	wait_log "$work/deploy.orch.log" "ctl apply .*/$f.yaml: checking it" 10 # under way
	ts=$(date +%s%N)
	ctl status >/dev/null 2>&1
	st_rc=$?
	st_ms=$((($(date +%s%N) - ts) / 1000000))
	wait $pid_apply
	eval "${f}_ms=$((($(date +%s%N) - t0) / 1000000)) ${f}_st=$st_ms ${f}_rc=$st_rc"
done
if [ "$rack100k_rc" = 0 ] && [ "$seq_rc" = 0 ] && [ "$rack100k_st" -lt 1500 ] && [ "$seq_st" -lt 1500 ] &&
	grep -q "nothing changed" "$work/apply.rack100k" && grep -q "nothing changed" "$work/apply.seq" &&
	[ "$(epoch_now)" = "$e0" ] && ! grep -q 'dead; epoch' "$work/deploy.orch.log"; then
	pass "slow files checked off the loop: a 100,000-node rack as a chain ('$(head -1 "$work/apply.rack100k" | sed "s|$work/||")', $rack100k_ms ms) and 12 MB of one sequence ('$(head -1 "$work/apply.seq" | sed "s|$work/||" | cut -c1-80)', $seq_ms ms) refused; ctl status answered meanwhile in $rack100k_st and $seq_st ms; epoch still $e0, no node declared dead"
else
	fail "slow files: status rc $rack100k_rc/$seq_rc in $rack100k_st/$seq_st ms; '$(cat "$work/apply.rack100k")' / '$(head -c 300 "$work/apply.seq")', epoch $(epoch_now) (was $e0)"
fi
# A certificate from another CA, and a name the rack does not have.
ip netns exec "$RACK-h4" "$RDMESH" node --orch "$ORCH" --name host4 --certs "$work/rogue" \
	--dir "$work/rogue.dir" >"$work/rogue.log" 2>&1 &
pid_rogue=$!
ip netns exec "$RACK-h2" "$RDMESH" node --orch "$ORCH" --name host9 --certs "$work/certs" \
	--dir "$work/host9.dir" >"$work/host9.log" 2>&1 &
pid_h9=$!
ip netns exec "$RACK-h3" "$RDMESH" node --orch "$ORCH" --name host3 --certs "$work/expired" \
	--dir "$work/expired.dir" >"$work/expired.log" 2>&1 &
pid_exp=$!
# Until both sides of each refusal have said so (within 20 s).
t=0
until { grep -q "refused: .*unable to get local issuer" "$work/deploy.orch.log" &&
	grep -q "alert unknown ca" "$work/rogue.log" && grep -q "unknown node 'host9'" "$work/host9.log" &&
	grep -q "unknown node 'host9'" "$work/deploy.orch.log" && grep -q "alert certificate expired" "$work/expired.log" &&
	grep -q "refused: .*certificate has expired" "$work/deploy.orch.log"; } 2>/dev/null || [ $t -ge 200 ]; do
	sleep 0.1
	t=$((t + 1))
done
kill -TERM $pid_rogue $pid_h9 $pid_exp 2>/dev/null
wait_exit $pid_rogue 10
wait_exit $pid_h9 10
wait_exit $pid_exp 10
if grep -q "refused: .*unable to get local issuer" "$work/deploy.orch.log" &&
	grep -q "alert unknown ca" "$work/rogue.log"; then
	pass "a certificate from another CA is refused, on both sides: orch '$(grep -m1 -o 'refused: .*unable to get local issuer[^(]*' "$work/deploy.orch.log")'; node '$(grep -m1 -o 'orchestrator .*' "$work/rogue.log" | cut -c1-110)'"
else
	fail "rogue certificate: orch log '$(grep refused "$work/deploy.orch.log" | head -2)' node log '$(head -3 "$work/rogue.log")'"
fi
if grep -q "unknown node 'host9'" "$work/deploy.orch.log" && grep -q "unknown node 'host9'" "$work/host9.log" &&
	grep -q "refused: .*certificate has expired" "$work/deploy.orch.log" && grep -q "alert certificate expired" "$work/expired.log"; then
	pass "an expired certificate is refused, on both sides: orch '$(grep -m1 -o 'refused: .*certificate has expired' "$work/deploy.orch.log")'"
else
	fail "expired certificate: orch log '$(grep expired "$work/deploy.orch.log" | head -2)' node log '$(head -3 "$work/expired.log")'"
fi
if grep -q "unknown node 'host9'" "$work/deploy.orch.log" && grep -q "unknown node 'host9'" "$work/host9.log"; then
	pass "a name not in the rack is refused, on both sides: '$(grep -m1 -o "unknown node 'host9'.*" "$work/host9.log" | cut -c1-80)'"
else
	fail "host9: orch log '$(grep host9 "$work/deploy.orch.log" | head -2)' node log '$(head -3 "$work/host9.log")'"
fi
if until_status 5 '$1 == "host4" && $2 == "up" { h = 1 }
	($5 == "running" || $5 == "done") && $1 ~ /-[0-9]+$/ { r[$1] = 1 }
	END { exit !(r["edge-1"] && r["dpi-1"] && r["log-1"] && h) }' &&
	[ "$(epoch_now)" = "$e0" ]; then
	pass "after the refusals the deployment is untouched: epoch $e0, host4 still up, every replica up"
else
	fail "deployment changed by refused peers: $(cat "$work/status")"
fi
# A flood at the orchestrator's port from another address on host4: 200 idle TCP
# connections and 200 TLS handshakes that stall after their first bytes. ctl status
# still answers, and host4's node agent, started again meanwhile, joins.
ip -n "$RACK-h4" addr add "$RACK_NET.44/24" dev eth0
cat >"$work/flood.py" <<'EOP'
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
held = []
for i in range(400):
    s = socket.socket()
    s.setblocking(False)
    s.bind((sys.argv[3], 0))
    try:
        s.connect((host, port))
    except BlockingIOError:
        pass
    held.append(s)
time.sleep(0.5)
for s in held[200:]:
    try:
        s.send(b"\x16\x03\x01\x02\x00")  # a TLS record header, and nothing after it
    except OSError:
        pass
print("flooding", flush=True)
time.sleep(float(sys.argv[4]))
EOP
rack_exec 4 python3 "$work/flood.py" "${ORCH%:*}" "${ORCH##*:}" "$RACK_NET.44" 15 >"$work/flood.out" 2>&1 &
flood=$!
t=0
until grep -q flooding "$work/flood.out" 2>/dev/null || [ $t -ge 100 ]; do sleep 0.1; t=$((t + 1)); done
t0=$(date +%s%N)
ctl status >"$work/status.flood" 2>&1
st_rc=$? st_ms=$((($(date +%s%N) - t0) / 1000000))
kill -TERM "$pid_4"
wait "$pid_4" 2>/dev/null
n_conn=$(grep -c 'host4: connected from' "$work/deploy.orch.log")
t0=$(date +%s%N)
agent 4
t=0
until [ "$(grep -c 'host4: connected from' "$work/deploy.orch.log")" -gt "$n_conn" ] || [ $t -ge 100 ]; do sleep 0.05; t=$((t + 1)); done
join_ms=$((($(date +%s%N) - t0) / 1000000))
if [ $st_rc = 0 ] && [ "$(grep -c 'host4: connected from' "$work/deploy.orch.log")" -gt "$n_conn" ] &&
	grep -q 'refused .* connections at once' "$work/deploy.orch.log"; then
	pass "a flood of 200 idle connections and 200 stalled TLS handshakes: ctl status answered in $st_ms ms, host4's agent started again joined in $join_ms ms; '$(grep -o 'refused [0-9]* connections at once.*' "$work/deploy.orch.log" | head -1)'"
else
	fail "under a flood: ctl status rc $st_rc ($st_ms ms): $(head -3 "$work/status.flood"); host4 joined: $(grep -c 'host4: connected from' "$work/deploy.orch.log") (was $n_conn) after $join_ms ms"
fi
kill "$flood" 2>/dev/null
wait "$flood" 2>/dev/null
ip -n "$RACK-h4" addr del "$RACK_NET.44/24" dev eth0
# ctl apply: the same chain with two dpi replicas (paths made absolute: it lives elsewhere).
awk -v d="$PWD" '/^  - name: dpi/ { dpi = 1 } dpi && /^    replicas: 1$/ { $0 = "    replicas: 2"; dpi = 0 }
	{ sub(/directory: directory.yaml/, "directory: " d "/configs/directory.yaml")
	  sub(/file: policy.yaml/, "file: " d "/configs/policy.yaml")
	  sub(/file: ..\/build\/demo\/flows.json/, "file: " d "/build/demo/flows.json"); print }' \
	configs/chain.yaml >"$work/two.yaml"
ctl apply --dry-run "$work/two.yaml" >"$work/dry" 2>&1
e1=$(epoch_now)
if grep -q "+ dpi-2 on host" "$work/dry" && grep -q "dry run: nothing applied" "$work/dry" && [ "$e1" = "$e0" ] &&
	ctl apply --yes "$work/two.yaml" >"$work/apply" 2>&1 && grep -q "applied: epoch $((e0 + 1))" "$work/apply" &&
	replica_is dpi-2 host4 running 10; then
	pass "ctl apply: the dry run shows '$(grep -o '+ dpi-2 on host[0-9]' "$work/dry")' and changes nothing; applied, epoch $((e0 + 1)), dpi-2 running on host4"
else
	fail "ctl apply: dry run '$(cat "$work/dry")' apply '$(cat "$work/apply" 2>/dev/null)' status $(cat "$work/status")"
fi
# ctl drain: host2's replica moves, host2 gets no new ones.
if ctl drain host2 >"$work/drain" 2>&1 && grep -q "~ dpi-1: host2 -> host" "$work/drain" &&
	to=$(sed -n 's/.*~ dpi-1: host2 -> \(host[0-9]\).*/\1/p' "$work/drain") &&
	replica_is dpi-1 "$to" running 10 && awk '$1 == "host2" && $2 == "drained" { ok = 1 } END { exit !ok }' "$work/status"; then
	pass "ctl drain host2: dpi-1 runs on $to, host2 is drained ($(tr '\n' ' ' <"$work/drain" | tr -s ' '))"
else
	fail "ctl drain: '$(cat "$work/drain")' status $(cat "$work/status")"
fi
# ctl logs: the orchestrator's own account of the above.
if ctl logs 200 >"$work/logs" 2>&1 && grep -q "ctl scale\|ctl apply" "$work/logs" &&
	grep -q "ctl drain host2" "$work/logs" && grep -q "refused: .*unknown node 'host9'" "$work/logs"; then
	pass "ctl logs tells the story: $(grep -c . "$work/logs") lines, e.g. '$(grep -m1 -o 'ctl drain host2.*' "$work/logs")'"
else
	fail "ctl logs: $(tail -5 "$work/logs")"
fi
stop_all

# --- 2. scale dpi 1 -> 3 -> 1 under traffic --------------------------------------------
run=scale
chain 1 1 >"$work/scale.yaml"
orch_start "$work/scale.yaml"
for i in 1 2 3 4; do agent $i; done
started 1
# Scale up once dpi-1 carries traffic, and down once both new replicas have carried some
# (each within 20 s): every dpi replica must get flows while in the table.
frames_is 20 dpi-1 || fail "ctl status showed no frames through dpi-1: $(cat "$work/status")"
# Certificates handed out under traffic: every node makes a new key and gets a 30-day
# certificate from the orchestrator's CA; then a new epoch. The replicas added next
# prove themselves with the new ones; nothing of the traffic may be lost.
old_sum=$(cat "$work"/certs/host[1-4].pem | sha256sum)
e_before=$(epoch_now)
ctl renew 30 >"$work/renew" 2>&1 || fail "ctl renew: $(cat "$work/renew")"
t=0
until grep -q 'certificates renewed on' "$work/scale.orch.log" || [ $t -ge 200 ]; do sleep 0.1; t=$((t + 1)); done
new_sum=$(cat "$work"/certs/host[1-4].pem | sha256sum)
days=$(( ($(date -d "$(openssl x509 -enddate -noout -in "$work/certs/host2.pem" | cut -d= -f2)" +%s) - $(date +%s)) / 86400 ))
if grep -q 'certificates renewed on 4 nodes (0 failed): epoch' "$work/scale.orch.log" && [ "$old_sum" != "$new_sum" ] &&
	[ "$days" -ge 29 ] && [ "$days" -le 30 ] && [ "$(grep -c 'new key and certificate installed' "$work"/scale.host[1-4].log | awk -F: '{ s += $2 } END { print s }')" = 4 ]; then
	pass "ctl renew under traffic: 4 nodes made new keys and installed certificates from the orchestrator (valid $days days), epoch $e_before -> $(epoch_now): '$(grep -o 'certificates renewed on.*' "$work/scale.orch.log" | head -1)'"
else
	fail "ctl renew: $(cat "$work/renew"); orch: $(grep -i 'renew\|certificate' "$work/scale.orch.log" | tail -5); days '$days'"
fi
ctl scale dpi 3 >"$work/scale.up" 2>&1 || fail "ctl scale dpi 3: $(cat "$work/scale.up")"
frames_is 20 dpi-2 dpi-3 || fail "ctl status showed no frames through dpi-2 and dpi-3: $(cat "$work/status")"
ctl scale dpi 1 >"$work/scale.down" 2>&1 || fail "ctl scale dpi 1: $(cat "$work/scale.down")"
wait_file "$work/scale.host4/log-1.stats" 60 || fail "the egress did not account for every packet"
# The leaving replicas stop once the edge drained them (flows end: TCP closed, UDP idle).
t=0
until [ "$(grep -c 'steering: replica .* drained' "$work/scale.host2.log")" -ge 2 ] || [ $t -ge 150 ]; do sleep 0.1; t=$((t + 1)); done
stop_all
grep -q "+ dpi-2" "$work/scale.up" && grep -q "+ dpi-3" "$work/scale.up" &&
	grep -q "\- dpi-2" "$work/scale.down" && grep -q "\- dpi-3" "$work/scale.down" &&
	pass "ctl scale dpi 3, then 1: $(tr '\n' ' ' <"$work/scale.up" | tr -s ' ')/ $(tr '\n' ' ' <"$work/scale.down" | tr -s ' ')" ||
	fail "scale replies: $(cat "$work/scale.up" "$work/scale.down")"
if "$CHECK" --in "$work/in.pcap" --frames "$work/scale.frames.pcap" --egress-stats "$work/scale.host4/log-1.stats" \
	--hops "101,201,301|302|303,401" >"$work/check" 2>&1; then
	pass "scale 1 -> 3 -> 1 through the orchestrator under traffic: $(head -1 "$work/check" | sed 's/^chaincheck: //'); every flow in order through one dpi replica ($(sed -n 's/^chaincheck: hop 2 flows per replica: //p' "$work/check"))"
else
	fail "chaincheck: $(tail -5 "$work/check")"
fi
per=$(sed -n 's/^chaincheck: hop 2 flows per replica: //p' "$work/check")
[ -n "$per" ] && ! grep -qE '=0( |$)' <<<"$per" && pass "every dpi replica got new flows while in the table ($per)" ||
	fail "a replica got no flow: '$per'"
sum=0
for f in "$work"/scale.host*/dpi-*.stats; do sum=$((sum + $(stat "$f" stage_dpi_flows))); done
flows=$(sed -n 's/.* in \([0-9]*\) flows.*/\1/p' "$work/check" | head -1)
[ "$sum" = "$flows" ] && pass "the dpi replicas' counters add up: $sum flows inspected, $flows at the egress" ||
	fail "dpi flows $sum (stats: $(ls "$work"/scale.host*/dpi-*.stats)), egress flows $flows"
# The flow log: one line per flow, each naming one dpi replica among its hops.
if python3 - "$work/scale.flows.json" "$flows" <<'EOF'
import json, sys
ids, bad, n = {}, 0, 0
for line in open(sys.argv[1]):
    d = json.loads(line)
    if d.get("event") == "update":
        continue
    n += 1
    hop = {h[k] for h in d.get("hops", []) for k in ("from", "to")}
    dpi = hop & {301, 302, 303}
    bad += len(dpi) != 1
    for x in dpi:
        ids[x] = ids.get(x, 0) + 1
print(f"flow log: {n} flows, {bad} with other than one dpi replica; per replica {dict(sorted(ids.items()))}")
sys.exit(bad != 0 or n != int(sys.argv[2]))
EOF
then pass "$(python3 - "$work/scale.flows.json" "$flows" 2>&1 <<'EOF' | tail -1
import json, sys
ids, n = {}, 0
for line in open(sys.argv[1]):
    d = json.loads(line)
    if d.get("event") == "update":
        continue
    n += 1
    for x in {h[k] for h in d.get("hops", []) for k in ("from", "to")} & {301, 302, 303}:
        ids[x] = ids.get(x, 0) + 1
print(f"the flow log agrees: {n} flows, each through one dpi replica {dict(sorted(ids.items()))}")
EOF
)"
else
	fail "flow log: $(python3 -c 'import sys' 2>&1) $(head -c 300 "$work/scale.flows.json")"
fi
idle=$(stat "$work/scale.host2/edge-1.stats" drained_idle)
late=$(stat "$work/scale.host2/edge-1.stats" drain_timeouts)
[ "$idle" = 2 ] && [ "$late" = 0 ] &&
	pass "both leaving replicas drained idle (drained_idle $idle, drain_timeouts $late) and stopped: $(grep -ho 'dpi-[23]: stopped' "$work"/scale.host*.log | tr '\n' ' ')" ||
	fail "drain counters: drained_idle '$idle' drain_timeouts '$late'"

# --- 3 and 4. a node dies: kill -9, then a cut link --------------------------------------
# dpi has 3 replicas from the start; dpi-3 is host4's only replica.
node_dies() { # RUN HOW
	run=$1
	chain 3 0 >"$work/$run.yaml"
	orch_start "$work/$run.yaml"
	for i in 1 2 3 4; do agent $i; done
	replica_is dpi-3 host4 running 20 || fail "$run: dpi-3 not running on host4: $(cat "$work/status")"
	started 1
	# host4 goes once its dpi-3 carries flows (their loss is what the run checks).
	frames_is 20 dpi-3 || fail "$run: ctl status showed no frames through dpi-3: $(cat "$work/status")"
	t0=$(date +%s%N)
	if [ "$2" = kill ]; then
		kill -9 "$pid_4"
	else
		ip -n "$RACK-h4" link set eth0 down
	fi
	if replica_is dpi-3 host1 running $((DEAD_MS / 1000 + 10)); then
		ms=$((($(date +%s%N) - t0) / 1000000))
		[ $ms -le $((DEAD_MS + 3000)) ] &&
			pass "$run: dpi-3 runs on host1 ${ms} ms after host4 went (dead after ${DEAD_MS} ms of silence)" ||
			fail "$run: dpi-3 moved only after $ms ms"
	else
		fail "$run: dpi-3 did not come back elsewhere: $(cat "$work/status")"
	fi
	wait_file "$work/$run.host3/log-1.stats" 60 || fail "$run: the egress did not finish"
	if [ "$2" = link ]; then
		ip -n "$RACK-h4" link set eth0 up
		t=0
		until grep -q "host4: back after being declared dead" "$work/$run.orch.log" || [ $t -ge 100 ]; do sleep 0.1; t=$((t + 1)); done
		t=0
		until grep -q "dpi-3: stopped" "$work/$run.host4.log" || [ $t -ge 100 ]; do sleep 0.1; t=$((t + 1)); done
		grep -q "host4: back after being declared dead" "$work/$run.orch.log" &&
			grep -q "dpi-3: stopped" "$work/$run.host4.log" &&
			pass "$run: link restored: host4 is back, eligible again, and stopped its stale dpi-3" ||
			fail "$run: after the link came back: $(grep host4 "$work/$run.orch.log" | tail -3)"
	fi
	stop_all
	if "$CHECK" --in "$work/in.pcap" --frames "$work/$run.frames.pcap" --egress-stats "$work/$run.host3/log-1.stats" \
		--hops "101,201|202|203,301" --loss-via 203 --maglev dpi-1,dpi-2,dpi-3 --via-name dpi-3 >"$work/check" 2>&1; then
		pass "$run: $(head -1 "$work/check" | sed 's/^chaincheck: //'); $(sed -n 's/^chaincheck: //p' "$work/check" | grep 'via node'); the egress counted the same loss"
	else
		fail "$run: chaincheck: $(tail -5 "$work/check")"
	fi
}
node_dies kill kill
node_dies link link

# --- 5. the orchestrator dies and comes back; a replayed epoch ------------------------------
run=restart
chain 1 0 >"$work/restart.yaml"
orch_start "$work/restart.yaml"
for i in 1 2 3 4; do agent $i; done
replica_is log-1 host3 running 20 || fail "restart: not deployed: $(cat "$work/status")"
cp "$work/restart.host2/chain.yaml" "$work/epoch1.yaml"
ctl scale dpi 2 >/dev/null || fail "restart: scale dpi 2"
replica_is dpi-2 host4 running 10 || fail "restart: dpi-2 not running"
started 1
# The orchestrator goes while both dpi replicas carry traffic.
frames_is 20 dpi-1 dpi-2 || fail "restart: ctl status showed no frames through dpi-1 and dpi-2: $(cat "$work/status")"
# The orchestrator itself stalls (SIGSTOP) for 10 s, over three dead times: on SIGCONT it
# must not take its own silence for its nodes'. It says when its grace after the stall
# ends, with how many nodes it then declared dead: none, and the epoch stays.
e_stall=$(epoch_now)
kill -STOP "$pid_orch"
sleep 10
kill -CONT "$pid_orch"
t=0
until grep -q 'the grace after our stall is over' "$work/restart.orch.log" || [ $t -ge 200 ]; do sleep 0.1; t=$((t + 1)); done
if grep -q 'the grace after our stall is over: 0 nodes declared dead' "$work/restart.orch.log" &&
	! grep -q 'dead; epoch' "$work/restart.orch.log" && [ "$(epoch_now)" = "$e_stall" ]; then
	pass "SIGSTOP of the orchestrator for 10 s (dead time ${DEAD_MS} ms): on SIGCONT no node declared dead, epoch still $e_stall ('$(grep -o 'this orchestrator was stalled for [0-9]* ms' "$work/restart.orch.log" | head -1)')"
else
	fail "after a stall: $(grep -i 'stall\|dead' "$work/restart.orch.log" | tail -5); epoch $e_stall -> $(epoch_now)"
fi
kill -9 "$pid_orch"
wait "$pid_orch" 2>/dev/null
# Until every node has seen its control channel go (within 10 s).
t=0
until [ "$(cat "$work"/restart.host[1-4].log | grep -c 'control channel to .* lost')" -ge 4 ] || [ $t -ge 100 ]; do
	sleep 0.1
	t=$((t + 1))
done
# The orchestrator is gone: a stale one replays epoch 1 to whichever node dials it first.
rack_exec 1 "$REPLAY" --listen "$ORCH" --certs "$work/certs" --epoch 1 --chain "$work/epoch1.yaml" \
	--replicas "dpi-1" >"$work/replay" 2>&1
if grep -q "applied: epoch 1: refused: epoch 1 is not newer than the applied 2" "$work/replay"; then
	pass "a replayed old epoch is refused: $(tr '\n' ' ' <"$work/replay")"
else
	fail "replay: $(cat "$work/replay")"
fi
orch_start "$work/restart.yaml"
wait_file "$work/restart.host3/log-1.stats" 60 || fail "restart: the egress did not finish"
t=0
until [ "$(grep -c 'nothing to redeploy' "$work/restart.orch.log")" -ge 4 ] || [ $t -ge 100 ]; do sleep 0.1; t=$((t + 1)); done
victim=$(sed -n 's/^hello: \(host[0-9]\) .*/\1/p' "$work/replay")
cp "$work/restart.$victim.log" "$work/victim.log" # its story up to here
# Its state lost, an orchestrator starts over from chain.yaml at epoch 1; the nodes say
# they run epoch 2, so it moves past that (or they would refuse it for ever) and the
# deployment converges on chain.yaml (dpi back to one replica).
kill -TERM "$pid_orch"
wait "$pid_orch" 2>/dev/null
rm -f "$work/restart.state"
orch_start "$work/restart.yaml"
if until_status 15 '/^host[0-9]/ && $2 == "up" && $3 == "3" { n++ } /^orchestrator/ && / epoch 3 / { e = 1 } END { exit !(n == 4 && e) }' &&
	grep -q "newer than ours (1): moving past it" "$work/restart.orch.log"; then
	pass "state lost: the orchestrator moved past the nodes' epoch 2 to 3, and all 4 nodes applied it ($(grep -m1 -o 'host[0-9]: applied epoch 2, newer than ours (1): moving past it' "$work/restart.orch.log"))"
else
	fail "state lost: $(grep -E 'newer|assigned' "$work/restart.orch.log" | tail -4) $(cat "$work/status")"
fi
stop_all
got=$(stat "$work/restart.host3/log-1.stats" egress_packets)
lost=$(stat "$work/restart.host3/log-1.stats" egress_lost)
[ "$got" = $PACKETS ] && [ "$lost" = 0 ] &&
	pass "forwarding went on while the orchestrator was gone: $got of $PACKETS packets, $lost lost" ||
	fail "restart: delivered '$got' lost '$lost'"
n=$(grep -c 'in step at epoch 2: nothing to redeploy' "$work/restart.orch.log")
starts=$(cat "$work"/restart.host*.log | grep -c ': started (listen')
[ "$n" = 4 ] && [ "$starts" = 4 ] &&
	pass "the restarted orchestrator reconciled from its state: 4 nodes in step at epoch 2, nothing redeployed (4 replicas started once each)" ||
	fail "reconcile: $n nodes in step, $starts replica starts: $(grep -E 'hello|assigned' "$work/restart.orch.log" | tail -6)"
grep -q "running replicas untouched" "$work/victim.log" &&
	! sed -n '/assignment refused/,$p' "$work/victim.log" | grep -q "started (listen\|no longer assigned\|epoch [0-9]*: replicas" &&
	pass "$victim logged the refusal and kept its replicas running as they were" ||
	fail "replay on the node: $(grep -h refused "$work"/restart.host*.log)"
exit 0
