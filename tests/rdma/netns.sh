#!/usr/bin/env bash
# Runs inside the Soft-RoCE guest (tests/softroce/guest.sh): a stage in its own network
# namespace reaches the next over RDMA, as pods on one node would. Two "pods" and the
# node itself, all on one bridge:
#
#   init ns ("node"): bridge rdmpods0 10.90.0.1/24, rxe device rxenode on the bridge
#   rdmpodA: eth0 10.90.0.11/24 (veth, peer on the bridge), rxepodA created from inside
#   rdmpodB: eth0 10.90.0.12/24 (veth, peer on the bridge), rxepodB created from inside
#
# The rxe devices are made in shared mode (`rdma system` netns shared, the default) by
# `rdma link add` run inside each namespace, on the namespace's own eth0. Then: rping from
# podB to podA, an rdmesh chain host1 (podA) -> host2 (podB) over `transport: rdma`, and
# one from podB to a node in the init namespace. Each must deliver all, and the rxe
# counters must show the traffic on the pods' own devices.
#
# This needs rdma_rxe with a RoCEv2 (UDP 4791) socket per network namespace (the
# "RDMA/rxe: net namespace support" work, in Debian's 7.3 from trixie-backports). On 6.1
# and 6.12 rxe has one socket, in the init namespace only, and routes in init_net: a
# connection into a namespace never arrives (rping: RDMA_CM_EVENT_UNREACHABLE, error -110
# on 6.1; a hang on 6.12). On such a kernel this prints SKIP and exits 0 (set
# RDM_NETNS_FORCE=1 to run it anyway and see it fail). Exclusive mode (`rdma system set
# netns exclusive`, `rdma dev set rxeX netns NS`) is not used: 6.1/6.12 refuse the move
# ("Operation not supported"), and on 7.3.4 the moved rxe cannot create its QP1
# ("rxe_create_qp: returned err = -22", "Couldn't create ib_mad QP1") and rdma_connect
# fails with EINVAL.
#
#   tests/rdma/netns-guest.sh     # host side: boots trixie-backports' kernel, runs this
#   tests/softroce/guest.sh -- bash tests/rdma/netns.sh    # default 6.1 guest: SKIP
# (tests/softroce/README.md, "Other kernels").
# Prints PASS/FAIL/SKIP lines; exits 1 if any check failed.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/rack.sh # wait_exit, wait_log, stat
BUILD=${BUILD:-build}
RDMESH=$PWD/$BUILD/rdmesh
[ -n "${RDM_GUEST:-}" ] || { echo "tests/rdma/netns.sh: run me in the Soft-RoCE guest (tests/softroce/guest.sh)" >&2; exit 2; }
work=${RDM_OUT:?}/netns
rm -rf "$work"
mkdir -p "$work"

NA=rdmpodA NB=rdmpodB BR=rdmpods0
NET=10.90.0
AN=$NET.1 AA=$NET.11 AB=$NET.12
DEVN=rxenode DEVA=rxepodA DEVB=rxepodB
failed=0
pids=()
pass() { echo "PASS rdma-netns: $*"; }
fail() { echo "FAIL rdma-netns: $*"; failed=1; }
cleanup() {
	local p
	for p in "${pids[@]+"${pids[@]}"}"; do kill -9 "$p" 2>/dev/null; done
	# In the background, bounded: a device still in use makes `rdma link delete` wait.
	# On a kernel without rxe netns support (RDM_NETNS_FORCE=1) it was seen to hang for
	# good after the failed connects, and `ip netns del` behind it: then leave the rest
	# to the guest's power-off.
	for p in $DEVA $DEVB $DEVN; do
		[ -e /sys/class/infiniband/$p ] || continue
		rdma link delete $p &
		wait_exit $! 30 || {
			echo "note: rdma link delete $p: not done after 30 s; leaving the namespaces as they are"
			return 0
		}
	done
	ip netns del $NA 2>/dev/null
	ip netns del $NB 2>/dev/null
	ip link del $BR 2>/dev/null
}
trap cleanup EXIT

