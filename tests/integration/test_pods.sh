#!/usr/bin/env bash
# Pods on loopback (processes, no containers: test_containers.sh runs them in podman):
# what takes time or a restart. Two hosts run edge and log, dpi is pod-backed; pods are
# `rdmesh node --join` processes with addresses of their own (127.0.0.2, .3).
# Checks: a shared token (--uses 0) lets two pods join; an expired token, a token for
# another stage, a pod taking a host's name or the orchestrator's are refused; silent
# connections without a certificate are capped and closed after 5 s; a pod's certificate is renewed before it expires (60 s
# lifetime: at 40 s) and its replica takes it without a restart; after an orchestrator
# restart the pods come back on their certificates alone, with the same replica ids and
# no replica restarted, and a one-time token spent before the restart stays spent.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/rack.sh # until_status, stat
BUILD=${BUILD:-build}
RDMESH=$PWD/$BUILD/rdmesh
work=$(mktemp -d /tmp/rdm-pods.XXXXXX)
ORCH=127.0.0.1:7640
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; }
ctl() { "$RDMESH" ctl --orch "$ORCH" --certs "$work/certs" "$@"; }
# wait_log FILE TEXT SECS: until FILE has a line matching TEXT.
wait_log() {
	local t=0
	until grep -- "$2" "$1" >/dev/null 2>&1; do
		[ $t -ge $(($3 * 10)) ] && return 1
		sleep 0.1
		t=$((t + 1))
	done
}
orch() {
	"$RDMESH" orch --rack "$work/rack.yaml" --chain "$work/chain.yaml" --certs "$work/certs" \
		--state "$work/orch.state" --listen "$ORCH" --dead-ms 1500 --pod-cert-s 60 >>"$work/orch.log" 2>&1 &
	opid=$!
	pids+=($opid)
}
# pod NAME TOKEN_FILE DATA [more options]: a pod process, in the background.
pod() {
	local name=$1 tok=$2 data=$3
	shift 3
	mkdir -p "$work/$name"
	"$RDMESH" node --orch "$ORCH" --join "$tok" --stage dpi --name "$name" --ca "$work/certs/ca.pem" \
		--certs "$work/$name/certs" --dir "$work/$name/dir" --data "$data" "$@" >"$work/$name.log" 2>&1 &
	pids+=($!)
}

cat >"$work/rack.yaml" <<EOF
ports: 7600-7639
nodes:
  - {name: host1, control: 127.0.0.1, data: 127.0.0.1, capacity: 4, labels: {zone: a}}
  - {name: host2, control: 127.0.0.1, data: 127.0.0.1, capacity: 4, labels: {zone: b}}
EOF
awk -v d="$PWD" -v w="$work" '
	{ sub(/directory: directory.yaml/, "directory: " d "/configs/directory.yaml")
	  sub(/file: policy.yaml/, "file: " d "/configs/policy.yaml")
	  sub(/file: ..\/build\/demo\/flows.json/, "file: " w "/flows.json")
	  sub(/frames: ..\/build\/demo\/frames.pcap/, "frames: " w "/frames.pcap")
	  sub(/count: 200000/, "count: 100000000"); sub(/rate: 10000/, "rate: 500")
	  if ($0 ~ /name: dpi/) dpi = 1
	  if (dpi && $0 ~ /replicas: 1/) { print "    replicas: 0"; print "    pods: {deployment: rdmesh-dpi, namespace: rdmesh}"; dpi = 0; next }
	  print }' configs/chain.yaml >"$work/chain.yaml"
"$RDMESH" ctl certs --out "$work/certs" orch ctl host1 host2 >/dev/null || { fail "certificates"; exit 1; }
orch
for h in host1 host2; do
	"$RDMESH" node --orch "$ORCH" --name $h --certs "$work/certs" --dir "$work/$h" >"$work/$h.log" 2>&1 &
	pids+=($!)
done

