#!/usr/bin/env bash
# `rdmesh node --orch ... --metrics IP:PORT`: a rack node's agent serves the metrics of
# every replica it runs in one scrape. Two namespace hosts (tests/lib/rack.sh: host N is
# 10.77.0.N; the orchestrator on host1 at 10.77.0.1:7000), a rack of its own (host1 zone
# a, host2 zone b) and a four-replica chain: edge (host1) -> dpi x2 (one per host) -> log
# (host2), so each agent runs two replicas.
#   1. agents started before the orchestrator serve their own gauges only (epoch 0,
#      replicas 0; no node samples), a valid exposition;
#   2. once deployed, every replica that ctl status places on a host appears in that
#      host's scrape (node="ID"), with rdmesh_agent_epoch/replicas matching ctl status;
#      each family once (tests/lib/promcheck.py); counters grow between scrapes;
#   3. scale dpi 2 -> 1: once the leaving replica is stopped, its series are gone and
#      the epoch and replica count follow;
#   4. a second agent asking for a busy metrics port is refused with a clear error;
#      after SIGTERM the agents exit 0 and their ports are free.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/rack.sh
BUILD=${BUILD:-build}
RDMESH=$PWD/$BUILD/rdmesh
PROMCHECK="python3 $PWD/tests/lib/promcheck.py"
work=$(mktemp -d /tmp/rdm-agentmetrics.XXXXXX)
ORCH=$RACK_NET.1:7000
MPORT=9464
pid_1=0 pid_2=0 pid_orch=0
trap 'rack_down; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; failed=1; }
failed=0

rack_up 2 || { fail "rack set-up"; exit 1; }
"$RDMESH" ctl certs --out "$work/certs" orch ctl host1 host2 >/dev/null || { fail "certificates"; exit 1; }

cat >"$work/rack.yaml" <<EOF
orchestrator: {listen: $ORCH}
ports: 7100-7199
nodes:
  - {name: host1, control: $RACK_NET.1, data: $RACK_NET.1, capacity: 4, labels: {zone: a}}
  - {name: host2, control: $RACK_NET.2, data: $RACK_NET.2, capacity: 4, labels: {zone: b}}
EOF
cat >"$work/chain.yaml" <<EOF
chain: {name: agentmetrics, spi: 17}
transport: {backoff_min_ms: 10, backoff_max_ms: 100, drain_ms: 1000}
stages:
  - name: edge
    run: [stamp]
    placement: {labels: {zone: a}}
    ingress: {mode: gen, count: 1000000, flows: 50, rate: 3000, seed: 3}
  - name: dpi
    run: [stamp, dpi]
    replicas: 2
  - name: log
    run: [stamp]
    placement: {labels: {zone: b}}
    egress: {count: 0}
EOF

ctl() { rack_exec 1 "$RDMESH" ctl --orch "$ORCH" --certs "$work/certs" "$@"; }

# agent I: host I's agent, metrics on its own address.
agent() {
	ip netns exec "$RACK-h$1" "$RDMESH" node --orch "$ORCH" --name "host$1" --certs "$work/certs" \
		--dir "$work/host$1" --drain-ms 500 --metrics "$RACK_NET.$1:$MPORT" --metrics-remote >>"$work/host$1.log" 2>&1 &
	eval "pid_$1=$!"
}

# scrape I FILE: GET host I's /metrics (from host1) into FILE; prints the HTTP status.
scrape() { rack_exec 1 curl -sS -m 5 -o "$2" -w '%{http_code}' "http://$RACK_NET.$1:$MPORT/metrics"; }

# value FILE SERIES: one series' value in a scrape ("" if absent).
value() { awk -v s="$2" '$1 == s { print $2; found = 1 } END { if (!found) print "" }' "$1"; }


