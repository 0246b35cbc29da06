#!/usr/bin/env bash
# The dpi stage agrees with ndpiReader (the same nDPI 4.2 library) on real traffic. A
# client and a server namespace share a veth; the server runs an HTTP server (python3),
# a TLS server (openssl s_server, a throwaway self-signed certificate) and a DNS server
# (dnsmasq); the client's side is captured with tcpdump while curl, dig and openssl
# s_client talk to them. That capture is replayed through a three-node rdmesh chain over
# loopback TCP whose middle node runs dpi and whose egress writes whole frames;
# tests/tools/dpiflows reads the per-flow result back from the frames. ndpiReader reads
# the same capture. Every flow
# ndpiReader reports must be found with the same protocol ids, protocol name, category
# and host (SNI, HTTP Host, DNS query name), and rdmesh must report no flow it lacks.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/rack.sh # wait_exit
BUILD=${BUILD:-build}
RDMESH=$PWD/$BUILD/rdmesh
DPIFLOWS=$PWD/$BUILD/tools/dpiflows
NS=rdmdpi$$
C=$NS-c
S=$NS-s
CIP=10.66.0.1
SIP=10.66.0.2
work=$(mktemp -d /tmp/rdm-dpi.XXXXXX)

pass() { echo "PASS dpi: $*"; }
fail() { echo "FAIL dpi: $*"; }

