#!/usr/bin/env bash
# rdmesh bench: how much one hop costs on each path, measured side by side in one run.
# Run by `rdmesh bench [--quick] [--out DIR] [--rdma]` (which sets RDMESH), or `make bench`.
#
# Paths (each "host" and "container" is a network namespace this script makes and removes):
#   native   two hosts joined by a veth pair
#   overlay  Docker's overlay layout: each host holds a bridge and a VXLAN device (VNI 42,
#            UDP 4789) towards the other; each container hangs off its host's bridge by a
#            veth pair, in the overlay subnet 172.18.0.0/24
#   sidecar  the overlay path with HAProxy (TCP mode) in front of every receiving node,
#            the way a classic mesh adds a proxy hop
#   rdma     (--rdma, where an RDMA device exists: the Soft-RoCE guest) rxe0 -> rxe1
# For each path: per-hop latency of 1-hop and 3-hop chains (the frames' own timestamps,
# p50/p99/p99.9/max), the transport's half round trip (tests/tools/pingpong) beside
# sockperf ping-pong (TCP paths) or ib_send_lat (rdma), throughput through one hop with 1
# and 2 workers at 64 B and 1500 B, and the CPU time per million packets; beside the
# targets, what the machine itself allows (tests/tools/coldcache, tests/tools/jitter).
# Output in DIR: bench.csv, bench.md, latency.png, throughput.png.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$ROOT/tests/lib/rack.sh"
RDMESH=${RDMESH:-$ROOT/build/rdmesh}
TOOLS=${TOOLS:-$(dirname "$RDMESH")/tools}
quick=0
rdma=0
out=$ROOT/build/bench/results
while [ $# -gt 0 ]; do
	case $1 in
	--quick) quick=1 ;;
	--rdma) rdma=1 ;;
	--guest) quick=2 ;; # both sizes and worker counts, at counts an emulated guest can take
	--out) out=$2; shift ;;
	*) echo "usage: rdmesh bench [--quick|--guest] [--out DIR] [--rdma]" >&2; exit 2 ;;
	esac
	shift
done
for t in pingpong fixedpcap jitter coldcache; do
	[ -x "$TOOLS/$t" ] || { echo "bench: $TOOLS/$t missing (make builds it)" >&2; exit 1; }
done
[ $rdma = 1 ] || [ "$(id -u)" = 0 ] || { echo "bench: needs root for network namespaces" >&2; exit 1; }

if [ $quick = 1 ]; then
	LAT_N=300 LAT_RATE=1000 PP_N=300 TP_N=2000 SIZES="64" WORKERS="1" SOCK_T=1
elif [ $quick = 2 ]; then
	LAT_N=1000 LAT_RATE=500 PP_N=1000 TP_N=5000 SIZES="64 1500" WORKERS="1 2" SOCK_T=2
else
	LAT_N=3000 LAT_RATE=1000 PP_N=3000 TP_N=100000 SIZES="64 1500" WORKERS="1 2" SOCK_T=3
fi
# A frame's header after its flow's first, at the first hop: base 8, CTX 8, SEQ 16, HOP_NS
# 12 (transport/framectx.h): the round-trip references carry frames of packet + this.
STATE_HDR=44
# The longer forwarding run's packets, in TP_N: the difference of the two runs must keep
# the middle node over 100 ms of CPU to be judged (5x gave it 63 ms once it got faster,
# 10x 99 ms on 2026-12-08).
FWD_X=20
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/rdm-bench.XXXXXX")
B=${RDM_BENCH_NS:-rdb$$} # the prefix of every namespace the bench makes
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$B-"); do
		ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
		ip netns del "$ns" 2>/dev/null
	done
	rm -rf "$work"
}
trap cleanup EXIT
# The rack's certificates: every hop proves both ends (transport.protect: auth).
"$RDMESH" ctl certs --out "$work/certs" host1 host2 host3 host4 host5 host6 host7 host8 host9 >/dev/null || { echo "FAIL certificates"; exit 1; }
step() { printf '[%5ss] %s\n' "$SECONDS" "$*"; }

# --- topologies ---------------------------------------------------------------------------
# Each path sets: ${P}_S / ${P}_R (namespace of sender / receiver, "" = none) and
# ${P}_SA / ${P}_RA (their addresses).
ns_add() { ip netns add "$B-$1" && ip -n "$B-$1" link set lo up; }

setup_native() {
	ns_add na && ns_add nb || return 1
	ip -n "$B-na" link add eth0 type veth peer name eth0 netns "$B-nb"
	ip -n "$B-na" addr add 10.78.0.1/24 dev eth0
	ip -n "$B-nb" addr add 10.78.0.2/24 dev eth0
	ip -n "$B-na" link set eth0 up
	ip -n "$B-nb" link set eth0 up
	native_S=$B-na native_R=$B-nb native_SA=10.78.0.1 native_RA=10.78.0.2
}

setup_overlay() {
	ns_add ha && ns_add hb && ns_add ca && ns_add cb || return 1
	ip -n "$B-ha" link add eth0 type veth peer name eth0 netns "$B-hb"
	ip -n "$B-ha" addr add 10.79.0.1/24 dev eth0
	ip -n "$B-hb" addr add 10.79.0.2/24 dev eth0
	local h o c
	for h in a b; do
		o=$([ $h = a ] && echo 2 || echo 1)
		c=$([ $h = a ] && echo 2 || echo 3)
		ip -n "$B-h$h" link set eth0 up
		ip -n "$B-h$h" link add br0 type bridge
		ip -n "$B-h$h" link add vxlan0 type vxlan id 42 dstport 4789 local "10.79.0.$([ $h = a ] && echo 1 || echo 2)" \
			remote "10.79.0.$o" dev eth0
		ip -n "$B-h$h" link set vxlan0 master br0 up
		ip -n "$B-h$h" link set br0 up
		# The container's veth: MTU 1450 leaves room for the 50 bytes VXLAN adds.
		ip -n "$B-h$h" link add "veth-c$h" mtu 1450 type veth peer name eth0 netns "$B-c$h"
		ip -n "$B-h$h" link set "veth-c$h" master br0 up
		ip -n "$B-c$h" link set eth0 mtu 1450 up
		ip -n "$B-c$h" addr add "172.18.0.$c/24" dev eth0
	done
	overlay_S=$B-ca overlay_R=$B-cb overlay_SA=172.18.0.2 overlay_RA=172.18.0.3
	sidecar_S=$B-ca sidecar_R=$B-cb sidecar_SA=172.18.0.2 sidecar_RA=172.18.0.3
	local t=0
	until ip netns exec "$B-ca" ping -c1 -W1 172.18.0.3 >/dev/null 2>&1; do
		t=$((t + 1))
		[ $t -ge 30 ] && { echo "bench: overlay does not pass traffic" >&2; return 1; }
		sleep 0.1
	done
}

