#!/usr/bin/env bash
# The SASE stages on generated traffic across four hosts, with two replicas of the
# inspection stage:
#   host1 (gen, identity) -> {host2, host3} (dpi, policy) -> host4 (flowlog, egress)
# Checks: every packet accounted for (policy drops arrive as notices, no loss); flows split
# over both replicas and each flow, both directions, meets one replica only (the
# symmetric hash), so each is inspected exactly once; identity, application and verdicts
# in the flow log; then absurd frames from a rogue upstream are counted and the chain
# carries on.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/rack.sh
BUILD=${BUILD:-build}
RDMESH=$PWD/$BUILD/rdmesh
work=$(mktemp -d /tmp/rdm-sase.XXXXXX)
trap 'rack_down; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; }

rack_up 4 || { fail "rack set-up"; exit 1; }
# The rack's certificates: every hop proves both ends (transport.protect: auth).
"$RDMESH" ctl certs --out "$work/certs" host1 host2 host3 host4 >/dev/null || { echo "FAIL certificates"; exit 1; }
PACKETS=8000
FLOWS=400
cat >"$work/chain.yaml" <<EOF
chain: {name: sase, spi: 5}
transport: {backoff_min_ms: 10, backoff_max_ms: 100, certs: $work/certs}
flows: {tcp_closed_ms: 200}
nodes:
  - name: host1
    stages: [stamp, {name: identity, directory: $PWD/configs/directory.yaml}]
    next: [host2, host3]
    ingress: {mode: gen, count: $PACKETS, flows: $FLOWS, seed: 5, rate: 20000}
  - name: host2
    listen: $RACK_NET.2:7001
    stages: [stamp, dpi, {name: policy, file: $PWD/configs/policy.yaml}]
    next: host4
  - name: host3
    listen: $RACK_NET.3:7001
    stages: [stamp, dpi, {name: policy, file: $PWD/configs/policy.yaml}]
    next: host4
  - name: host4
    listen: $RACK_NET.4:7001
    stages: [stamp, {name: flowlog, file: $work/flows.json, interval_s: 0}]
    egress: {count: $PACKETS}
EOF
"$RDMESH" check "$work/chain.yaml" >/dev/null || { fail "rdmesh check"; exit 1; }

for i in 4 3 2 1; do
	ip netns exec "$RACK-h$i" "$RDMESH" node --config "$work/chain.yaml" --name "host$i" \
		--stats "$work/stats$i" >>"$work/log$i" 2>&1 &
	eval "pid$i=$!"
done
wait_exit "$pid1" 60 || fail "ingress did not finish"
wait_exit "$pid4" 30 || { fail "egress did not account for every packet"; kill -TERM "$pid4"; wait_exit "$pid4" 5; }
for i in 2 3; do kill -TERM "$(eval echo \$pid$i)"; done
for i in 2 3; do wait_exit "$(eval echo \$pid$i)" 10 || fail "host$i ignored SIGTERM"; done

s4=$work/stats4
got=$(stat "$s4" egress_packets)
notes=$(stat "$s4" notices)
lost=$(stat "$s4" egress_lost)
if [ "$((got + notes))" = $PACKETS ] && [ "$lost" = 0 ]; then
	pass "all $PACKETS packets accounted for: $got delivered, $notes dropped by policy and announced, 0 lost"
else
	fail "delivered $got + notices $notes of $PACKETS, lost $lost"
fi

# Both replicas carry flows; each flow meets one replica, so it is inspected once.
f2=$(stat "$work/stats2" stage_dpi_flows)
f3=$(stat "$work/stats3" stage_dpi_flows)
python3 - "$work/flows.json" "$f2" "$f3" <<'EOF' && pass "flows split over the replicas (host2 $f2, host3 $f3): every flow, both directions, through one replica; inspected once" || fail "replica split (see above)"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
f2, f3 = int(sys.argv[2]), int(sys.argv[3])
ok = True
if f2 == 0 or f3 == 0:
    print("a replica got no flows:", f2, f3); ok = False
if f2 + f3 != len(lines):
    print("dpi flows", f2, "+", f3, "!= flows logged", len(lines)); ok = False
for l in lines:
    mids = {h["to"] for h in l["hops"] if h["from"] == 1}
    if len(mids) != 1:
        print("flow", l["src"], l["sport"], l["dst"], l["dport"], "went through", mids); ok = False
    if l["packets_rev"] and l["proto"] == "tcp" and l["packets_fwd"] == 0:
        print("flow with replies only", l); ok = False
