#!/usr/bin/env bash
# `rdmesh node --metrics`: a two-node chain on loopback (host "in" generates traffic for
# about 6 s, host "out" counts it at the egress and serves /metrics). Scraped twice while
# traffic flows: the packet counters grow, both scrapes pass the strict format checker
# (tests/lib/promcheck.py), other paths are 404. A second node asking for the same port
# is refused with a clear error. Once the node exits, its port is free.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/rack.sh # wait_exit, stat
BUILD=${BUILD:-build}
RDMESH=$PWD/$BUILD/rdmesh
CHECK="python3 $PWD/tests/lib/promcheck.py"
work=$(mktemp -d /tmp/rdm-metrics.XXXXXX)
pid_in=""
pid_out=""
cleanup() {
	for p in $pid_in $pid_out; do kill -9 "$p" 2>/dev/null; done
	rm -rf "$work"
}
trap cleanup EXIT
# The rack's certificates: every hop proves both ends (transport.protect: auth).
"$RDMESH" ctl certs --out "$work/certs" in out >/dev/null || { echo "FAIL certificates"; exit 1; }

pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; }

# A port nothing listens on now, for the data connection.
free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# value FILE SERIES: the value of one series in a scrape.
value() {
	awk -v s="$2" '$1 == s { print $2; found = 1 } END { if (!found) print "" }' "$1"
}

PACKETS=9000
RATE=1500
DATA=$(free_port)
cat >"$work/chain.yaml" <<EOC
chain: {name: metrics, spi: 11}
transport: {backoff_min_ms: 10, backoff_max_ms: 100, certs: $work/certs}
nodes:
  - name: in
    stages: [stamp]
    next: out
    ingress: {mode: gen, count: $PACKETS, flows: 50, rate: $RATE, seed: 5}
  - name: out
    listen: 127.0.0.1:$DATA
    stages: [stamp, dpi]
    egress: {count: $PACKETS}
EOC

# Port 0: the node picks a free one and logs it.
"$RDMESH" node --config "$work/chain.yaml" --name out --stats "$work/stats_out" \
	--metrics 127.0.0.1:0 >"$work/log_out" 2>&1 &
pid_out=$!
if ! wait_log "$work/log_out" "metrics on" 5; then
	fail "egress node did not start its metrics endpoint"
	cat "$work/log_out"
	exit 1
fi
MPORT=$(sed -n 's/.*metrics on .*(port \([0-9]*\)).*/\1/p' "$work/log_out" | head -1)
URL=http://127.0.0.1:$MPORT/metrics
wait_log "$work/log_out" listening 5
"$RDMESH" node --config "$work/chain.yaml" --name in --stats "$work/stats_in" \
	>"$work/log_in" 2>&1 &
pid_in=$!

# The first scrape once frames have arrived, the second once the counters have moved on
# from it (each polled, within 5 s): both while traffic flows.
wait_log "$work/log_out" "upstream .* connected" 5
t=0
while :; do
	code1=$(curl -sS -o "$work/m1" -w '%{http_code} %{content_type}' "$URL")
	rx1=$(value "$work/m1" 'rdmesh_rx_frames_total{node="out"}')
	[ -n "$rx1" ] && [ "$rx1" -gt 0 ] && break
	t=$((t + 1))
	[ $t -ge 50 ] && break
	sleep 0.1
done
t=0
while :; do
	sleep 0.2
	code2=$(curl -sS -o "$work/m2" -w '%{http_code} %{content_type}' "$URL")
	rx2=$(value "$work/m2" 'rdmesh_rx_frames_total{node="out"}')
	eg1=$(value "$work/m1" 'rdmesh_egress_packets_total{node="out"}')
	eg2=$(value "$work/m2" 'rdmesh_egress_packets_total{node="out"}')
	[ -n "$rx2" ] && [ "$rx2" -gt "${rx1:-0}" ] && [ -n "$eg2" ] && [ "$eg2" -gt "${eg1:-0}" ] && break
	t=$((t + 1))
	[ $t -ge 25 ] && break
done
code404=$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$MPORT/nope")
busy=$("$RDMESH" node --config "$work/chain.yaml" --name in --metrics "127.0.0.1:$MPORT" 2>&1)
busy_rc=$?
running=0
kill -0 "$pid_in" 2>/dev/null && kill -0 "$pid_out" 2>/dev/null && running=1

rx1=$(value "$work/m1" 'rdmesh_rx_frames_total{node="out"}')
rx2=$(value "$work/m2" 'rdmesh_rx_frames_total{node="out"}')
eg1=$(value "$work/m1" 'rdmesh_egress_packets_total{node="out"}')
eg2=$(value "$work/m2" 'rdmesh_egress_packets_total{node="out"}')
dpi2=$(value "$work/m2" 'rdmesh_stage_packets_total{node="out",stage="dpi"}')
echo "scrapes: rx_frames $rx1 -> $rx2, egress_packets $eg1 -> $eg2 (http $code1 / $code2)"