# ---- a shared token: two pods ----
"$RDMESH" ctl token --certs "$work/certs" --stage dpi --uses 0 --ttl 600 >"$work/tok-shared"
pod pa "$work/tok-shared" 127.0.0.2
pod pb "$work/tok-shared" 127.0.0.3
two='$1 ~ /^dpi-5[0-9]$/ && $5 == "running" && $7 > 0 { n++ } END { exit n < 2 }'
if until_status 30 "$two"; then
	pass "a shared token (--uses 0): two pods joined and carry flows: $(awk '$1 ~ /^dpi-5[0-9]$/ { printf "%s on %s (%s); ", $1, $3, $4 }' "$work/status")"
else
	fail "shared token: $(head -20 "$work/status" 2>/dev/null); $(grep -i 'join\|pod' "$work/orch.log" | tail -4)"
fi
ids_before=$(awk '$1 ~ /^dpi-5[0-9]$/ { print $1 "@" $3 }' "$work/status" | sort | tr '\n' ' ')

# ---- refusals that need a clock or a certificate ----
"$RDMESH" ctl token --certs "$work/certs" --stage dpi --ttl 1 >"$work/tok-expired"
"$RDMESH" ctl token --certs "$work/certs" --stage log --ttl 600 >"$work/tok-log"
sleep 2
refused=""
for c in "pc tok-expired expired" "pd tok-log is for stage 'log', not 'dpi'"; do
	set -- $c
	name=$1 file=$2
	shift 2
	mkdir -p "$work/$name"
	"$RDMESH" node --orch "$ORCH" --join "$work/$file" --stage dpi --name "$name" --ca "$work/certs/ca.pem" \
		--certs "$work/$name/certs" --dir "$work/$name/dir" >"$work/$name.log" 2>&1
	rc=$?
	if [ $rc = 1 ] && grep "refused us: .*$*" "$work/$name.log" >/dev/null &&
		grep "join refused: .*(name '$name', stage 'dpi'): .*$*" "$work/orch.log" >/dev/null; then
		refused="$refused $name: '$*';"
	else
		fail "$name ($file): exit $rc: $(tail -1 "$work/$name.log")"
	fi
done
# A pod cannot take a host's name (its certificate would be the host's identity).
mkdir -p "$work/pe"
"$RDMESH" node --orch "$ORCH" --join "$work/tok-shared" --stage dpi --name host1 --ca "$work/certs/ca.pem" \
	--certs "$work/pe/certs" --dir "$work/pe/dir" >"$work/pe.log" 2>&1
grep "refused us: 'host1' is already a host of the mesh" "$work/pe.log" >/dev/null &&
	refused="$refused a pod named host1: 'already a host';" || fail "pod named host1: $(tail -1 "$work/pe.log")"
# Nor the orchestrator's or the operator's: a certificate named so would pass for them.
"$RDMESH" node --orch "$ORCH" --join "$work/tok-shared" --stage dpi --name orch --ca "$work/certs/ca.pem" \
	--certs "$work/pe/certs" --dir "$work/pe/dir" >"$work/pe2.log" 2>&1
grep "refused us: 'orch' is a reserved name" "$work/pe2.log" >/dev/null &&
	refused="$refused a pod named orch: 'a reserved name';" || fail "pod named orch: $(tail -1 "$work/pe2.log")"
[ "$(echo "$refused" | grep -o ';' | wc -l)" = 4 ] && pass "joins refused, with who and why in the orchestrator's log:$refused"

# ---- anyone may open a connection to ask to join: such connections cannot pile up ----
# One process opens all 70 (TLS 1.3, no certificate) and holds them 8 s: seventy
# openssl processes starting on a loaded 2-core machine could take longer than the 5 s
# the first ones are given, and never reach the cap together.
python3 - "$ORCH" >"$work/silent.log" 2>&1 <<'EOP' &
import socket, ssl, sys, time
host, port = sys.argv[1].rsplit(":", 1)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
held = []
for i in range(70):
    try:
        held.append(ctx.wrap_socket(socket.create_connection((host, int(port)), timeout=5)))
    except (ssl.SSLError, OSError):
        pass
print("held", len(held), flush=True)
time.sleep(8)
EOP
silent=$!
if wait_log "$work/orch.log" "joining connections are open, the most taken" 15 &&
	ctl status >/dev/null 2>&1 &&
	wait_log "$work/orch.log" "(joining): said nothing within 5000 ms: closed" 15; then
	pass "70 silent connections without a certificate: $(grep -o 'closed: [0-9]* joining connections are open, the most taken' "$work/orch.log" | head -1), the others closed after 5 s ($(grep -c 'said nothing within 5000 ms' "$work/orch.log") so far); ctl status answered meanwhile"