sys.exit(0 if ok else 1)
EOF

python3 - "$work/flows.json" <<'EOF' && pass "flow log: every flow has its tenant, application and verdict; the demo policy's deny, reject and log rules all decided flows" || fail "flow log content (see above)"
import collections, json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
ok = True
rules = collections.Counter((l["verdict"], l["rule"]) for l in lines)
for l in lines:
    if l["tenant"] not in ("acme", "globex") or l["identity_unknown"]:
        print("identity of", l["src"], ":", l["tenant"], l["identity_unknown"]); ok = False; break
    if l["app"] not in ("HTTP", "TLS", "DNS") or not l["dpi_done"]:
        print("app of", l["src"], l["dport"], ":", l["app"], l["dpi_done"]); ok = False; break
    if l["verdict"] == "none":
        print("no verdict:", l); ok = False; break
for want in (("deny", "no-http-10-2-4"), ("reject", "blocked-hosts"), ("log", "globex-dns-log")):
    if not rules[want]:
        print("no flow decided by", want, "in", dict(rules)); ok = False
sys.exit(0 if ok else 1)
EOF

# A rogue upstream: frames that decode but carry nonsense. The replica counts them, the
# chain carries on, and a second run still gets everything through.
for i in 4 2 3; do
	ip netns exec "$RACK-h$i" "$RDMESH" node --config "$work/chain.yaml" --name "host$i" \
		--stats "$work/b$i" >>"$work/blog$i" 2>&1 &
	eval "bpid$i=$!"
done
# The rogue sends once host2 listens (within 5 s).
t=0
until grep -q listening "$work/blog2" 2>/dev/null || [ $t -ge 50 ]; do sleep 0.1; t=$((t + 1)); done
ip netns exec "$RACK-h1" "$BUILD/tools/badframes" --certs "$work/certs" --as host1 \
	--expect host2 --spi 5 --si 254 "$RACK_NET.2:7001" absurd >"$work/bad.out" 2>&1
ip netns exec "$RACK-h1" "$RDMESH" node --config "$work/chain.yaml" --name host1 \
	--stats "$work/b1" >>"$work/blog1" 2>&1 &
bpid1=$!
wait_exit "$bpid1" 60 || fail "second run: ingress did not finish"
# The egress ends by itself once it has accounted for every packet (within 30 s).
t=0
while kill -0 "$bpid4" 2>/dev/null && [ $t -lt 300 ]; do sleep 0.1; t=$((t + 1)); done
for i in 2 3 4; do kill -TERM "$(eval echo \$bpid$i)" 2>/dev/null; done
alive=1
for i in 2 3 4; do wait_exit "$(eval echo \$bpid$i)" 10 || alive=0; done
b2=$work/b2
nip=$(stat "$b2" stage_dpi_not_ip)
mal=$(stat "$b2" stage_dpi_malformed)
frag=$(stat "$b2" stage_dpi_fragments)
full=$(stat "$b2" stage_stamp_hops_full)
ttl=$(stat "$work/b4" drop_ttl_expired)
acc=$(($(stat "$work/b4" egress_packets) + $(stat "$work/b4" notices)))
if grep -q "sent 11 absurd" "$work/bad.out" && [ $alive = 1 ] && [ "${nip:-0}" -ge 1 ] &&
	[ "${mal:-0}" -ge 1 ] && [ "${frag:-0}" -ge 1 ] && [ "${full:-0}" -ge 1 ] &&
	[ "${ttl:-0}" -ge 1 ] && [ "$acc" -ge $PACKETS ]; then
	pass "11 absurd frames from a rogue upstream: counted (dpi not_ip $nip, malformed $mal, fragments $frag; stamp hops_full $full; ttl_expired $ttl downstream), no stage crashed, $acc packets accounted after them"
else
	fail "absurd frames: $(cat "$work/bad.out"); alive $alive not_ip '$nip' malformed '$mal' fragments '$frag' hops_full '$full' ttl '$ttl' accounted $acc"
	tail -5 "$work/blog2"
fi
python3 -c "
import json, sys
for l in open('$work/flows.json'): json.loads(l)
" && pass "the flow log stays valid JSON after binary strings from upstream" || fail "flow log not valid JSON"
exit 0