if [ "$code1" = "200 text/plain; version=0.0.4; charset=utf-8" ] && [ "${code2%% *}" = 200 ] &&
	[ "$running" = 1 ] && [ -n "$rx1" ] && [ -n "$rx2" ] && [ "$rx1" -gt 0 ] &&
	[ "$rx2" -gt "$rx1" ] && [ -n "$eg2" ] && [ "$eg2" -gt "$eg1" ] && [ "$rx2" -lt "$PACKETS" ]; then
	pass "GET /metrics during the run: 200, text/plain; version=0.0.4; packet counters grow ($rx1 -> $rx2 frames, $eg1 -> $eg2 at the egress)"
else
	fail "scrapes during the run: http '$code1' / '$code2', rx_frames '$rx1' -> '$rx2', egress '$eg1' -> '$eg2', both nodes running: $running"
fi
if out1=$($CHECK "$work/m1") && out2=$($CHECK "$work/m2"); then
	pass "both scrapes pass the strict format checker ($out2)"
else
	fail "format checker: $out1 $out2"
	head -40 "$work/m2"
fi
grep -q '^rdmesh_hop_latency_seconds{node="out",hop="1",quantile="0.99"} ' "$work/m2" &&
	grep -q '^rdmesh_node_info{node="out",protect="auth"} 1$' "$work/m2" && [ -n "$dpi2" ] && [ "$dpi2" -gt 0 ] &&
	pass "per-hop latency, per-stage counters (dpi packets $dpi2) and the node's name are there" ||
	fail "expected families missing from the scrape"
[ "$code404" = 404 ] && pass "another path is 404" || fail "GET /nope gave $code404"
if [ "$busy_rc" = 1 ] && grep -q "metrics 127.0.0.1:$MPORT: Address already in use" <<<"$busy"; then
	pass "a second node on the same metrics port is refused: $busy"
else
	fail "second node on a busy metrics port: rc $busy_rc: $busy"
fi

# Both nodes end by themselves once the egress has counted every packet.
if wait_exit "$pid_in" 30 && wait_exit "$pid_out" 30; then
	pid_in=""
	pid_out=""
	final=$(stat "$work/stats_out" rx_frames)
	if [ "$final" = "$PACKETS" ] && [ "$(stat "$work/stats_out" egress_packets)" = "$PACKETS" ]; then
		pass "the chain delivered all $PACKETS packets with the endpoint serving (scrapes took nothing from the data path)"
	else
		fail "the chain delivered $final of $PACKETS"
	fi
else
	fail "nodes did not finish"
	cat "$work/log_in" "$work/log_out"
fi
# The port is free: nothing listens, and a new listener can bind it at once.
if [ -z "$(ss -ltnH "sport = :$MPORT" 2>/dev/null)" ] &&
	python3 -c 'import socket, sys; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()' "$MPORT" &&
	! curl -s -o /dev/null "$URL"; then
	pass "after the node exits, port $MPORT is free"
else
	fail "port $MPORT still taken after the node exited"
fi

# --- a slowloris: 1000 connections from 127.0.0.2 that each send a byte a second --------
# A one-node chain runs for about 12 s with the endpoint on 127.0.0.1. The attacker's
# connections beyond the per-address cap are closed at once, the ones it holds are closed
# at the deadline whatever they send, and a scrape from 127.0.0.1 answers in under 1 s
# throughout.
cat >"$work/solo.yaml" <<EOC
chain: {name: solo, spi: 11}
nodes:
  - name: solo
    stages: [stamp]
    ingress: {mode: gen, count: 24000, flows: 20, rate: 2000, seed: 9}
    egress: {count: 24000}
EOC
"$RDMESH" node --config "$work/solo.yaml" --name solo --metrics 127.0.0.1:0 >"$work/log_solo" 2>&1 &
pid_solo=$!
if wait_log "$work/log_solo" "metrics on" 5; then
	SPORT=$(sed -n 's/.*metrics on .*(port \([0-9]*\)).*/\1/p' "$work/log_solo" | head -1)
	cat >"$work/slow.py" <<'EOP'
import socket, sys, time
port, n, secs = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
socks, opened = [], {}
for i in range(n):
    s = socket.socket(); s.bind(("127.0.0.2", 0)); s.setblocking(False)
    try: s.connect(("127.0.0.1", port))
    except BlockingIOError: pass
    socks.append(s); opened[s] = time.monotonic()
req, sent, held, closed_at = b"GET /metrics HTTP/1.1\r\nHost: x\r\n", {}, set(), {}
print("opened", n, flush=True)
end = time.monotonic() + secs
while time.monotonic() < end:
    for s in socks:
        if s in closed_at: continue
        k = sent.get(s, 0)
        try:
            if k < len(req): s.send(req[k:k + 1]); sent[s] = k + 1
            if s.recv(1, socket.MSG_DONTWAIT) == b"": closed_at[s] = time.monotonic()
        except BlockingIOError: held.add(s)
        except OSError: closed_at[s] = time.monotonic()
    time.sleep(1.0)