# shm: two nodes on one host (the native path's sender namespace), over shared memory.
setup_shm() {
	shm_S=$B-na shm_R=$B-na shm_SA=10.78.0.1 shm_RA=10.78.0.1
}

setup_rdma() {
	read -r rdma_SA rdma_RA _ <<<"${RDM_RXE_ADDRS:?--rdma needs RDM_RXE_ADDRS (the Soft-RoCE guest)}"
	rdma_S="" rdma_R=""
}

# inns NS CMD...: run in a namespace ("" = here).
inns() {
	local ns=$1
	shift
	if [ -n "$ns" ]; then ip netns exec "$ns" "$@"; else "$@"; fi
}

# spawn NS CMD... &: the same in the background; it execs, so $! is the command itself
# (a function put in the background is a subshell, and signals would miss the command).
spawn() {
	local ns=$1
	shift
	if [ -n "$ns" ]; then exec ip netns exec "$ns" "$@"; else exec "$@"; fi
}

# wait_port NS PORT: until a TCP server listens on PORT in NS ("" = here), within 10 s.
wait_port() {
	local t=0
	until inns "$1" ss -Hltn "sport = :$2" 2>/dev/null | grep -q .; do
		t=$((t + 1))
		[ $t -ge 100 ] && { echo "bench: nothing listens on port $2${1:+ in $1}" >&2; return 1; }
		sleep 0.1
	done
}

