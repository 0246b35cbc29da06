#!/usr/bin/env bash
# Inline mode: real clients through the chain. A client namespace routes through host1's
# TUN (ingress: identity), host2 inspects and decides (dpi, policy), host3's TUN delivers
# into a server namespace (flowlog); return traffic takes the chain back in reverse.
#   client 10.91.1.2 -- host1 [tun rdm-in] -> host2 -> host3 [tun rdm-out] -- server 10.91.2.2
# Checks: an allowed SNI downloads 10 MB intact over TLS; a denied SNI fails fast with a
# reset; plain HTTP and DNS work; the flow log shows each flow with identity,
# application and rule; SIGHUP reloads the policy.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/rack.sh
BUILD=${BUILD:-build}
RDMESH=$PWD/$BUILD/rdmesh
work=$(mktemp -d /tmp/rdm-inline.XXXXXX)
trap 'rack_down; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; }
cli() { ip netns exec "$RACK-cli" "$@"; }
srv() { ip netns exec "$RACK-srv" "$@"; }

rack_up 3 || { fail "rack set-up"; exit 1; }
# The rack's certificates: every hop proves both ends (transport.protect: auth).
"$RDMESH" ctl certs --out "$work/certs" host1 host2 host3 >/dev/null || { echo "FAIL certificates"; exit 1; }
rack_edge cli 1 10.91.1 && rack_edge srv 3 10.91.2 || { fail "edge namespaces"; exit 1; }
for i in 1 3; do
	rack_exec $i sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 \
		net.ipv4.conf.default.rp_filter=0
done

# The server: TLS (openssl s_server -WWW serves files from its directory), HTTP and DNS.
mkdir -p "$work/www"
head -c 10485760 /dev/urandom >"$work/www/big.bin"
want=$(sha256sum <"$work/www/big.bin" | cut -d' ' -f1)
echo hello >"$work/www/hello.txt"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=server.test \
	-keyout "$work/key.pem" -out "$work/cert.pem" >/dev/null 2>&1
(cd "$work/www" && exec ip netns exec "$RACK-srv" openssl s_server -quiet -WWW -accept 443 \
	-cert "$work/cert.pem" -key "$work/key.pem" >"$work/tls.log" 2>&1) &
(cd "$work/www" && exec ip netns exec "$RACK-srv" python3 -m http.server 80 --bind 10.91.2.2 \
	>"$work/http.log" 2>&1) &
srv dnsmasq --no-daemon --no-resolv --no-hosts --port 53 --listen-address 10.91.2.2 \
	--bind-interfaces --address=/files.test/10.91.2.2 >"$work/dns.log" 2>&1 &
# Until the three servers listen (within 20 s: python starts slowly on a busy host).
t=0
until ip netns exec "$RACK-srv" ss -Hltn 'sport = :443' | grep -q . &&
	ip netns exec "$RACK-srv" ss -Hltn 'sport = :80' | grep -q . &&
	ip netns exec "$RACK-srv" ss -Hlun 'sport = :53' | grep -q .; do
	t=$((t + 1))
	[ $t -ge 200 ] && { fail "the servers did not start"; tail -5 "$work"/tls.log "$work"/http.log "$work"/dns.log; exit 1; }
	sleep 0.1
done

# Identity: the client's subnet is tenant acme, and the client itself is alice.
cat >"$work/directory.yaml" <<EOF
entries:
  - match: 10.91.1.0/24
    tenant: acme
    groups: [branch]
  - match: 10.91.1.2/32
    tenant: acme
    user: alice
    groups: [branch, eng]
EOF
cat >"$work/policy.yaml" <<EOF
default: allow
rules:
  - name: no-blocked-sites
    match: {host: "*.blocked.test"}
    action: reject
  - name: no-telnet
    match: {proto: tcp, port: 23}
    action: deny
EOF

stages1='[stamp]'
stages2='[stamp]'
stages3='[stamp]'
if [ "${STAGES:-all}" = all ]; then
	stages1="[stamp, {name: identity, directory: $work/directory.yaml}]"
	stages2="[stamp, dpi, {name: policy, file: $work/policy.yaml}]"
	stages3="[stamp, {name: flowlog, file: $work/flows.json, interval_s: 0}]"