cleanup() {
	local ns
	for ns in "$C" "$S"; do
		ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
		ip netns del "$ns" 2>/dev/null
	done
	if [ -n "${RDM_KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
# The rack's certificates: every hop proves both ends (transport.protect: auth).
"$RDMESH" ctl certs --out "$work/certs" replay inspect out >/dev/null || { echo "FAIL certificates"; exit 1; }

for cmd in ndpiReader tcpdump curl dig openssl dnsmasq python3 ss; do
	command -v "$cmd" >/dev/null || { fail "$cmd is not installed (make deps)"; exit 1; }
done
[ -x "$RDMESH" ] && [ -x "$DPIFLOWS" ] || { fail "build $RDMESH and $DPIFLOWS first"; exit 1; }

# --- two namespaces on one veth, IPv4 only (IPv6 autoconfiguration would add ICMPv6
# flows whose timing varies from run to run) ---------------------------------------------
up() {
	ip netns add "$C" && ip netns add "$S" || return 1
	for ns in "$C" "$S"; do
		ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
			net.ipv6.conf.default.disable_ipv6=1 || return 1
		ip -n "$ns" link set lo up
	done
	ip -n "$C" link add eth0 type veth peer name eth0 netns "$S" || return 1
	ip -n "$C" addr add $CIP/24 dev eth0 && ip -n "$S" addr add $SIP/24 dev eth0 || return 1
	ip -n "$C" link set eth0 up && ip -n "$S" link set eth0 up || return 1
	local t=0
	until ip netns exec "$C" ping -c1 -W1 $SIP >/dev/null 2>&1; do
		t=$((t + 1))
		[ $t -ge 20 ] && return 1
		sleep 0.1
	done
}
up || { fail "namespace set-up"; exit 1; }

# wait_listen PROTO PORT: up to 5 s for a server socket in the server namespace.
wait_listen() {
	local t=0 opt=-ltn
	[ "$1" = udp ] && opt=-lun
	until ip netns exec "$S" ss -H $opt "sport = :$2" | grep -q .; do
		t=$((t + 1))
		[ $t -ge 50 ] && return 1
		sleep 0.1
	done
}

# --- the servers -----------------------------------------------------------------------
mkdir -p "$work/www"
echo "hello from the dpi test" >"$work/www/index.html"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/key.pem" -out "$work/cert.pem" \
	-days 1 -subj /CN=www.example.test >"$work/openssl-req.log" 2>&1 ||
	{ fail "self-signed certificate"; cat "$work/openssl-req.log"; exit 1; }
ip netns exec "$S" python3 -m http.server 80 --bind $SIP --directory "$work/www" \
	>"$work/http.log" 2>&1 &
ip netns exec "$S" sh -c "cd '$work/www' && exec openssl s_server -accept 443 \
	-cert '$work/cert.pem' -key '$work/key.pem' -WWW -quiet" >"$work/tls.log" 2>&1 &
ip netns exec "$S" dnsmasq --no-daemon --conf-file=/dev/null --port 53 --listen-address=$SIP \
	--bind-interfaces --no-resolv --no-hosts --user=root --pid-file="$work/dnsmasq.pid" \
	--address=/example.test/$SIP >"$work/dns.log" 2>&1 &
disown -a # cleanup kills them; no job notices in the log
if ! wait_listen tcp 80 || ! wait_listen tcp 443 || ! wait_listen udp 53; then
	fail "servers did not start"
	tail -5 "$work"/http.log "$work"/tls.log "$work"/dns.log
	exit 1
fi

# --- the traffic, captured on the client's side ----------------------------------------
# -Z root: tcpdump would drop to its own user, which cannot write into our 0700 work dir.
ip netns exec "$C" tcpdump -Z root --immediate-mode -i eth0 -U -w "$work/capture.pcap" >"$work/tcpdump.log" 2>&1 &
tcpdump_pid=$!
t=0
until grep -q 'listening on' "$work/tcpdump.log"; do
	t=$((t + 1))
	[ $t -ge 50 ] && { fail "tcpdump did not start"; cat "$work/tcpdump.log"; exit 1; }
	sleep 0.1
done

cl() { ip netns exec "$C" "$@"; }
ok=0
runs=0
# try WHAT CMD...: one client exchange; the test needs every one of them to succeed.
try() {
	local what=$1
	shift
	runs=$((runs + 1))
	if "$@" >>"$work/clients.log" 2>&1; then
		ok=$((ok + 1))
	else
		echo "client failed: $what" | tee -a "$work/clients.log"
	fi
}
CURL=(curl -sS -o /dev/null --max-time 10)
try "HTTP www" cl "${CURL[@]}" --resolve www.example.test:80:$SIP http://www.example.test/index.html
try "HTTP 404" cl "${CURL[@]}" --resolve api.example.test:80:$SIP http://api.example.test/missing
try "HTTP youtube" cl "${CURL[@]}" --resolve www.youtube.com:80:$SIP http://www.youtube.com/index.html
try "HTTPS www" cl "${CURL[@]}" -k --resolve www.example.test:443:$SIP https://www.example.test/index.html
try "HTTPS cdn" cl "${CURL[@]}" -k --resolve cdn.example.test:443:$SIP https://cdn.example.test/index.html
DIG=(dig +tries=1 +time=3 @$SIP)
try "DNS www" cl "${DIG[@]}" www.example.test
try "DNS mail" cl "${DIG[@]}" mail.example.test
try "DNS AAAA" cl "${DIG[@]}" AAAA ipv6.example.test
try "DNS facebook" cl "${DIG[@]}" www.facebook.com
try "DNS over TCP" cl "${DIG[@]}" +tcp tcp.example.test
try "TLS other" cl openssl s_client -connect $SIP:443 -servername other.example.test </dev/null
try "TLS google" cl openssl s_client -connect $SIP:443 -servername www.google.com </dev/null
# The last FIN and ACK: wait until no TCP connection is open or closing on either side
# (TIME-WAIT means the last ACK was sent), within 5 s.
open_tcp() {
	ip netns exec "$1" ss -Htn state established state syn-sent state syn-recv \
		state fin-wait-1 state fin-wait-2 state close-wait state last-ack state closing | grep -q .
}
t=0
while { open_tcp "$C" || open_tcp "$S"; } && [ $t -lt 50 ]; do
	sleep 0.1
	t=$((t + 1))
done
kill -INT $tcpdump_pid
wait $tcpdump_pid
[ $ok -eq $runs ] && pass "$runs client exchanges (curl HTTP and HTTPS, dig UDP and TCP, s_client) succeeded" ||
	fail "$((runs - ok)) of $runs client exchanges failed"
ip_packets=$(tcpdump -nr "$work/capture.pcap" 'ip or ip6' 2>/dev/null | wc -l)
echo "capture: $ip_packets IP packets"

# --- ndpiReader on the capture ---------------------------------------------------------
if ! ndpiReader -i "$work/capture.pcap" -v 2 >"$work/ndpi.txt" 2>&1; then
	fail "ndpiReader"
	tail -20 "$work/ndpi.txt"
	exit 1
fi
echo "--- ndpiReader, per flow"
grep -E '^[[:space:]]+[0-9]+[[:space:]]+[A-Z0-9]+ .* <-> ' "$work/ndpi.txt" | cut -c1-220
# As "KEY|IDS|NAME|CATEGORY|HOST" with KEY = "PROTO ENDPOINT ENDPOINT", the endpoints
# sorted so that the orientation each side chose does not matter.
awk '/^[[:space:]]+[0-9]+[[:space:]]+[A-Z0-9]+ .* <-> / {
	a = $3; b = $5; ids = "-"; name = "-"; cat = "-"; host = "-"
	if (match($0, /\[proto: [^]]*\]/)) {
		s = substr($0, RSTART + 8, RLENGTH - 9); i = index(s, "/")
		ids = substr(s, 1, i - 1); name = substr(s, i + 1)
	}
	if (match($0, /\[cat: [^]]*\]/)) {
		s = substr($0, RSTART + 6, RLENGTH - 7); sub(/\/[0-9]+$/, "", s); cat = s
	}
	if (match($0, /\[Hostname\/SNI: [^]]*\]/)) host = substr($0, RSTART + 15, RLENGTH - 16)
	gsub(/ /, "_", cat)
	print $2 " " (a < b ? a " " b : b " " a) "|" ids "|" name "|" cat "|" host
}' "$work/ndpi.txt" | sort >"$work/ndpi.flows"