# check_host I FILE: every replica ctl status places on host I is in FILE (its info
# and rx_frames series), none of another host's is, and the agent's gauges match ctl
# status. Prints what it found.
check_host() {
	local i=$1 f=$2 ids others id epoch n=0 bad=""
	ids=$(awk -v h="host$i" 'NF >= 5 && $3 == h && $1 ~ /-[0-9]+$/ { print $1 }' "$work/status")
	others=$(awk -v h="host$i" 'NF >= 5 && $3 ~ /^host/ && $3 != h && $1 ~ /-[0-9]+$/ { print $1 }' "$work/status")
	epoch=$(sed -n 's/.*  epoch \([0-9]*\) .*/\1/p' "$work/status")
	for id in $ids; do
		n=$((n + 1))
		grep -Eq "^rdmesh_node_info\{node=\"$id\"[,}].* 1$" "$f" &&
			[ -n "$(value "$f" "rdmesh_rx_frames_total{node=\"$id\"}")" ] || bad="$bad missing:$id"
	done
	for id in $others; do grep -q "node=\"$id\"" "$f" && bad="$bad foreign:$id"; done
	[ "$(value "$f" "rdmesh_agent_epoch{agent=\"host$i\"}")" = "$epoch" ] || bad="$bad epoch"
	[ "$(value "$f" "rdmesh_agent_replicas{agent=\"host$i\"}")" = "$n" ] || bad="$bad replicas"
	[ "$(grep -c '^# TYPE rdmesh_rx_frames_total counter$' "$f")" = 1 ] || bad="$bad family-twice"
	[ "$n" -ge 1 ] || bad="$bad none-placed"
	echo "host$i: [$(echo $ids)] epoch $epoch${bad:+; wrong:$bad}"
	[ -z "$bad" ]
}

# --- 1. before any assignment -------------------------------------------------------------
agent 1
agent 2
wait_log "$work/host1.log" "metrics on" 5 && wait_log "$work/host2.log" "metrics on" 5 ||
	{ fail "agents did not start their metrics endpoints: $(cat "$work"/host*.log)"; exit 1; }
c1=$(scrape 1 "$work/m0.1")
c2=$(scrape 2 "$work/m0.2")
if [ "$c1" = 200 ] && [ "$c2" = 200 ] && out=$($PROMCHECK "$work/m0.2") &&
	grep -qx 'rdmesh_agent_epoch{agent="host2"} 0' "$work/m0.2" &&
	grep -qx 'rdmesh_agent_replicas{agent="host2"} 0' "$work/m0.2" &&
	grep -qx 'rdmesh_agent_replicas{agent="host1"} 0' "$work/m0.1" &&
	! grep -q 'node=' "$work/m0.1" "$work/m0.2"; then
	pass "before any assignment both agents serve 200 with their own gauges only (epoch 0, replicas 0; $out)"
else
	fail "before any assignment: http $c1 / $c2: $(cat "$work/m0.1" "$work/m0.2")"
fi

# --- 2. deployed: every replica of each host in its host's scrape ---------------------------
ip netns exec "$RACK-h1" "$RDMESH" orch --rack "$work/rack.yaml" --chain "$work/chain.yaml" \
	--certs "$work/certs" --state "$work/orch.state" >>"$work/orch.log" 2>&1 &
pid_orch=$!
if ! until_status 20 '$5 == "running" { r[$1] = 1 } END { exit !(r["edge-1"] && r["dpi-1"] && r["dpi-2"] && r["log-1"]) }'; then
	fail "deploy: not every replica running: $(cat "$work/status")"
	exit 1
fi
# Traffic reaches the egress before the first scrape.
t=0
until [ -n "$(scrape 2 "$work/m1.2" >/dev/null; value "$work/m1.2" 'rdmesh_rx_frames_total{node="log-1"}')" ] &&
	[ "$(value "$work/m1.2" 'rdmesh_rx_frames_total{node="log-1"}')" -gt 0 ] || [ $t -ge 50 ]; do
	sleep 0.2
	t=$((t + 1))
done
ctl status >"$work/status"
scrape 1 "$work/m1.1" >/dev/null
scrape 2 "$work/m1.2" >/dev/null
# The second pair of scrapes once both counters have moved on (traffic flows for minutes;
# a loaded host may be slow to show it), within 10 s.
grown() {
	local a b
	a=$(value "$work/$1" "$3")
	b=$(value "$work/$2" "$3")
	[ -n "$a" ] && [ -n "$b" ] && [ "$b" -gt "$a" ]
}
t=0
while :; do
	sleep 0.2
	c1=$(scrape 1 "$work/m2.1")
	c2=$(scrape 2 "$work/m2.2")
	grown m1.1 m2.1 'rdmesh_tx_frames_total{node="edge-1"}' &&
		grown m1.2 m2.2 'rdmesh_rx_frames_total{node="log-1"}' && break
	t=$((t + 1))
	[ $t -ge 50 ] && break
done
for f in m1.1 m1.2 m2.1 m2.2; do
	if ! out=$($PROMCHECK "$work/$f"); then
		fail "scrape $f fails the strict format checker: $out"
		head -30 "$work/$f"
	fi
done
[ $failed = 0 ] && pass "four scrapes (two per host) pass the strict format checker ($($PROMCHECK "$work/m2.2"))"
if [ "$c1" = 200 ] && [ "$c2" = 200 ] && r1=$(check_host 1 "$work/m2.1") && r2=$(check_host 2 "$work/m2.2"); then
	pass "every replica in its host's one scrape, agent gauges as ctl status says: $r1; $r2"
else
	fail "replicas in scrapes: http $c1 / $c2: $(check_host 1 "$work/m2.1"); $(check_host 2 "$work/m2.2"); status: $(cat "$work/status")"
fi
rx1=$(value "$work/m1.2" 'rdmesh_rx_frames_total{node="log-1"}')
rx2=$(value "$work/m2.2" 'rdmesh_rx_frames_total{node="log-1"}')
tx1=$(value "$work/m1.1" 'rdmesh_tx_frames_total{node="edge-1"}')
tx2=$(value "$work/m2.1" 'rdmesh_tx_frames_total{node="edge-1"}')
if [ -n "$rx1" ] && [ -n "$rx2" ] && [ "$rx2" -gt "$rx1" ] && [ -n "$tx1" ] && [ -n "$tx2" ] && [ "$tx2" -gt "$tx1" ]; then
	pass "counters grow between scrapes: edge-1 tx_frames $tx1 -> $tx2 (host1), log-1 rx_frames $rx1 -> $rx2 (host2)"
else
	fail "counters between scrapes: edge-1 tx '$tx1' -> '$tx2', log-1 rx '$rx1' -> '$rx2'"
fi
# Each dpi replica's stage counters are labelled with its own name, on its own host.
d=""
for id in dpi-1 dpi-2; do
	h=$(awk -v r="$id" '$1 == r { sub("host", "", $3); print $3 }' "$work/status")
	v=$(value "$work/m2.$h" "rdmesh_stage_packets_total{node=\"$id\",stage=\"dpi\"}")
	d="$d $id on host$h: $v;"
done
! grep -q ": ;" <<<"$d" &&
	pass "per-replica stage counters:$d" || fail "per-replica stage counters:$d"

# --- 3. scale dpi 2 -> 1: the leaving replica's series go once it is freed -----------------
e0=$(sed -n 's/.*  epoch \([0-9]*\) .*/\1/p' "$work/status")
gone=$(awk '$1 == "dpi-2" { sub("host", "", $3); print $3 }' "$work/status")
# Scraped back to back while the agent changes its replica list (the list's lock).
(while [ ! -e "$work/loop.stop" ]; do
	c=$(scrape "$gone" "$work/m.loop" 2>&1)
	echo "${c:-no answer}" | tr -c '[:print:]\n' '?' >>"$work/loop.codes"
done) &
pid_loop=$!
ctl scale dpi 1 >"$work/scale" 2>&1 || fail "ctl scale dpi 1: $(cat "$work/scale")"
stopped=0
wait_log "$work/host$gone.log" "dpi-2: stopped" 30 && stopped=1
if [ $stopped = 1 ]; then
	until_status 5 '$1 == "dpi-1" && $5 == "running" { ok = 1 } END { exit !ok }'
	# The agent frees a stopped replica on its next housekeeping pass: scrape until its
	# series are gone and the gauges follow (within 10 s), then check that scrape.
	t=0
	until scrape "$gone" "$work/m3" >/dev/null && ! grep -q 'node="dpi-2"' "$work/m3" &&
		check_host "$gone" "$work/m3" >/dev/null || [ $t -ge 50 ]; do
		sleep 0.2
		t=$((t + 1))
	done
fi
# The loop scraped back to back throughout the change; it goes on until it has made 20
# scrapes (a slow host makes fewer a second), then stops after the one in flight.
t=0
until [ "$(grep -c . "$work/loop.codes" 2>/dev/null)" -ge 20 ] || [ $t -ge 300 ]; do
	sleep 0.1
	t=$((t + 1))
done
touch "$work/loop.stop"
wait "$pid_loop" 2>/dev/null
n_ok=$(grep -c '^200$' "$work/loop.codes")
n_all=$(grep -c . "$work/loop.codes")
[ "$n_ok" = "$n_all" ] && [ "$n_ok" -ge 20 ] &&
	pass "$n_ok scrapes back to back while dpi-2 drained, stopped and was freed: every one 200" ||
	fail "scrapes during the change: $n_ok of $n_all were 200: $(grep -v '^200$' "$work/loop.codes" | sort | uniq -c | head -5)"
if [ $stopped = 1 ]; then
	e1=$(value "$work/m3" "rdmesh_agent_epoch{agent=\"host$gone\"}")
	if ! grep -q 'node="dpi-2"' "$work/m3" && out=$(check_host "$gone" "$work/m3") && [ "$e1" -gt "$e0" ] &&
		$PROMCHECK "$work/m3" >/dev/null; then
		pass "after scale dpi 1, host$gone's scrape has no dpi-2 and follows: $out (epoch $e0 -> $e1)"
	else
		fail "after scale dpi 1: $(check_host "$gone" "$work/m3"), epoch $e0 -> '$e1': $(grep -c 'node="dpi-2"' "$work/m3") dpi-2 lines"
	fi
else
	fail "dpi-2 on host$gone did not stop: $(tail -5 "$work/host$gone.log")"
fi

# --- 4. a busy port; a clean exit frees the ports ---------------------------------------
busy=$(ip netns exec "$RACK-h1" "$RDMESH" node --orch "$ORCH" --name host1 --certs "$work/certs" \
	--dir "$work/busy" --metrics "$RACK_NET.1:$MPORT" --metrics-remote 2>&1)
busy_rc=$?
if [ $busy_rc = 1 ] && grep -q "metrics $RACK_NET.1:$MPORT: Address already in use" <<<"$busy"; then
	pass "an agent asking for a busy metrics port is refused: $busy"
else
	fail "agent on a busy metrics port: rc $busy_rc: $busy"
fi
bad_opt=$("$RDMESH" node --orch "$ORCH" --name host1 --stats x --metrics 127.0.0.1:0 2>&1)
bad_rc=$?
[ $bad_rc = 2 ] && grep -q -- "--metrics" <<<"$bad_opt" && pass "node --orch still refuses --stats: $bad_opt" ||
	fail "node --orch --stats: rc $bad_rc: $bad_opt"
kill -TERM "$pid_orch" 2>/dev/null
wait_exit "$pid_orch" 10
rcs=""
for i in 1 2; do
	kill -TERM "$(eval echo "\$pid_$i")"
	wait_exit "$(eval echo "\$pid_$i")" 20
	rcs="$rcs $?"
done
if [ "$rcs" = " 0 0" ] && ! scrape 1 /dev/null >/dev/null 2>&1 && ! scrape 2 /dev/null >/dev/null 2>&1 &&
	[ -z "$(ip netns exec "$RACK-h1" ss -ltnH "sport = :$MPORT")" ] &&
	[ -z "$(ip netns exec "$RACK-h2" ss -ltnH "sport = :$MPORT")" ]; then
	pass "SIGTERM: both agents exit 0 and their metrics ports are free"
else
	fail "agents' exit:$rcs; listening: $(ip netns exec "$RACK-h1" ss -ltnH "sport = :$MPORT") $(ip netns exec "$RACK-h2" ss -ltnH "sport = :$MPORT")"
fi
if [ $failed != 0 ]; then
	for f in orch host1 host2; do echo "--- $f"; tail -30 "$work/$f.log"; done
fi
exit $failed