fi
cat >"$work/chain.yaml" <<EOF
chain: {name: inline, spi: 9}
transport: {backoff_min_ms: 10, backoff_max_ms: 100, certs: $work/certs}
flows: {tcp_closed_ms: 300, udp_idle_ms: 1000, other_idle_ms: 1000}
nodes:
  - name: host1
    stages: $stages1
    next: host2
    ingress: {mode: tun, tun: rdm-in}
  - name: host2
    listen: $RACK_NET.2:7001
    stages: $stages2
    next: host3
  - name: host3
    listen: $RACK_NET.3:7001
    stages: $stages3
    egress: {tun: rdm-out}
EOF

for i in 3 2 1; do
	ip netns exec "$RACK-h$i" "$RDMESH" node --config "$work/chain.yaml" --name "host$i" \
		--stats "$work/stats$i" >>"$work/log$i" 2>&1 &
	eval "pid$i=$!"
done
# Routes into the TUNs once the nodes made them.
for t in 1:rdm-in:10.91.2.0/24 3:rdm-out:10.91.1.0/24; do
	IFS=: read -r i dev net <<<"$t"
	n=0
	until rack_exec "$i" ip link show "$dev" >/dev/null 2>&1; do
		n=$((n + 1))
		[ $n -ge 50 ] && { fail "host$i did not create $dev"; cat "$work/log$i"; exit 1; }
		sleep 0.1
	done
	rack_exec "$i" sysctl -qw "net.ipv4.conf.$dev.rp_filter=0"
	rack_exec "$i" ip route add "$net" dev "$dev"
done
n=0
until grep -q "next hop host2 .* up" "$work/log1" 2>/dev/null; do
	n=$((n + 1))
	[ $n -ge 50 ] && { fail "chain did not come up"; tail "$work"/log*; exit 1; }
	sleep 0.1
done