# replay TAG STAGE: replays the capture through a three-node chain over loopback TCP
# (replay -> inspect, whose stage list is STAGE -> out), egress frames to $work/TAG.frames;
# the inspecting node's counters, with the egress count and every node's drops, to
# $work/TAG.stats; dpiflows' table to $work/TAG.txt and the comparable form to
# $work/TAG.flows. Returns non-zero (and says FAIL) if a step fails.
replay() {
	local tag=$1 stage=$2 port=$((20000 + $$ % 20000)) count pin pout
	count=$(tcpdump -r "$work/capture.pcap" 2>/dev/null | wc -l)
	cat >"$work/$tag.yaml" <<EOC
chain: {name: dpi-agreement, spi: 66}
transport: {certs: $work/certs}
nodes:
  - name: replay
    stages: [stamp]
    next: inspect
    ingress: {mode: pcap, file: $work/capture.pcap}
  - name: inspect
    listen: 127.0.0.1:$port
    stages: [stamp, $stage]
    next: out
  - name: out
    listen: 127.0.0.1:$((port + 1))
    stages: [stamp]
    egress: {frames: $work/$tag.frames, count: $count}
EOC
	for n in out inspect; do
		"$RDMESH" node --config "$work/$tag.yaml" --name $n --stats "$work/$tag.$n.stats" \
			>"$work/$tag.$n.log" 2>&1 &
		[ $n = out ] && pout=$! || pin=$!
	done
	if ! timeout 60 "$RDMESH" node --config "$work/$tag.yaml" --name replay \
		--stats "$work/$tag.replay.stats" >"$work/$tag.log" 2>&1 || ! wait_exit "$pout" 20; then
		fail "$tag: the replay chain did not finish"
		kill -9 "$pin" "$pout" 2>/dev/null
		tail -5 "$work/$tag".*log
		return 1
	fi
	kill -TERM "$pin"
	wait_exit "$pin" 10 || { fail "$tag: inspect ignored SIGTERM"; return 1; }
	{
		cat "$work/$tag.inspect.stats"
		grep '^egress_packets ' "$work/$tag.out.stats"
		awk '$1 == "drops" { s += $2 } END { print "drops", s }' "$work/$tag".*.stats
	} >"$work/$tag.stats"
	if ! "$DPIFLOWS" "$work/$tag.frames" >"$work/$tag.txt" 2>"$work/$tag.dpiflows"; then
		fail "$tag: dpiflows: $(cat "$work/$tag.dpiflows")"
		return 1
	fi
	awk '{
		a = $2; b = $3; delete kv
		for (i = 4; i <= NF; i++) { j = index($i, "="); kv[substr($i, 1, j - 1)] = substr($i, j + 1) }
		print $1 " " (a < b ? a " " b : b " " a) "|" kv["ids"] "|" kv["app"] "|" kv["cat"] "|" kv["host"] "|" kv["done"]
	}' "$work/$tag.txt" | sort >"$work/$tag.flows"
}

# compare TAG: every ndpiReader flow against $work/TAG.flows; sets compared and
# mismatches (flows only rdmesh reports count as mismatches: the two sides would then
# disagree on what a flow is).
compare() {
	local key ids name cat host line o_ids o_name o_cat o_host o_done
	compared=0
	mismatches=0
	while IFS='|' read -r key ids name cat host; do
		compared=$((compared + 1))
		line=$(awk -F'|' -v k="$key" '$1 == k' "$work/$1.flows")
		if [ -z "$line" ]; then
			mismatches=$((mismatches + 1))
			echo "MISMATCH $key: ndpiReader $ids/$name host $host; rdmesh has no such flow"
			continue
		fi
		IFS='|' read -r _ o_ids o_name o_cat o_host o_done <<<"$line"
		if [ "$ids|$name|$cat|$host" = "$o_ids|$o_name|$o_cat|$o_host" ]; then
			echo "match    $key: $ids/$name cat $cat host $host (rdmesh final: $o_done)"
		else
			mismatches=$((mismatches + 1))
			echo "MISMATCH $key: ndpiReader $ids/$name cat $cat host $host; rdmesh $o_ids/$o_name cat $o_cat host $o_host"
		fi
	done <"$work/ndpi.flows"
	while IFS='|' read -r key _; do
		if ! awk -F'|' -v k="$key" '$1 == k { f = 1 } END { exit !f }' "$work/ndpi.flows"; then
			mismatches=$((mismatches + 1))
			echo "MISMATCH $key: only rdmesh reports this flow"
		fi
	done <"$work/$1.flows"
	echo "flows compared $compared, mismatches $mismatches"
}