kver=$(uname -r)
if ! grep -qw rxe_ns_pernet_sk4 /proc/kallsyms 2>/dev/null && [ -z "${RDM_NETNS_FORCE:-}" ]; then
	echo "SKIP rdma-netns: kernel $kver: rdma_rxe has one RoCEv2 socket, in the init namespace only (no rxe_ns_pernet_sk4): an rxe device in a pod's namespace cannot receive; boot a kernel with rxe net namespace support (tests/softroce/README.md, Other kernels)"
	exit 0
fi
echo "kernel $kver, rdma system: $(rdma system show 2>&1)"

# counter DEV NAME: an rxe port counter (visible from every namespace in shared mode)
counter() { cat "/sys/class/infiniband/$1/ports/1/hw_counters/$2" 2>/dev/null || echo 0; }
# gid_of DEV ADDR: the RoCEv2 GID index and value for an IPv4 address, with its netdev
gid_of() {
	local g v want
	want=$(printf '0000:0000:0000:0000:0000:ffff:%02x%02x:%02x%02x' $(tr . ' ' <<<"$2"))
	for g in /sys/class/infiniband/$1/ports/1/gids/*; do
		read -r v <"$g" 2>/dev/null || continue
		[ "$v" = "$want" ] || continue
		[ "$(cat "/sys/class/infiniband/$1/ports/1/gid_attrs/types/${g##*/}" 2>/dev/null)" = "RoCE v2" ] || continue
		echo "index ${g##*/} $v (netdev $(cat "/sys/class/infiniband/$1/ports/1/gid_attrs/ndevs/${g##*/}" 2>/dev/null))"
		return 0
	done
	return 1
}
port_active() { # DEV
	local st="" i
	for i in $(seq 100); do
		read -r st <"/sys/class/infiniband/$1/ports/1/state" 2>/dev/null
		[[ $st == *ACTIVE* ]] && return 0
		sleep 0.1
	done
	return 1
}

# --- the pods -------------------------------------------------------------------------
setup() {
	ip link add $BR type bridge stp_state 0 forward_delay 0 &&
		ip addr add $AN/24 dev $BR && ip link set $BR up || return 1
	local ns addr
	for ns in $NA $NB; do
		[ $ns = $NA ] && addr=$AA || addr=$AB
		ip netns add $ns &&
			ip link add "v$ns" type veth peer name eth0 netns $ns &&
			ip link set "v$ns" master $BR up &&
			ip -n $ns addr add "$addr/24" dev eth0 &&
			ip -n $ns link set eth0 up && ip -n $ns link set lo up || return 1
	done
	# The RDMA devices: each pod's made from inside the pod, on its own eth0.
	echo "+ ip netns exec $NA rdma link add $DEVA type rxe netdev eth0"
	ip netns exec $NA rdma link add $DEVA type rxe netdev eth0 || return 1
	echo "+ ip netns exec $NB rdma link add $DEVB type rxe netdev eth0"
	ip netns exec $NB rdma link add $DEVB type rxe netdev eth0 || return 1
	echo "+ rdma link add $DEVN type rxe netdev $BR"
	rdma link add $DEVN type rxe netdev $BR || return 1
	port_active $DEVA && port_active $DEVB && port_active $DEVN || return 1
	local t=0
	until ip netns exec $NA ping -c1 -W1 $AB >/dev/null 2>&1 && ip netns exec $NB ping -c1 -W1 $AN >/dev/null 2>&1; do
		t=$((t + 1))
		[ $t -ge 20 ] && return 1
	done
}
if ! setup; then
	fail "set-up of the pods and their rxe devices"
	ip -br addr
	rdma link
	exit 1
fi
echo "-- rdma link, as seen from $NA:"
ip netns exec $NA rdma link
ga=$(gid_of $DEVA $AA) gb=$(gid_of $DEVB $AB) gn=$(gid_of $DEVN $AN)
sa=$(ip netns exec $NA ss -Huln 'sport = :4791' | wc -l)
sb=$(ip netns exec $NB ss -Huln 'sport = :4791' | wc -l)
if [ -n "$ga" ] && [ -n "$gb" ] && [ "$sa" -ge 1 ] && [ "$sb" -ge 1 ]; then
	pass "rxe made inside each pod: $DEVA GID $ga, $DEVB GID $gb; each pod has its own RoCEv2 UDP 4791 socket ($sa and $sb)"