else
	fail "silent joining connections: $(cat "$work/silent.log") $(grep -i 'joining' "$work/orch.log" | tail -3)"
fi
wait $silent

# ---- renewal: a 60 s certificate is renewed at 40 s, the replica takes it in place ----
serial0=$(openssl x509 -in "$work/pa/certs/pa.pem" -noout -serial 2>/dev/null)
reloads0=$(grep -c "reload: certificates read again" "$work/pa.log")
if wait_log "$work/orch.log" "pa: new certificate installed" 60 &&
	wait_log "$work/pa.log" "renew: new key and certificate installed in .*; replicas use them now" 5; then
	serial1=$(openssl x509 -in "$work/pa/certs/pa.pem" -noout -serial 2>/dev/null)
	subj=$(openssl x509 -in "$work/pa/certs/pa.pem" -noout -subject 2>/dev/null)
	if [ "$serial0" != "$serial1" ] && [ "$(grep -c ': started (listen' "$work/pa.log")" = 1 ] &&
		[ "$(grep -c "reload: certificates read again" "$work/pa.log")" -gt "$reloads0" ]; then
		pass "pod certificate renewed before it expired: $(grep -o 'pod pa: its certificate expires in [0-9]* s: renewing it' "$work/orch.log" | head -1); new $serial1 ($subj); the replica read it again, not restarted"
	else
		fail "renewal: serial $serial0 -> $serial1; $(tail -3 "$work/pa.log")"
	fi
else
	fail "no renewal within 60 s: $(grep -i renew "$work/orch.log" | tail -3)"
fi

# ---- an orchestrator restart: pods come back on their certificates ----
"$RDMESH" ctl token --certs "$work/certs" --stage dpi --ttl 600 >"$work/tok-once"
pod pf "$work/tok-once" 127.0.0.4
until_status 20 '$3 == "pf" && $5 == "running" { ok = 1 } END { exit !ok }' >/dev/null ||
	fail "pf did not join: $(tail -2 "$work/pf.log")"
ids_before=$(awk '$1 ~ /^dpi-5[0-9]$/ { print $1 "@" $3 }' "$work/status" | sort | tr '\n' ' ')
starts=$(grep -c ': started (listen' "$work/pa.log" "$work/pb.log" "$work/pf.log" | awk -F: '{ s += $2 } END { print s }')
kill "$opid"
wait "$opid" 2>/dev/null
orch
back='$1 ~ /^dpi-5[0-9]$/ && $5 == "running" { n++ } END { exit n < 3 }'
if until_status 30 "$back"; then
	ids_after=$(awk '$1 ~ /^dpi-5[0-9]$/ { print $1 "@" $3 }' "$work/status" | sort | tr '\n' ' ')
	starts2=$(grep -c ': started (listen' "$work/pa.log" "$work/pb.log" "$work/pf.log" | awk -F: '{ s += $2 } END { print s }')
	if [ "$ids_before" = "$ids_after" ] && [ "$starts" = "$starts2" ]; then
		pass "orchestrator restarted: the pods came back on their certificates with the same replicas ($ids_after), none restarted"
	else
		fail "after the restart: before '$ids_before', after '$ids_after'; replica starts $starts -> $starts2"
	fi
else
	fail "pods not back after the restart: $(head -20 "$work/status" 2>/dev/null)"
fi
mkdir -p "$work/pg"
"$RDMESH" node --orch "$ORCH" --join "$work/tok-once" --stage dpi --name pg --ca "$work/certs/ca.pem" \
	--certs "$work/pg/certs" --dir "$work/pg/dir" >"$work/pg.log" 2>&1
grep "refused us: token .* was used already (by pf)" "$work/pg.log" >/dev/null &&
	pass "a one-time token spent before the restart stays spent: $(grep -o 'token .* was used already (by pf)' "$work/pg.log")" ||
	fail "reused token after the restart: $(tail -1 "$work/pg.log")"
exit 0