# --- rdmesh with the dpi stage as configured by default --------------------------------
replay dpi dpi || exit 1
st() { awk -v k="$2" '$1 == k { v = $2 } END { print v == "" ? 0 : v }' "$work/$1.stats"; }
grep '^stage_dpi_' "$work/dpi.stats"
inspected=$(st dpi stage_dpi_packets_inspected)
fastpath=$(st dpi stage_dpi_packets_fastpath)
if [ "$ip_packets" -gt 0 ] && [ "$(st dpi egress_packets)" = "$ip_packets" ] &&
	[ "$(st dpi stage_dpi_packets)" = "$ip_packets" ] &&
	[ $((inspected + fastpath)) -eq "$ip_packets" ] && [ "$(st dpi drops)" = 0 ]; then
	pass "all $ip_packets packets through the stage and out, none dropped; $inspected went to nDPI, $fastpath took the fast path"
else
	fail "packet accounting: capture $ip_packets, stage $(st dpi stage_dpi_packets), egress $(st dpi egress_packets), drops $(st dpi drops)"
fi
echo "--- rdmesh dpi, per flow"
cat "$work/dpi.txt"
compare dpi
if [ "$compared" -ge 12 ] && [ "$mismatches" -eq 0 ]; then
	pass "agrees with ndpiReader on every flow: flows compared $compared, mismatches $mismatches"
else
	fail "ndpiReader agreement: flows compared $compared, mismatches $mismatches"
fi

# What the traffic was made to contain, so that agreement cannot come from both sides
# finding nothing: PROTO DPORT IDS NAME HOST as dpiflows prints them.
missing=""
while read -r proto port ids name host; do
	grep -E "^$proto [^ ]+ [^ ]+:$port .* app=$name ids=$ids .* host=$host .*done=1" \
		"$work/dpi.txt" | grep -q . || missing="$missing $name/$host"
done <<'EOX'
TCP 80 7 HTTP www.example.test
TCP 80 7 HTTP api.example.test
TCP 80 7.124 HTTP.YouTube www.youtube.com
TCP 443 91 TLS www.example.test
TCP 443 91 TLS cdn.example.test
TCP 443 91 TLS other.example.test
TCP 443 91.126 TLS.Google www.google.com
UDP 53 5 DNS www.example.test
UDP 53 5 DNS mail.example.test
UDP 53 5 DNS ipv6.example.test
UDP 53 5.119 DNS.Facebook www.facebook.com
TCP 53 5 DNS tcp.example.test
EOX
[ -z "$missing" ] && pass "every generated exchange detected and final, with its host (HTTP Host, TLS SNI, DNS query name)" ||
	fail "not detected as expected:$missing"

# A policy can act on the ClientHello itself: on every TLS flow the SNI and the app
# arrive with the first packet that has data (after SYN, SYN-ACK, ACK), before final.
early=$(awk '$3 ~ /:443$/ {
	n++
	for (i = 4; i <= NF; i++) { j = index($i, "="); kv[substr($i, 1, j - 1)] = substr($i, j + 1) }
	if (kv["first_host"] == 4 && kv["first_app"] == 4 && kv["first_done"] > 4) ok++
	else print "late: " $0 > "/dev/stderr"
} END { print ok + 0 "/" n + 0 }' "$work/dpi.txt")
[ "${early%/*}" = "${early#*/}" ] && [ "${early#*/}" -ge 4 ] &&
	pass "TLS: app and SNI on the ClientHello's own frame, before final, on $early flows" ||
	fail "TLS: app and SNI on the ClientHello: $early flows"

# --- a negative control: the comparison must see a real disagreement -----------------
# With a budget of 1 packet the stage gives up on the SYN: TCP flows end up with a
# port guess and no host, which ndpiReader (which reads the ClientHello) contradicts.
replay budget1 "{name: dpi, packet_budget: 1}" || exit 1
compare budget1 >"$work/budget1.compare"
tail -1 "$work/budget1.compare"
gaveup=$(st budget1 stage_dpi_flows_gaveup)
if [ "$mismatches" -gt 0 ] && [ "$gaveup" = "$(st budget1 stage_dpi_flows)" ]; then
	pass "negative control: packet_budget 1 gives up on all $gaveup flows and the comparison reports $mismatches mismatches"
else
	fail "negative control: budget 1 gave up on $gaveup flows, $mismatches mismatches"
fi