else
	fail "pod devices: $DEVA GID '$ga', $DEVB GID '$gb', UDP 4791 sockets in the pods: $sa, $sb"
fi

# snap: the rxe counters of every device, "DEV sent rcvd" per line
snap() {
	local d
	for d in $(ls /sys/class/infiniband); do echo "$d $(counter "$d" sent_pkts) $(counter "$d" rcvd_pkts)"; done
}
# delta BEFORE AFTER DEV: "sent rcvd" packets of DEV between two snaps
delta() { awk -v d="$3" 'NR == FNR { if ($1 == d) { s = $2; r = $3 } next } $1 == d { print $2 - s, $3 - r }' "$1" "$2"; }
# others BEFORE AFTER DEV...: packets sent by any device not listed
others() {
	local b=$1 a=$2
	shift 2
	awk -v skip=" $* " 'NR == FNR { s[$1] = $2; next } index(skip, " " $1 " ") == 0 { n += $2 - s[$1] } END { print n + 0 }' "$b" "$a"
}

# --- rping: podB -> podA ----------------------------------------------------------------
snap >"$work/c0"
ip netns exec $NA timeout 60 rping -s -a $AA -C 5 >"$work/rping-server.log" 2>&1 &
rs=$!
sleep 1
ip netns exec $NB timeout 45 rping -c -a $AA -I $AB -C 5 -v >"$work/rping-client.log" 2>&1
rc=$?
wait_exit $rs 15 || kill $rs 2>/dev/null
snap >"$work/c1"
read -r a_s a_r <<<"$(delta "$work/c0" "$work/c1" $DEVA)"
read -r b_s b_r <<<"$(delta "$work/c0" "$work/c1" $DEVB)"
pings=$(grep -c 'ping data' "$work/rping-client.log")
if [ $rc = 0 ] && [ "$pings" = 5 ] && [ "$b_s" -gt 0 ] && [ "$a_r" -gt 0 ]; then
	pass "rping $NB ($AB, $DEVB) -> $NA ($AA, $DEVA): 5 of 5 pings; $DEVB sent $b_s rcvd $b_r, $DEVA sent $a_s rcvd $a_r packets"
else
	fail "rping $NB -> $NA: exit $rc, $pings pings, $DEVB sent $b_s, $DEVA rcvd $a_r"
	cat "$work/rping-client.log" "$work/rping-server.log"
fi