# 1. An allowed SNI: 10 MB over TLS, intact.
t0=$(date +%s.%N)
got=$(cli curl -sS -k --max-time 60 --resolve files.test:443:10.91.2.2 \
	https://files.test/big.bin 2>"$work/curl1.err" | sha256sum | cut -d' ' -f1)
t1=$(date +%s.%N)
if [ "$got" = "$want" ]; then
	pass "allowed SNI files.test: 10 MB over TLS through the chain, sha256 intact ($(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s)"
else
	fail "allowed SNI download: sha256 $got, want $want ($(cat "$work/curl1.err"))"
fi

# 2. Plain HTTP and DNS across the chain.
body=$(cli curl -sS --max-time 10 http://10.91.2.2/hello.txt -H "Host: files.test" 2>&1)
[ "$body" = hello ] && pass "HTTP GET through the chain" || fail "HTTP GET: $body"
ans=$(cli dig +short +time=2 +tries=2 @10.91.2.2 www.files.test A 2>&1)
[ "$ans" = 10.91.2.2 ] && pass "DNS query through the chain" || fail "DNS: $ans"

if [ "${STAGES:-all}" = all ]; then
	# 3. A denied SNI: a reset, fast, not a hang.
	t0=$(date +%s.%N)
	cli curl -sS -k --max-time 20 --resolve www.blocked.test:443:10.91.2.2 \
		https://www.blocked.test/hello.txt >/dev/null 2>"$work/curl2.err"
	rc=$?
	t1=$(date +%s.%N)
	secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
	if [ $rc -ne 0 ] && grep -qi "reset" "$work/curl2.err" && awk -v s="$secs" 'BEGIN { exit !(s < 3) }'; then
		pass "denied SNI www.blocked.test: reset in $(printf '%.3f' "$secs") s (curl: $(head -c 80 "$work/curl2.err"))"
	else
		fail "denied SNI: curl rc $rc after $secs s: $(cat "$work/curl2.err")"
	fi
fi

if [ "${STAGES:-all}" = all ]; then
	# 4. SIGHUP: a broken policy file is refused and the running policy stays; a good
	# one blocks files.test for new connections.
	cp "$work/policy.yaml" "$work/policy.good"
	printf 'default: allow\nrules:\n  - name: x\n    match: {hots: files.test}\n    action: deny\n' >"$work/policy.yaml"
	kill -HUP "$pid2"
	n=0
	until grep -q "reload policy" "$work/log2"; do n=$((n + 1)); [ $n -ge 50 ] && break; sleep 0.1; done
	if grep -q "policy.yaml:4:.*unknown key 'hots'.*keeping the running configuration" "$work/log2"; then
		pass "SIGHUP with a broken policy: refused with file:line:col, old policy kept ($(grep -m1 'reload policy' "$work/log2" | cut -d' ' -f3- | cut -c1-90))"
	else
		fail "broken policy reload: $(grep 'reload' "$work/log2")"
	fi
	{ cat "$work/policy.good"; printf '  - name: no-files\n    match: {host: files.test}\n    action: reject\n'; } >"$work/policy.yaml"
	kill -HUP "$pid2"
	n=0
	until grep -q "reload policy: done" "$work/log2"; do n=$((n + 1)); [ $n -ge 50 ] && break; sleep 0.1; done
	cli curl -sS -k --max-time 10 --resolve files.test:443:10.91.2.2 https://files.test/hello.txt \
		>/dev/null 2>"$work/curl3.err"
	if [ $? -ne 0 ] && grep -qi reset "$work/curl3.err"; then
		pass "SIGHUP with a good policy: files.test now gets a reset"
	else
		fail "after reload files.test: $(cat "$work/curl3.err")"
	fi
	# SIGHUP to host1: alice's entry in the directory changes; new flows carry it.
	sed -i 's/user: alice$/user: alice-v2/' "$work/directory.yaml"
	kill -HUP "$pid1"
	n=0
	until grep -q "reload identity: done" "$work/log1"; do n=$((n + 1)); [ $n -ge 50 ] && break; sleep 0.1; done
	body=$(cli curl -sS --max-time 10 http://10.91.2.2/hello.txt 2>&1)
	[ "$body" = hello ] && grep -q "reload identity: done" "$work/log1" &&
		pass "SIGHUP reloads the identity directory on host1 without dropping traffic" ||
		fail "identity reload: '$body' $(grep reload "$work/log1")"
	# Finished TCP flows linger tcp_closed_ms, then the flow log writes them: wait for
	# the last one (alice-v2's HTTP flow), within 10 s.
	n=0
	until grep -q '"alice-v2"' "$work/flows.json" 2>/dev/null; do n=$((n + 1)); [ $n -ge 100 ] && break; sleep 0.1; done
fi

for i in 1 2 3; do kill -TERM "$(eval echo \$pid$i)"; done
for i in 1 2 3; do wait_exit "$(eval echo \$pid$i)" 10 || fail "host$i ignored SIGTERM"; done

d=$(stat "$work/stats3" drops)
b=$(stat "$work/stats1" tun_tx)
[ -n "$b" ] && [ "$b" -gt 0 ] && pass "return traffic came back through the chain ($b packets out of host1's TUN; host3 drops: $d)" ||
	fail "no return traffic at host1 (tun_tx '$b')"

if [ "${STAGES:-all}" = all ]; then
	# 4. The flow log: both TLS flows with identity, application and rule.
	python3 - "$work/flows.json" <<'EOF' && pass "flow log: allowed and rejected TLS flows with alice's identity, TLS app, SNI and rule" || fail "flow log content (see above)"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
def find(host):
    # files.test is reached twice (the download, then a reset after the reload): the
    # download is the flow that carried the most bytes back.
    ls = [l for l in lines if l.get("host") == host and l.get("dport") == 443]
    return max(ls, key=lambda l: l.get("bytes_rev", 0)) if ls else None
ok = True
for host, verdict, rule in (("files.test", "allow", "default"),
                            ("www.blocked.test", "reject", "no-blocked-sites")):
    l = find(host)
    if not l:
        print("no flow log line for", host); ok = False; continue
    want = {"tenant": "acme", "user": "alice", "verdict": verdict, "rule": rule}
    for k, v in want.items():
        if l.get(k) != v:
            print(host, k, "is", l.get(k), "want", v); ok = False
    if "TLS" not in (l.get("app") or ""):
        print(host, "app is", l.get("app")); ok = False
    if host == "files.test" and l.get("reason") != "closed":
        print(host, "ended", l.get("reason"), "(want closed: FIN both ways seen)"); ok = False
users = [l.get("user") for l in lines if l.get("dport") == 80]
if users[:1] != ["alice"] or users[-1:] != ["alice-v2"]:
    print("HTTP flows' users before and after the directory reload:", users); ok = False
big = find("files.test")
if big and big.get("bytes_rev", 0) < 10485760:
    print("files.test bytes back", big.get("bytes_rev")); ok = False
sys.exit(0 if ok else 1)
EOF
fi
exit 0