lived = sorted(closed_at[s] - opened[s] for s in closed_at if s in held)
print("held", len(held), "closed", len(closed_at), "still open", n - len(closed_at),
      "held ones lived %.1f..%.1f s" % (lived[0], lived[-1]) if lived else "", flush=True)
EOP
	(ulimit -n 4096; python3 "$work/slow.py" "$SPORT" 1000 9 >"$work/slow.out" 2>&1) &
	slow=$!
	wait_log "$work/slow.out" opened 5
	worst=0 ok=1
	for i in 1 2 3 4 5 6; do
		sleep 1
		tt=$(curl -sS -o /dev/null -m 1 -w '%{http_code} %{time_total}' "http://127.0.0.1:$SPORT/metrics") || ok=0
		[ "${tt%% *}" = 200 ] || ok=0
		worst=$(awk -v a="$worst" -v b="${tt##* }" 'BEGIN { print (b > a) ? b : a }')
	done
	wait $slow
	[ $ok = 1 ] && pass "6 scrapes during a slowloris of 1000 connections answered 200, the slowest in ${worst} s" ||
		fail "a scrape failed or took over 1 s during the slowloris (slowest $worst s)"
	# The connections the attacker held were closed at the deadline, bytes or not.
	if grep -q "still open 0 held ones lived" "$work/slow.out" &&
		awk '/held ones lived/ { split($NF, r, "\\.\\."); sub(/ s$/, "", r[2]); exit !(r[2] + 0 < 7.5) }' "$work/slow.out"; then
		pass "the slowloris held connections only until the deadline: $(cat "$work/slow.out" | tail -1)"
	else
		fail "slowloris connections: $(cat "$work/slow.out")"
	fi
else
	fail "the solo node did not serve metrics"
fi
kill -TERM "$pid_solo" 2>/dev/null
wait_exit "$pid_solo" 10 || kill -9 "$pid_solo"
# --- HTTPS with client certificates (--metrics-tls) --------------------------------------
# The endpoint presents the node's certificate and takes scrapes only from clients with a
# certificate from the rack's CA; then it may listen anywhere.
"$RDMESH" ctl certs --out "$work/mcerts" solo prometheus >/dev/null &&
	"$RDMESH" ctl certs --out "$work/mother" prometheus >/dev/null || fail "metrics certificates"
sed 's/count: 24000/count: 8000/g' "$work/solo.yaml" >"$work/solo-tls.yaml"
"$RDMESH" node --config "$work/solo-tls.yaml" --name solo --certs "$work/mcerts" \
	--metrics 127.0.0.1:0 --metrics-tls >"$work/log_tls" 2>&1 &
pid_solo=$!
if wait_log "$work/log_tls" "metrics on https" 5; then
	TPORT=$(sed -n 's/.*metrics on .*(port \([0-9]*\)).*/\1/p' "$work/log_tls" | head -1)
	scrape() { # CERT-DIR-or-none -> HTTP code
		local c=()
		[ "$1" != none ] && c=(--cert "$1/prometheus.pem" --key "$1/prometheus.key")
		curl -sS -o "$work/tls.body" -w '%{http_code}' --cacert "$work/mcerts/ca.pem" "${c[@]}" \
			--resolve "solo:$TPORT:127.0.0.1" "https://solo:$TPORT/metrics" 2>/dev/null
	}
	good=$(scrape "$work/mcerts")
	grep -q '^rdmesh_rx_frames_total{node="solo"}\|^rdmesh_ingress_sent_total{node="solo"}' "$work/tls.body" && body=ok || body=missing
	none=$(scrape none)
	other=$(scrape "$work/mother")
	plain=$(curl -s -o /dev/null -w '%{http_code}' -m 2 "http://127.0.0.1:$TPORT/metrics")
	[ "$good" = 200 ] && [ $body = ok ] && [ "$none" = 403 ] && [ "$other" = 403 ] && [ "$plain" != 200 ] &&
		pass "--metrics-tls: a scraper with a rack certificate gets 200; without one, or with another CA's, 403; plain HTTP gets nothing" ||
		fail "--metrics-tls: rack cert $good ($body), none $none, other CA $other, plain HTTP $plain"
else
	fail "the solo node did not serve metrics over HTTPS: $(cat "$work/log_tls")"
fi
kill -TERM "$pid_solo" 2>/dev/null
wait_exit "$pid_solo" 10 || kill -9 "$pid_solo"
remote=$("$RDMESH" node --config "$work/solo.yaml" --name solo --metrics 192.0.2.1:9464 2>&1)
[ $? = 2 ] && grep -q "not a loopback address" <<<"$remote" &&
	pass "metrics on a non-loopback address are refused without --metrics-remote: $remote" ||
	fail "metrics on a non-loopback address: $remote"
echo "--- out"
cat "$work/log_out"
echo "--- in"
cat "$work/log_in"