# --- rdmesh: a two-node chain across namespaces ------------------------------------------
"$RDMESH" ctl certs --out "$work/certs" host1 host2 >/dev/null || {
	fail "certificates"
	exit 1
}
PACKETS=3000
WAIT_MS=${RDM_NETNS_WAIT_MS:-60000} # how long the ingress waits for its next hop
# hop NAME NS1 ADDR1 DEV1 NS2 ADDR2 DEV2 PORT: host1 in NS1 (gen ingress) -> host2 in NS2
# (egress), transport rdma, protect auth (the default). NS "-" is the init namespace.
hop() {
	local name=$1 ns1=$2 a1=$3 d1=$4 ns2=$5 a2=$6 d2=$7 port=$8 dir=$work/$1
	mkdir -p "$dir"
	cat >"$dir/chain.yaml" <<EOC
chain: {name: $name, spi: 7}
transport: {backoff_min_ms: 20, backoff_max_ms: 200, certs: $work/certs}
nodes:
  - name: host1
    listen: $a1:$port
    stages: [stamp]
    next: host2
    transport: rdma
    ingress: {mode: gen, count: $PACKETS, flows: 30, rate: 1000, seed: 3, wait_ms: $WAIT_MS}
  - name: host2
    listen: $a2:$port
    stages: [stamp]
    egress: {count: $PACKETS}
EOC
	in_ns() { if [ "$1" = - ]; then shift; "$@"; else local n=$1; shift; ip netns exec "$n" "$@"; fi; }
	snap >"$dir/c0"
	in_ns "$ns2" "$RDMESH" node --config "$dir/chain.yaml" --name host2 --stats "$dir/stats2" >"$dir/log2" 2>&1 &
	pids[2]=$!
	wait_log "$dir/log2" 'listening on' 60
	in_ns "$ns1" "$RDMESH" node --config "$dir/chain.yaml" --name host1 --stats "$dir/stats1" >"$dir/log1" 2>&1 &
	pids[1]=$!
	# While packets flow (3 s at 1000 pkt/s): which device each end's connection uses.
	# (Deadlines in real seconds: a loop step takes far more than its sleep in the guest.)
	local end=$((SECONDS + 90))
	until grep -q 'up over rdma' "$dir/log1" 2>/dev/null; do
		kill -0 "${pids[1]}" 2>/dev/null && [ $SECONDS -lt $end ] || break
		sleep 0.2
	done
	if grep -q 'up over rdma' "$dir/log1"; then
		sleep 0.5
		rdma res show cm_id >"$dir/cm_id" 2>&1
	fi
	wait_exit "${pids[1]}" 120 || { fail "$name: host1 (the ingress) did not finish"; kill -9 "${pids[1]}"; }
	wait_exit "${pids[2]}" 30 || { kill -TERM "${pids[2]}"; wait_exit "${pids[2]}" 10 || kill -9 "${pids[2]}"; }
	snap >"$dir/c1"
	local sent got lost tr hs s1 r1 s2 r2 other
	touch "$dir/stats1" "$dir/stats2" "$dir/cm_id" # a node killed before it wrote them
	sent=$(stat "$dir/stats1" ingress_sent) got=$(stat "$dir/stats2" egress_packets)
	lost=$(stat "$dir/stats2" egress_lost) tr=$(stat "$dir/stats1" down_transport)
	hs=$(stat "$dir/stats1" down_handshakes)
	read -r s1 r1 <<<"$(delta "$dir/c0" "$dir/c1" "$d1")"
	read -r s2 r2 <<<"$(delta "$dir/c0" "$dir/c1" "$d2")"
	other=$(others "$dir/c0" "$dir/c1" "$d1" "$d2")
	echo "$name: cm_ids while running (rdma res show cm_id):"
	grep -E "$d1|$d2" "$dir/cm_id" | sed 's/^/  /'
	if [ "$got" = $PACKETS ] && [ "$sent" = $PACKETS ] && [ "${lost:-0}" = 0 ] && [ "$tr" = rdma ] &&
		[ "${hs:-0}" -ge 1 ] && [ "${s1:-0}" -gt 0 ] && [ "${r2:-0}" -gt 0 ] && [ "$other" = 0 ] &&
		grep -q "$d1.*$a1" "$dir/cm_id" && grep -q "$d2.*$a2" "$dir/cm_id"; then
		pass "$name: rdmesh host1 in ${ns1/-/the init namespace} ($a1, $d1, GID $(gid_of "$d1" "$a1")) -> host2 in ${ns2/-/the init namespace} ($a2, $d2, GID $(gid_of "$d2" "$a2")) over transport rdma, protect auth ($hs handshake): sent $sent, delivered $got of $PACKETS, lost ${lost:-0}; RoCE packets: $d1 sent $s1 rcvd $r1, $d2 sent $s2 rcvd $r2, other devices $other"
	else
		fail "$name: sent '$sent', delivered '$got' of $PACKETS, lost '$lost', transport '$tr', handshakes '$hs'; $d1 sent $s1 rcvd $r1, $d2 sent $s2 rcvd $r2, other devices $other"
		echo "--- $name host1 (last lines)"; grep -v 'ingress: 0 taken' "$dir/log1" | tail -n 15
		echo "--- $name host2 (last lines)"; grep -v 'egress: 0 packets' "$dir/log2" | tail -n 15
		cat "$dir/cm_id" 2>/dev/null
	fi
}
hop pod-to-pod $NA $AA $DEVA $NB $AB $DEVB 7501
pids=()
hop pod-to-node $NB $AB $DEVB - $AN $DEVN 7502
pids=()

exit $failed