# sidecars PORT...: HAProxy in each container, in front of the nodes listening there:
# frontend on PORT+1000, backend the node on PORT.
sidecar_start() {
	local c ip port cfg
	for c in a b; do
		ip=$([ $c = a ] && echo 172.18.0.2 || echo 172.18.0.3)
		cfg=$work/haproxy-$c.cfg
		printf 'global\n  maxconn 256\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 120s\n  timeout server 120s\n' >"$cfg"
		for port in "$@"; do
			printf 'listen p%s\n  bind %s:%s\n  server s %s:%s\n' $port "$ip" $((port + 1000)) "$ip" $port >>"$cfg"
		done
		ip netns exec "$B-c$c" haproxy -q -f "$cfg" -db >"$work/haproxy-$c.log" 2>&1 &
		pids+=($!)
		eval "hap_$c=$!"
	done
	for c in a b; do
		for port in "$@"; do wait_port "$B-c$c" $((port + 1000)); done
	done
}
sidecar_stop() {
	kill "$hap_a" "$hap_b" 2>/dev/null
	wait "$hap_a" "$hap_b" 2>/dev/null
}
cpu_ms_of() { awk -v hz="$(getconf CLK_TCK)" '{ print int(($14 + $15) * 1000 / hz) }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# run_nodes YAML LAST PATH: starts host LAST..1 of YAML (odd hosts in PATH's sender
# namespace, even ones in its receiver's), each once the one after it listens; waits for
# the ingress and the egress to finish, then stops the rest. Leaves each node's counters
# in $work/s<i> and the nodes' CPU time (ms) in $work/cpu.
# nap: 100 ms without starting a process. The bench waits for its chains this way:
# a `sleep` every 100 ms while they ran (its fork and exec on this 2-core machine) held
# up a node for up to 3 ms at a time and put the hop's p99 at 0.4-3 ms instead of
# 0.07 ms. A read that times out on a pipe nobody writes to is a shell builtin. The pipe
# is a FIFO in the work folder: the Soft-RoCE guest has no /dev/fd for a process
# substitution.
mkfifo "$work/nap"
exec {nap_fd}<>"$work/nap"
nap() {
	read -rt 0.1 -u "$nap_fd" || true
}

run_nodes() {
	local yaml=$1 last=$2 S=${3}_S R=${3}_R i ns w t cpu=0 npids=()
	for ((i = last; i >= 1; i--)); do
		ns=${!S}
		[ $((i % 2)) = 0 ] && ns=${!R}
		spawn "$ns" "$RDMESH" node --config "$yaml" --name "host$i" --stats "$work/s$i" \
			2>"$work/log$i" &
		npids[$i]=$!
		pids+=($!)
		# Start upstream only once this node listens: a proxy in front of it would
		# otherwise take the connection, fail to reach the node, and hold packets
		# until its own retry.
		w=0
		while [ $i -gt 1 ] && ! grep -q 'listening on' "$work/log$i" 2>/dev/null && [ $w -lt 100 ]; do
			sleep 0.05
			w=$((w + 1))
		done
	done
	t=0
	while kill -0 "${npids[1]}" 2>/dev/null || kill -0 "${npids[$last]}" 2>/dev/null; do
		nap
		t=$((t + 1))
		[ $t -ge 1200 ] && { echo "bench: $3 chain stuck" >&2; break; }
	done
	for ((i = 1; i <= last; i++)); do
		kill -TERM "${npids[$i]}" 2>/dev/null
		wait "${npids[$i]}" 2>/dev/null
		cpu=$((cpu + $(stat "$work/s$i" cpu_ms) + 0))
	done
	if [ $t -ge 1200 ]; then
		# What each node last said and counted, for whoever reads the run's output.
		for ((i = 1; i <= last; i++)); do
			echo "bench: host$i: $(tail -2 "$work/log$i" | tr '\n' ' ')" >&2
			grep -E '^(rx_frames|tx_frames|stalls|drops|drop_[a-z_]+|ingress_[a-z_]+|egress_packets|egress_lost|notices|back_[a-z_]+|down_congested|down_queue_full) [1-9]' \
				"$work/s$i" 2>/dev/null | tr '\n' ' ' >&2
			echo >&2
		done
	fi
	echo "$cpu" >"$work/cpu"
}

# --- one chain run ------------------------------------------------------------------------
# chain PATH HOPS SIZE COUNT RATE WORKERS: runs host1..host(HOPS+1), alternating sender and
# receiver namespaces; leaves the egress counters in $work/s<last>, node CPU in $work/cpu.
chain() {
	local p=$1 hops=$2 size=$3 count=$4 rate=$5 wk=$6 i last=$(($2 + 1))
	local S=${p}_S R=${p}_R SA=${p}_SA RA=${p}_RA transport=tcp
	[ "$p" = rdma ] && transport=rdma
	[ "$p" = shm ] && transport=auto # auto takes shm for a replica on this host
	"$TOOLS/fixedpcap" "$size" "$count" 64 "$work/in.pcap" || return 1
	{
		echo "chain: {name: bench, spi: 1}"
		# Every hop proves both ends (auth, the default, RDMA hops too); PROTECT=none or
		# encrypt measure the native path without proof or encrypted, for the protect table.
		if [ "${PROTECT:-auth}" = none ]; then
			echo "transport: {backoff_min_ms: 10, backoff_max_ms: 100, protect: none}"
		else
			echo "transport: {backoff_min_ms: 10, backoff_max_ms: 100, certs: $work/certs, protect: ${PROTECT:-auth}}"
		fi
		echo "nodes:"
		for ((i = 1; i <= last; i++)); do
			local addr=${!SA}
			[ $((i % 2)) = 0 ] && addr=${!RA}
			echo "  - name: host$i"
			echo "    listen: $addr:$((7100 + i))"
			echo "    workers: $wk"
			[ -n "${POLL:-}" ] && echo "    poll: $POLL"
			if [ $i = 1 ]; then
				echo "    stages: [{name: tag, tenant: bench-tenant, user: bench-user-00000001}, stamp]"
				echo "    ingress: {mode: pcap, file: $work/in.pcap, rate: $rate, wait_ms: 10000}"
			else
				echo "    stages: [stamp]"
			fi
			if [ $i -lt $last ]; then
				echo "    next: host$((i + 1))"
				echo "    transport: $transport"
				if [ "$p" = sidecar ]; then
					local naddr=${!RA}
					[ $(((i + 1) % 2)) = 1 ] && naddr=${!SA}
					echo "    connect: $naddr:$((8100 + i + 1))"
				fi
			else
				echo "    egress: {count: $count}"
			fi
		done
	} >"$work/chain.yaml"
	[ "$p" = sidecar ] && sidecar_start $(seq 7102 $((7100 + last)))
	run_nodes "$work/chain.yaml" $last "$p"
	if [ "$p" = sidecar ]; then
		echo $(($(cat "$work/cpu") + $(cpu_ms_of "$hap_a") + $(cpu_ms_of "$hap_b"))) >"$work/cpu"
		sidecar_stop
	fi
	got=$(stat "$work/s$last" egress_packets)
	if [ "$got" != "$count" ]; then
		echo "bench: $p $hops-hop $size B: ${got:-none} of $count arrived" >&2
		for ((i = 1; i <= last; i++)); do
			echo "bench:   host$i: $(grep -v 'ingress:\|egress:' "$work/log$i" | tail -3 | tr '\n' ' ')" >&2
		done
	fi
}

# --- references ---------------------------------------------------------------------------
pingpong() { # PATH SIZE [POLL] -> "p50 p99" (us, half round trip)
	local p=$1 S=${1}_S R=${1}_R SA=${1}_SA RA=${1}_RA tr=tcp port=7600 to poll=${3:-busy}
	local spin=1000
	[ "$p" = rdma ] && tr=rdma
	[ "$p" = shm ] && tr=shm
	# adaptive spins 100 us after each frame, then sleeps: longer than this path's round
	# trip (transport.spin_us's default, 20 us, is shorter: the waiting end would sleep
	# through every round trip and pay a wake-up, which is what sleep mode measures).
	[ "$poll" = adaptive ] && spin=100
	to=${!RA}:$port
	[ "$p" = sidecar ] && { sidecar_start $port; to=${!RA}:$((port + 1000)); }
	spawn "${!R}" "$TOOLS/pingpong" server $tr "${!RA}:$port" "$poll" $spin &
	local sp=$!
	sleep 0.4
	inns "${!S}" "$TOOLS/pingpong" client $tr "$to" "${!SA}:1" "$2" "$PP_N" $spin "$poll"
	kill $sp
	wait $sp 2>/dev/null
	[ "$p" = sidecar ] && sidecar_stop
}

sockperf_pp() { # PATH SIZE -> "p50 p99" (us)
	local S=${1}_S R=${1}_R RA=${1}_RA port=7700 sp
	# Both ends poll, as pingpong does: --nonblocked with a zero epoll timeout.
	spawn "${!R}" sockperf sr --tcp --nonblocked --timeout 0 -i "${!RA}" -p $port >/dev/null 2>&1 &
	sp=$!
	wait_port "${!R}" $port
	inns "${!S}" sockperf pp --tcp --nonblocked --timeout 0 -i "${!RA}" -p $port -m "$2" -t $SOCK_T 2>&1 |
		awk '/percentile 50.000/ { a = $NF } /percentile 99.000/ { b = $NF } END { print a, b }'
	kill $sp
	wait $sp 2>/dev/null
}

ib_send_lat_pp() { # SIZE -> "p50 p99"
	read -r d1 d2 _ <<<"$RDM_RXE_DEVS"
	timeout 60 ib_send_lat -z -d "$d2" --source_ip "$rdma_RA" -p 7800 -n "$PP_N" -s "$1" >/dev/null 2>&1 &
	local sp=$!
	wait_cm_listen 7800 || echo "bench: ib_send_lat's server does not listen on 7800" >&2
	timeout 60 ib_send_lat -z -d "$d1" --source_ip "$rdma_SA" -p 7800 -n "$PP_N" -s "$1" "$rdma_RA" |
		awk '/t_typical/ { getline; print $5, $8; exit }'
	wait $sp
}

# --- the run ------------------------------------------------------------------------------
paths="shm native overlay sidecar"
[ $rdma = 1 ] && paths="rdma shm native overlay sidecar"
step "setting up: $paths$([ $quick = 1 ] && echo ' (quick)')"
if [ $rdma = 1 ]; then setup_rdma || exit 1; fi
if [ "$(id -u)" = 0 ]; then
	setup_native || { echo "bench: native set-up failed" >&2; exit 1; }
	setup_overlay || { echo "bench: overlay set-up failed" >&2; exit 1; }
	setup_shm
else
	paths=rdma
fi

csv=$out/bench.csv
echo "path,measure,size_b,workers,p50_us,p99_us,p999_us,max_us,pps,cpu_ms_per_mpkt" >"$csv"
us() { awk -v v="$1" 'BEGIN { printf "%.1f", v / 1000 }'; }
declare -A L fw
for p in $paths; do
	for size in $SIZES; do
		frame=$((size + STATE_HDR))
		for hops in 1 3; do
			# shm's hop is measured as it is meant to run: receivers polling, busy
			# where every node has a core of its own; more busy nodes than cores only
			# take turns on them (milliseconds each), so then adaptive.
			spoll=busy
			[ $((hops + 1)) -gt "$(nproc)" ] && spoll=adaptive
			step "$p: $hops-hop chain, $size B packets, $LAT_N at $LAT_RATE pkt/s$([ "$p" = shm ] && echo ", poll $spoll")"
			if [ "$p" = shm ]; then
				POLL=$spoll chain "$p" $hops "$size" "$LAT_N" "$LAT_RATE" 1
			else
				chain "$p" $hops "$size" "$LAT_N" "$LAT_RATE" 1
			fi
			e=$work/s$((hops + 1))
			row="$(us "$(stat "$e" hops_p50_ns)"),$(us "$(stat "$e" hops_p99_ns)"),$(us "$(stat "$e" hops_p999_ns)"),$(us "$(stat "$e" hops_max_ns)")"
			echo "$p,hop_${hops}hop,$size,1,$row,," >>"$csv"
			L[$p, $size, $hops]=$row
			if [ "$p" = native ] && [ $hops = 1 ]; then
				# protect: auth's one cost: the handshake when a hop connects.
				L[hs, $size]="$(stat "$work/s1" down_handshake_us) $(stat "$work/s1" down_handshakes)"
			fi
		done
		step "$p: transport round trip, $frame B frames"
		read -r a b <<<"$(pingpong "$p" $frame)"
		echo "$p,transport_rtt_half,$size,1,$a,$b,,,," >>"$csv"
		L[$p, $size, pp]="$a $b"
		if [ "$p" = native ]; then
			# The TCP target's own measure: the round trip as sockperf's, both ends
			# on poll: adaptive instead of polling for ever.
			step "$p: transport round trip, $frame B frames, poll adaptive"
			read -r a b <<<"$(pingpong "$p" $frame adaptive)"
			echo "$p,transport_rtt_half_adaptive,$size,1,$a,$b,,,," >>"$csv"
			L[$p, $size, ppa]="$a $b"
		fi
		if [ "$p" = rdma ]; then
			step "rdma: ib_send_lat -s $frame"
			read -r a b <<<"$(ib_send_lat_pp $frame)"
			echo "rdma,ib_send_lat,$size,1,$a,$b,,,," >>"$csv"
			L[$p, $size, ref]="$a $b"
		elif [ "$p" != sidecar ] && [ "$p" != shm ]; then
			step "$p: sockperf ping-pong, $frame B"
			read -r a b <<<"$(sockperf_pp "$p" $frame)"
			echo "$p,sockperf,$size,1,$a,$b,,,," >>"$csv"
			L[$p, $size, ref]="$a $b"
		fi
		if [ "$p" = native ] && [ "$size" = "${SIZES%% *}" ]; then
			# The TCP target is judged on the median of three rounds, each rdmesh
			# then sockperf back to back: on this shared machine one round's ratio
			# moves by half either way (0.5-1.5x seen), more than the gap judged.
			L[tcp-rounds]="${L[$p, $size, ppa]%% *}:${L[$p, $size, ref]%% *}"
			for k in 2 3; do
				step "$p: the TCP target's round $k of 3 (pingpong adaptive, then sockperf)"
				read -r a _ <<<"$(pingpong "$p" $frame adaptive)"
				read -r b _ <<<"$(sockperf_pp "$p" $frame)"
				L[tcp-rounds]="${L[tcp-rounds]} $a:$b"
			done
		fi
		for wk in $WORKERS; do
			step "$p: throughput, $size B, $wk worker(s), $TP_N packets"
			chain "$p" 1 "$size" "$TP_N" 0 "$wk"
			span=$(stat "$work/s2" egress_span_us)
			got=$(stat "$work/s2" egress_packets)
			pps=$(awk -v n="$got" -v s="$span" 'BEGIN { if (s > 0) printf "%.0f", n * 1e6 / s; else print 0 }')
			cpu=$(awk -v c="$(cat "$work/cpu")" -v n="$got" 'BEGIN { if (n > 0) printf "%.0f", c * 1e6 / n; else print 0 }')
			echo "$p,throughput,$size,$wk,,,,,$pps,$cpu" >>"$csv"
			L[$p, $size, tp$wk]="$pps $cpu"
			# rdmesh's own software per hop: both ends' user-space CPU per packet (what
			# the kernel's TCP costs is system time, and RDMA would not have it).
			[ "$wk" = 1 ] && L[$p, $size, user]=$(awk -v a="$(stat "$work/s1" cpu_user_ms)" -v b="$(stat "$work/s2" cpu_user_ms)" -v n="$got" \
				'BEGIN { if (n > 0) printf "%.2f", (a + b) * 1000 / n; else print "n/a" }')
		done
		if [ "$p" = shm ] && [ "$size" = "${SIZES%% *}" ]; then
			# Forwarding per core: a 2-hop chain, the middle node's packets per second
			# of its own CPU time (it receives, stamps and sends every packet); two runs,
			# N and FWD_X * N packets, so that its set-up cancels out.
			for n in "$TP_N" $((FWD_X * TP_N)); do
				step "shm: forwarding, 2-hop chain, $size B, $n packets unpaced"
				chain shm 2 "$size" "$n" 0 1
				fw[$n]="$(stat "$work/s3" egress_packets) $(stat "$work/s2" cpu_ms)"
			done
			L[shm, fwd]=$(awk -v a="${fw[$TP_N]}" -v b="${fw[$((FWD_X * TP_N))]}" 'BEGIN { split(a, x, " "); split(b, y, " ")
				if (y[2] > x[2]) printf "%.0f %d %d", (y[1] - x[1]) * 1000 / (y[2] - x[2]), y[1] - x[1], y[2] - x[2]; else print "0 0 0" }')
			echo "shm,forward_per_core,$size,1,,,,,${L[shm, fwd]%% *}," >>"$csv"
			# The hop with its caches warm: packets 50 us apart instead of 1 ms.
			step "shm: 1-hop chain, $size B, $LAT_N at 20000 pkt/s, poll busy"
			POLL=busy chain shm 1 "$size" "$LAT_N" 20000 1
			L[shm, warm]="$(us "$(stat "$work/s2" hops_p50_ns)") $(us "$(stat "$work/s2" hops_p99_ns)")"
			echo "shm,hop_1hop_20kpps,$size,1,$(us "$(stat "$work/s2" hops_p50_ns)"),$(us "$(stat "$work/s2" hops_p99_ns)"),$(us "$(stat "$work/s2" hops_p999_ns)"),$(us "$(stat "$work/s2" hops_max_ns)"),20000," >>"$csv"
			# The hop under load: 80% of the peak just measured, receivers polling.
			r80=$(awk -v v="${L[shm, $size, tp1]%% *}" 'BEGIN { printf "%.0f", v * 0.8 }')
			if [ "${r80:-0}" -gt 0 ]; then
				step "shm: 1-hop chain at 80% of its peak, $size B, $TP_N at $r80 pkt/s, poll busy"
				POLL=busy chain shm 1 "$size" "$TP_N" "$r80" 1
				e=$work/s2
				L[shm, load]="$r80 $(us "$(stat "$e" hops_p50_ns)") $(us "$(stat "$e" hops_p99_ns)") $(us "$(stat "$e" hops_p999_ns)")"
				echo "shm,hop_1hop_load80,$size,1,$(us "$(stat "$e" hops_p50_ns)"),$(us "$(stat "$e" hops_p99_ns)"),$(us "$(stat "$e" hops_p999_ns)"),$(us "$(stat "$e" hops_max_ns)"),$r80," >>"$csv"
				# What the machine allows that row: two threads spin as its two busy
				# nodes do, and every gap past 3x its p50 is time a packet waits longer.
				j=$(awk -v v="$(stat "$e" hops_p50_ns)" 'BEGIN { printf "%.1f", 3 * v / 1000 }')
				step "this machine's own gaps past $j us (jitter, 2 spinning threads, 2 s)"
				L[shm, jitter]="$j $("$TOOLS/jitter" 2 "$j" 2)"
			fi
		fi
	done
done

# --- protect: none and encrypt against auth, native path, the largest packet size -----------
if [ -n "${native_S:-}" ]; then
	psize=${SIZES##* }
	for pm in none encrypt; do
		step "native: protect $pm, 1-hop chain, $psize B packets, $LAT_N at $LAT_RATE pkt/s"
		PROTECT=$pm chain native 1 "$psize" "$LAT_N" "$LAT_RATE" 1
		e=$work/s2
		L[$pm, lat]="$(us "$(stat "$e" hops_p50_ns)"),$(us "$(stat "$e" hops_p99_ns)")"
		L[$pm, ktls]=$(stat "$work/s1" down_ktls_tx)
		echo "native-protect-$pm,hop_1hop,$psize,1,${L[$pm, lat]},,,," >>"$csv"
		step "native: protect $pm, throughput, $psize B, 1 worker, $TP_N packets"
		PROTECT=$pm chain native 1 "$psize" "$TP_N" 0 1
		span=$(stat "$work/s2" egress_span_us)
		got=$(stat "$work/s2" egress_packets)
		pps=$(awk -v n="$got" -v s="$span" 'BEGIN { if (s > 0) printf "%.0f", n * 1e6 / s; else print 0 }')
		cpu=$(awk -v c="$(cat "$work/cpu")" -v n="$got" 'BEGIN { if (n > 0) printf "%.0f", c * 1e6 / n; else print 0 }')
		echo "native-protect-$pm,throughput,$psize,1,,,,,$pps,$cpu" >>"$csv"
		L[$pm, tp]="$pps $cpu"
	done
fi

# --- the caches between packets: what touching memory costs after a core waited ------------
step "this machine's caches between packets (coldcache)"
L[cold]=$("$TOOLS/coldcache" 256 200 300 0 50 $((1000000 / LAT_RATE)) | awk '{ printf "%s ", $2 }')

# --- polling: how the nodes wait, native path, 1-hop chain, the smallest packet size --------
if [ -n "${native_S:-}" ]; then
	qsize=${SIZES%% *}
	for pm in sleep adaptive busy; do
		step "native: poll $pm, 1-hop chain, $qsize B packets, $LAT_N at $LAT_RATE pkt/s"
		t0=$SECONDS
		POLL=$pm chain native 1 "$qsize" "$LAT_N" "$LAT_RATE" 1
		e=$work/s2
		# CPU: both nodes' time over the run, as a share of one core.
		L[poll-$pm]="$(us "$(stat "$e" hops_p50_ns)") $(us "$(stat "$e" hops_p99_ns)") $(us "$(stat "$e" hops_p999_ns)") $(cat "$work/cpu") $(stat "$work/s2" run_ms)"
		echo "native-poll-$pm,hop_1hop,$qsize,1,$(us "$(stat "$e" hops_p50_ns)"),$(us "$(stat "$e" hops_p99_ns)"),$(us "$(stat "$e" hops_p999_ns)"),,," >>"$csv"
	done
fi

# --- the full chain: the SASE stages on against bare forwarding ----------------------------
# chain_pps: packets per second through the last full-chain run, counted at its egress
# (packets and the notices of those policy dropped) over the egress's span.
chain_pps() {
	local n=$(($(stat "$work/s3" egress_packets) + $(stat "$work/s3" notices)))
	awk -v n="$n" -v s="$(stat "$work/s3" egress_span_us)" 'BEGIN { if (s > 0) printf "%.0f", n * 1e6 / s; else print 0 }'
}

# fullchain MODE COUNT RATE: host1 -> host2 -> host3 on the native path (alternating
# namespaces) replaying realistic generated traffic ($work/real.pcap: HTTP, TLS with SNI,
# DNS). MODE bare: every host only stamps. MODE full: identity on host1, dpi and policy
# on host2, flowlog on host3 (configs/directory.yaml and configs/policy.yaml). Leaves
# host3's counters in $work/s3, host2's in $work/s2, all nodes' CPU in $work/cpu.
fullchain() {
	local mode=$1 count=$2 rate=$3 i st1=[stamp] st2=[stamp] st3=[stamp]
	if [ "$mode" = full ]; then
		st1="[stamp, {name: identity, directory: $ROOT/configs/directory.yaml}]"
		st2="[stamp, dpi, {name: policy, file: $ROOT/configs/policy.yaml}]"
		st3="[stamp, {name: flowlog, file: $work/flows.json, interval_s: 0}]"
	fi
	cat >"$work/full.yaml" <<EOC
chain: {name: bench-full, spi: 2}
transport: {backoff_min_ms: 10, backoff_max_ms: 100, certs: $work/certs}
nodes:
  - name: host1
    stages: $st1
    next: host2
    ingress: {mode: pcap, file: $work/real.pcap, count: $count, rate: $rate, wait_ms: 10000}
  - name: host2
    listen: $native_RA:7302
    stages: $st2
    next: host3
  - name: host3
    listen: $native_SA:7303
    stages: $st3
    egress: {count: $count}
EOC
	run_nodes "$work/full.yaml" 3 native
}

if [ "$(id -u)" = 0 ] && [ -n "${native_S:-}" ]; then
	"$RDMESH" gen --flows 500 --packets "$TP_N" --seed 11 --out "$work/real.pcap" >/dev/null || exit 1
	for mode in bare full; do
		step "full chain ($mode stages): 2 hops, generated HTTP/TLS/DNS, $LAT_N at $LAT_RATE pkt/s"
		fullchain $mode "$LAT_N" "$LAT_RATE"
		e=$work/s3
		row="$(us "$(stat "$e" hops_p50_ns)"),$(us "$(stat "$e" hops_p99_ns)"),$(us "$(stat "$e" hops_p999_ns)"),$(us "$(stat "$e" hops_max_ns)")"
		echo "chain-$mode,hop_2hop,real,1,$row,," >>"$csv"
		L[chain-$mode, lat]=$row
		step "full chain ($mode stages): throughput, $TP_N packets unpaced"
		fullchain $mode "$TP_N" 0
		got=$(stat "$e" egress_packets)
		acc=$(($(stat "$e" egress_packets) + $(stat "$e" notices)))
		pps=$(chain_pps)
		cpu=$(awk -v c="$(cat "$work/cpu")" -v n="$acc" 'BEGIN { if (n > 0) printf "%.0f", c * 1e6 / n; else print 0 }')
		# nDPI's share: time inside nDPI calls over the CPU time of the whole chain.
		nd=$(stat "$work/s2" stage_dpi_ndpi_ns)
		share=$(awk -v ns="${nd:-0}" -v c="$(cat "$work/cpu")" 'BEGIN { if (c > 0) printf "%.1f", ns / 1e4 / c; else print 0 }')
		echo "chain-$mode,throughput,real,1,,,,,$pps,$cpu" >>"$csv"
		L[chain-$mode, tp]="$pps $cpu $share $got $acc"
		# The state on the wire: host2's headers towards host3, per packet.
		L[chain-$mode, hdr]="$(awk -v b="$(stat "$work/s2" ctx_tx_hdr_bytes)" -v n="$(stat "$work/s2" tx_frames)" 'BEGIN { if (n > 0) printf "%.1f", b / n; else print 0 }') $(stat "$work/s2" ctx_tx_hdr_max) $(stat "$work/s2" ctx_tx_hdr_over)"
	done
	# The full/bare target is judged on the median of three rounds, each bare then full
	# back to back: with three nodes sharing 2 cores, one round's ratio moved from 0.59
	# to 0.92 between runs of the same build (2026-12-08).
	L[chain-rounds]="${L[chain-full, tp]%% *}:${L[chain-bare, tp]%% *}"
	for k in 2 3; do
		step "full chain: the throughput target's round $k of 3 (bare, then full, $TP_N packets each)"
		fullchain bare "$TP_N" 0
		b=$(chain_pps)
		fullchain full "$TP_N" 0
		L[chain-rounds]="${L[chain-rounds]} $(chain_pps):$b"
	done
fi

# --- report -------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0) printf "%.2f", a / b; else print "n/a" }'; }
p50() { echo "${1%%,*}"; }
# median_round "A:B A:B ...": of rounds measured as pairs, the one whose ratio A/B is the
# median: "ROUNDS A B SORTED" (SORTED: every round's ratio, ascending, ", " between).
# ROUNDS is 0 when none measured.
median_round() {
	local x
	for x in $1; do
		awk -v a="${x%%:*}" -v b="${x##*:}" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.6f %s %s\n", a / b, a, b }'
	done | sort -n | awk '{ r[NR] = $1; a[NR] = $2; b[NR] = $3 }
		END { m = int((NR + 1) / 2); s = ""; for (i = 1; i <= NR; i++) s = s (i > 1 ? ", " : "") sprintf("%.2f", r[i])
			if (NR) print NR, a[m], b[m], s; else print 0, 0, 0, "-" }'
}
{
	echo "# rdmesh bench ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, kernel $(uname -r)$([ $quick = 1 ] && echo ', quick')$([ $quick = 2 ] && echo ', guest scale'))"
	echo
	echo "Per-hop latency from the frames' timestamps ($LAT_N packets at $LAT_RATE pkt/s; each flow's state, its tenant and user, crosses a hop once, later frames carry $STATE_HDR-52 B of header; shm with poll: busy where every node has a core of its own ($(nproc) cores here), else adaptive), in us:"
	echo
	echo "| path | packet | chain | p50 | p99 | p99.9 | max |"
	echo "|---|---:|---:|---:|---:|---:|---:|"
	for p in $paths; do for size in $SIZES; do for hops in 1 3; do
		IFS=, read -r a b c d <<<"${L[$p, $size, $hops]}"
		echo "| $p | $size B | $hops hop | $a | $b | $c | $d |"
	done; done; done
	echo
	echo "Half round trip with both ends polling (rdmesh transport, tests/tools/pingpong, vs the reference tool; no tool speaks rdmesh's shm rings), in us:"
	echo
	echo "| path | frame | rdmesh p50 | rdmesh p99 | reference | ref p50 | ref p99 | rdmesh / ref p50 |"
	echo "|---|---:|---:|---:|---|---:|---:|---:|"
	for p in $paths; do for size in $SIZES; do
		read -r a b <<<"${L[$p, $size, pp]}"
		ref=sockperf
		[ "$p" = rdma ] && ref=ib_send_lat
		[ "$p" = sidecar ] || [ "$p" = shm ] && ref=-
		read -r c d <<<"${L[$p, $size, ref]:-- -}"
		echo "| $p | $((size + STATE_HDR)) B | $a | $b | $ref | $c | $d | $(ratio "$a" "$c") |"
		if [ -n "${L[$p, $size, ppa]:-}" ]; then
			read -r a b <<<"${L[$p, $size, ppa]}"
			echo "| $p, poll: adaptive (spin 100 us) | $((size + STATE_HDR)) B | $a | $b | $ref | $c | $d | $(ratio "$a" "$c") |"
		fi
	done; done
	echo
	echo "Throughput through one hop ($TP_N packets, unpaced, batching on) and CPU per million packets (all processes of the path):"
	echo
	echo "| path | packet | workers | packets/s | CPU ms per Mpkt |"
	echo "|---|---:|---:|---:|---:|"
	for p in $paths; do for size in $SIZES; do for wk in $WORKERS; do
		read -r a b <<<"${L[$p, $size, tp$wk]}"
		echo "| $p | $size B | $wk | $a | $b |"
	done; done; done
	if [ -n "${L[none, tp]:-}" ]; then
		echo
		echo "transport.protect on the native path, one hop, $psize B packets (auth: every hop proves both ends with a TLS 1.3 handshake when it connects; encrypt: the same, and every byte encrypted, by the kernel where it has TLS (here: $([ "${L[encrypt, ktls]:-0}" = 1 ] && echo 'kernel TLS' || echo 'no tls module, OpenSSL in user space')); none: nothing is proven):"
		echo
		echo "| protect | per-hop p50 us | p99 us | packets/s (1 worker) | CPU ms per Mpkt | handshake |"
		echo "|---|---:|---:|---:|---:|---:|"
		IFS=, read -r a b <<<"${L[none, lat]}"
		read -r c d <<<"${L[none, tp]}"
		echo "| none | $a | $b | $c | $d | - |"
		IFS=, read -r a b _ <<<"${L[native, $psize, 1]}"
		read -r c d <<<"${L[native, $psize, tp1]}"
		read -r hu hn <<<"${L[hs, $psize]:-0 0}"
		echo "| auth | $a | $b | $c | $d | $(awk -v u="$hu" -v n="$hn" 'BEGIN { if (n > 0) printf "%.2f ms (%d)", u / n / 1000, n; else print "-" }') |"
		IFS=, read -r ea eb <<<"${L[encrypt, lat]}"
		read -r ec ed <<<"${L[encrypt, tp]}"
		echo "| encrypt | $ea | $eb | $ec | $ed | (as auth) |"
		echo
		echo "auth/none: packets/s $(ratio "$c" "${L[none, tp]%% *}"), per-hop p50 $(ratio "$a" "${L[none, lat]%%,*}"). encrypt/none: packets/s $(ratio "$ec" "${L[none, tp]%% *}"), per-hop p50 $(ratio "$ea" "${L[none, lat]%%,*}")."
	fi
	if [ -n "${L[chain-full, tp]:-}" ]; then
		echo
		echo "The full chain (host1 identity -> host2 dpi, policy -> host3 flowlog; every host stamps) against bare forwarding (stamp only), native path, generated HTTP/TLS/DNS traffic:"
		echo
		echo "| chain | per-hop p50 us | p99 us | p99.9 us | max us | packets/s | CPU ms per Mpkt | nDPI share of CPU | NSH header B per packet (host2 -> host3) | largest |"
		echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
		for mode in bare full; do
			IFS=, read -r a b c d <<<"${L[chain-$mode, lat]}"
			read -r e f g _ <<<"${L[chain-$mode, tp]}"
			read -r h hm _ <<<"${L[chain-$mode, hdr]}"
			[ $mode = bare ] && g=-
			[ $mode = full ] && g="$g %"
			echo "| $mode | $a | $b | $c | $d | $e | $f | $g | $h | $hm |"
		done
		read -r e f g got acc <<<"${L[chain-full, tp]}"
		echo
		echo "Full/bare: packets/s $(ratio "$e" "${L[chain-bare, tp]%% *}"), per-hop p50 $(ratio "$(p50 "${L[chain-full, lat]}")" "$(p50 "${L[chain-bare, lat]}")"). In the full run policy dropped $((acc - got)) of $acc packets (the demo policy's deny and reject rules); they are counted from their notices."
	fi
	if [ -n "${L[poll-busy]:-}" ]; then
		echo
		echo "Polling (the node's poll:), native path, 1-hop chain, $qsize B packets, $LAT_N at $LAT_RATE pkt/s; CPU is both nodes' time over the run, in cores:"
		echo
		echo "| poll | per-hop p50 us | p99 us | p99.9 us | CPU cores | CPU us per packet |"
		echo "|---|---:|---:|---:|---:|---:|"
		for pm in sleep adaptive busy; do
			read -r a b c cpu run <<<"${L[poll-$pm]}"
			echo "| $pm | $a | $b | $c | $(awk -v c="$cpu" -v r="$run" 'BEGIN { if (r > 0) printf "%.2f", c / r; else print "-" }') | $(awk -v c="$cpu" -v n="$LAT_N" 'BEGIN { printf "%.0f", c * 1000 / n }') |"
		done
	fi
	if [ -n "${L[native, ${SIZES%% *}, user]:-}" ]; then
		echo
		echo "Projection: one RDMA hop on a real NIC = rdmesh's own software per hop (measured here: both ends' user-space CPU per packet in the 1-worker throughput run over native TCP; the kernel's TCP work is system time, which RDMA would not spend) + a published ib_send_lat for an RC SEND on a ConnectX NIC (D. Potter, master's thesis, git.dennispotter.eu/Dennis/masters-thesis, tables/mtu_performance.tex: 0.83 us at 32 B, 1.58 us at 1 KB, 2.26 us at 4 KB; 1500 B interpolated), against the overlay TCP hop measured in this run:"
		echo
		echo "| packet | rdmesh software per hop us | NIC (published) us | projected RDMA hop us | overlay TCP hop p50 us (measured) | overlay / projected |"
		echo "|---:|---:|---:|---:|---:|---:|"
		for size in $SIZES; do
			sw=${L[native, $size, user]:-n/a}
			nic=$(awk -v s="$((size + STATE_HDR))" 'BEGIN { if (s <= 32) print 0.83; else if (s <= 1024) printf "%.2f", 0.83 + (s - 32) * (1.58 - 0.83) / (1024 - 32); else printf "%.2f", 1.58 + (s - 1024) * (2.26 - 1.58) / (4096 - 1024) }')
			proj=$(awk -v a="$sw" -v b="$nic" 'BEGIN { if (a == "n/a") print "n/a"; else printf "%.2f", a + b }')
			ov=$(p50 "${L[overlay, $size, 1]:-}")
			echo "| $size B | $sw | $nic | $proj | $ov | $(ratio "$ov" "$proj") |"
		done
	fi
	echo
	echo "Targets (issue J), measured in this run:"
	echo
	echo "| target | measured | ratio | met |"
	echo "|---|---|---:|---|"
	met() { awk -v v="$1" -v t="$2" 'BEGIN { if (v == "n/a" || v == "") print "-"; else if (v + 0 <= t + 0) print "yes"; else print "no" }'; }
	# met_ratio A B T [min]: A / B at most T (with min: at least T), judged unrounded (a
	# ratio printed 0.10 may be 0.105, which is not within 0.1).
	met_ratio() { awk -v a="$1" -v b="$2" -v t="$3" -v min="${4:-}" 'BEGIN { if (b + 0 <= 0) print "-"; else if (min ? a / b >= t + 0 : a / b <= t + 0) print "yes"; else print "no" }'; }
	# The latency targets are judged like for like with their references: sockperf and
	# ib_send_lat time back-to-back round trips of the transport with both ends polling,
	# and so does tests/tools/pingpong. The node's hop in the paced chain (a packet every
	# 1 ms, caches cold, and on adaptive a wake-up each) is printed beside each.
	if [ -n "${L[native, ${SIZES%% *}, ppa]:-}" ] && [ -n "${L[native, ${SIZES%% *}, ref]:-}" ]; then
		qs=${SIZES%% *}
		a=${L[native, $qs, ppa]%% *}
		s=${L[native, $qs, ref]%% *}
		rounds=""
		read -r n ma ms sorted <<<"$(median_round "${L[tcp-rounds]:-}")"
		if [ "$n" -gt 0 ]; then
			a=$ma s=$ms
			rounds="; the median of $n rounds, each rdmesh then sockperf back to back, their ratios sorted $sorted"
		fi
		r=$(ratio "$a" "$s")
		echo "| TCP hop p50 with poll: adaptive <= 1.2x sockperf p50 (native, $((qs + STATE_HDR)) B frames; both: back-to-back round trips / 2, rdmesh's two ends on poll: adaptive with spin_us 100$rounds) | $a us vs $s us | $r | $(met_ratio "$a" "$s" 1.2) |"
		if [ -n "${L[poll-adaptive]:-}" ]; then
			a=${L[poll-adaptive]%% *}
			echo "| (beside it, not like for like: the node's hop on poll: adaptive in the paced 1-hop chain, $LAT_RATE pkt/s, so a wake-up per packet) | $a us vs $s us | $(ratio "$a" "$s") | - |"
		fi
	fi
	if [ -n "${L[chain-full, tp]:-}" ]; then
		read -r n f b sorted <<<"$(median_round "${L[chain-rounds]:-}")"
		echo "| full chain >= 0.7x bare forwarding, packets/s (the median of $n rounds, each bare then full back to back, their ratios sorted $sorted; the tables above show the first) | $f vs $b | $(ratio "$f" "$b") | $(met_ratio "$f" "$b" 0.7 min) |"
		read -r h hm ho <<<"${L[chain-full, hdr]}"
		echo "| NSH header bytes per packet, mean <= 64, none over 252 (full chain, host2 -> host3) | mean $h, largest $hm, over 252: $ho | $(ratio "$h" 64) | $(awk -v h="$h" -v o="$ho" 'BEGIN { print (h + 0 <= 64 && o == 0) ? "yes" : "no" }') |"
	fi
	qs=${SIZES%% *}
	if [ -n "${L[shm, $qs, 1]:-}" ]; then
		s=${L[shm, $qs, pp]%% *}
		echo "| shm hop p50 with poll: busy <= 2 us ($((qs + STATE_HDR)) B frames, back-to-back round trips / 2, both ends on poll: busy) | $s us | $(ratio "$s" 2) | $(met "$s" 2) |"
		s=$(p50 "${L[shm, $qs, 1]}")
		o=$(p50 "${L[overlay, $qs, 1]:-}")
		echo "| (beside it, not like for like: the node's shm hop in the paced 1-hop chain, $qs B, $LAT_RATE pkt/s, caches cold between packets) | $s us | $(ratio "$s" 2) | - |"
		echo "| shm hop p50 <= overlay TCP hop p50 / 10 (both paced 1-hop chains, $qs B) | $s us vs $o us | $(ratio "$s" "$o") | $(met_ratio "$s" "$o" 0.1) |"
		if [ -n "${L[shm, warm]:-}" ]; then
			w=${L[shm, warm]%% *}
			echo "| (beside it, not the target: the shm hop p50 at 20000 pkt/s, caches warm between packets) | $w us | $(ratio "$w" 2) | - |"
		fi
		read -r ppc fpk mcpu <<<"${L[shm, fwd]:-0 0 0}"
		echo "| bare forwarding >= 1 Mpps per core over shm ($qs B, 1 worker; the middle node of a 2-hop chain, packets per second of its CPU time, a run of $((FWD_X * TP_N)) packets less one of $TP_N) | $ppc packets per core-second ($fpk packets in $mcpu ms) | $(ratio "$ppc" 1000000) | $(awk -v v="$ppc" -v c="$mcpu" 'BEGIN { print (c < 100) ? "- (under 100 ms of CPU: too short to judge)" : (v >= 1000000) ? "yes" : "no" }') |"
	fi
	if [ -n "${L[shm, load]:-}" ]; then
		read -r r80 a b c <<<"${L[shm, load]}"
		r=$(ratio "$c" "$a")
		echo "| shm hop p99.9 <= 3x p50 at 80% of peak load ($r80 packets/s, $qs B, poll busy) | p99.9 $c us vs p50 $a us (p99 $b us) | $r | $(met_ratio "$c" "$a" 3) |"
		if [ -n "${L[shm, jitter]:-}" ]; then
			read -r j jg js jm <<<"${L[shm, jitter]}"
			echo "| (beside it, the machine's own floor: two threads that only spin, as the row's two busy nodes, 2 s; tests/tools/jitter) | $jg gaps per second past $j us (3x p50), $js % of the time beyond it, the longest $jm us: a p99.9 within 3x p50 needs that share under 0.1 % | $(ratio "$js" 0.1) | - |"
		fi
	fi
	if [ $rdma = 1 ]; then
		bs=${SIZES##* }
		r=$(ratio "${L[rdma, $bs, pp]%% *}" "${L[rdma, $bs, ref]%% *}")
		echo "| RDMA transport round trip / 2 <= 1.25x ib_send_lat ($bs B packets, Soft-RoCE) | ${L[rdma, $bs, pp]%% *} us vs ${L[rdma, $bs, ref]%% *} us | $r | $(met_ratio "${L[rdma, $bs, pp]%% *}" "${L[rdma, $bs, ref]%% *}" 1.25) |"
	fi
	echo "| instructions per packet: bare <= 600, stamp+dpi+policy <= 2000 | see the instruction table below (make bench-insns) | - | - |"
	if [ -n "${L[cold]:-}" ]; then
		read -r c0 c50 cgap <<<"${L[cold]}"
		echo
		echo "Between packets (tests/tools/coldcache: 200 cache lines spread over 256 KiB, touched after a core spun idle, as a polling node does between packets; median of 300): $c0 ns per line back to back, $c50 ns after 50 us (20000 pkt/s), $cgap ns after $((1000000 / LAT_RATE)) us (the latency rows' $LAT_RATE pkt/s). A hop that needs a few hundred lines of code and tables per packet pays that many times over at $LAT_RATE pkt/s on this machine, and not at 20000."
	fi
	echo
	echo "Ratios (p50 per hop, 1-hop chain):"
	echo
	for size in $SIZES; do
		if [ $rdma = 1 ]; then
			r=$(p50 "${L[rdma, $size, 1]}")
			echo "- $size B: rdma/overlay $(ratio "$r" "$(p50 "${L[overlay, $size, 1]:-}")"), rdma/native-tcp $(ratio "$r" "$(p50 "${L[native, $size, 1]:-}")"), rdma transport/ib_send_lat $(ratio "${L[rdma, $size, pp]%% *}" "${L[rdma, $size, ref]%% *}")"
		fi
		for p in native overlay; do
			[ -n "${L[$p, $size, pp]:-}" ] || continue
			echo "- $size B: rdmesh-tcp/sockperf on $p $(ratio "${L[$p, $size, pp]%% *}" "${L[$p, $size, ref]%% *}") (target <= 1.2)"
		done
		[ -n "${L[sidecar, $size, 1]:-}" ] && echo "- $size B: sidecar/overlay hop $(ratio "$(p50 "${L[sidecar, $size, 1]}")" "$(p50 "${L[overlay, $size, 1]}")"), overlay/native hop $(ratio "$(p50 "${L[overlay, $size, 1]}")" "$(p50 "${L[native, $size, 1]}")")"
	done
} >"$out/bench.md"

# Pictures: latency p50/p99 per path, throughput per path.
awk -F, '$2 == "hop_1hop" { printf "%s-%sB %s %s\n", $1, $3, $5, $6 }' "$csv" >"$work/lat.dat"
awk -F, '$2 == "throughput" { if ($3 == "real") printf "%s %s\n", $1, $9; else printf "%s-%sB-w%s %s\n", $1, $3, $4, $9 }' "$csv" >"$work/tp.dat"
gnuplot <<EOG 2>"$work/gnuplot.err" || echo "bench: gnuplot failed: $(cat "$work/gnuplot.err")" >&2
set terminal pngcairo size 900,500 noenhanced
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set grid ytics
set xtics rotate by -30
set key top left
set output "$out/latency.png"
set title "rdmesh per-hop latency, 1-hop chain (us)"
set logscale y
plot "$work/lat.dat" using 2:xtic(1) title "p50", "" using 3 title "p99"
unset logscale y
set output "$out/throughput.png"
set title "rdmesh throughput through one hop (packets/s)"
plot "$work/tp.dat" using 2:xtic(1) title "packets/s"
EOG
step "done"
cat "$out/bench.md"
echo
echo "files: $out/bench.csv $out/bench.md $out/latency.png $out/throughput.png"
