#!/usr/bin/env bash
# make bench-rdma: runs inside the Soft-RoCE guest and measures one hop, host1 (rxe0) ->
# host2 (rxe1), side by side in one run, for 64 B and 1500 B packets with 128 B of state:
#  (a) round trips with both ends polling, as ib_send_lat does: rdmesh's transport over
#      RDMA, ib_send_lat at the same message size (the device's floor), rdmesh's transport
#      over TCP between the same addresses;
#  (b) the chain itself at a paced rate, hop latency from the frames' own timestamps,
#      over RDMA and over TCP;
#  (c) throughput: the same chain unpaced (ingress batches of 32), packets/s at the egress
#      and CPU per frame of the sender and of the receiver, over RDMA and over TCP, with
#      the RDMA sender's frames per message (small frames are packed several to one);
#  (d) transport.protect, 1500 B: on the RDMA hop none, auth (the binding handshake, then
#      frames as in (b) and (c)) and encrypt (AES-GCM per message); on the TCP hop auth and
#      encrypt (kernel TLS sending, which this guest's kernel has): paced hop latency,
#      packets/s, and the time the proof took. (a) to (c) run with protect: none, the device's own cost.
# Writes hop-rdma.csv and hop-rdma.md to $RDM_OUT and prints the tables with the ratios.
# BENCH_PARTS picks parts ("a b c d", the default); BENCH_TP_PACKETS sizes (c).
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/rack.sh
BUILD=${BUILD:-build}
RDMESH=$PWD/$BUILD/rdmesh
read -r A1 A2 _ <<<"${RDM_RXE_ADDRS:?run me in the Soft-RoCE guest}"
read -r D1 D2 _ <<<"${RDM_RXE_DEVS:?}"
N=${BENCH_PACKETS:-2000}
RATE=${BENCH_RATE:-500}
ROUNDS=${BENCH_ROUNDS:-3}
PARTS=${BENCH_PARTS:-a b c d}
TP_N=${BENCH_TP_PACKETS:-20000}
work=${RDM_OUT:?}/bench
rm -rf "$work"
mkdir -p "$work"
# State at the hop: flow key 44 + flow id 12 + seq 16 + hop stamps 16 + tenant 16 + user
# 24 = 128 bytes of TLVs; with the 8-byte base header a frame is the packet + 136.
STATE_HDR=136
port=7300

has() { [[ " $PARTS " == *" $1 "* ]]; }

# rdmesh_hop TRANSPORT SIZE [COUNT RATE] -> "p50_us p99_us"; counters in $work/s1, s2
rdmesh_hop() {
	local n=${3:-$N} rate=${4:-$RATE}
	port=$((port + 1))
	cat >"$work/chain.yaml" <<EOC
chain: {name: bench, spi: 1}
transport: {backoff_min_ms: 10, backoff_max_ms: 100, protect: ${HOP_PROTECT:-none}, certs: $work/certs}
nodes:
  - name: host1
    listen: $A1:$port
    stages:
      - {name: tag, tenant: bench-tenant, user: bench-user-00000001}
      - stamp
    next: host2
    transport: $1
    ingress: {mode: pcap, file: $work/in-$2-$n.pcap, rate: $rate, wait_ms: 10000}
  - name: host2
    listen: $A2:$port
    stages: [stamp]
    egress: {count: $n}
EOC
	"$RDMESH" node --config "$work/chain.yaml" --name host2 --stats "$work/s2" 2>"$work/l2-$1-$2" &
	local p2=$!
	timeout 120 "$RDMESH" node --config "$work/chain.yaml" --name host1 --stats "$work/s1" \
		2>"$work/l1-$1-$2"
	timeout 30 tail --pid=$p2 -f /dev/null || kill -TERM $p2
	wait $p2 2>/dev/null
	[ "$(stat "$work/s2" egress_packets)" = "$n" ] || echo "bench: $1 $2 B: only $(stat "$work/s2" egress_packets) of $n arrived" >&2
	awk '$1=="hop1_p50_ns"{a=$2} $1=="hop1_p99_ns"{b=$2} END{printf "%.1f %.1f\n", a/1000, b/1000}' "$work/s2"
}

# ib_send_lat_hop BYTES -> "p50_us p99_us" (t_typical and the 99% column)
ib_send_lat_hop() {
	port=$((port + 1))
	timeout 60 ib_send_lat -z -d "$D2" --source_ip "$A2" -p $port -n "$N" -s "$1" >"$work/lat-s-$1" 2>&1 &
	local sp=$!
	wait_cm_listen $port || echo "hop-rdma: ib_send_lat's server does not listen on $port" >&2
	timeout 60 ib_send_lat -z -d "$D1" --source_ip "$A1" -p $port -n "$N" -s "$1" "$A2" >"$work/lat-c-$1" 2>&1
	wait $sp
	awk '/t_typical/ { getline; print $5, $8; exit }' "$work/lat-c-$1"
}

# pingpong TRANSPORT FRAME_BYTES -> "p50_us p99_us" (half a round trip, polling)
pingpong() {
	port=$((port + 1))
	"$PWD/$BUILD/tools/pingpong" server "$1" "$A2:$port" busy 1000 &
	local sp=$!
	sleep 0.5
	"$PWD/$BUILD/tools/pingpong" client "$1" "$A2:$port" "$A1:1" "$2" "$N" 1000
	kill $sp
	wait $sp 2>/dev/null
}

# median "P50 P99" ...: the pair whose p50 is the median (odd counts).
median() {
	printf '%s\n' "$@" | sort -n -k1,1 | awk '{ l[NR] = $0 } END { print l[int((NR + 1) / 2)] }'
}

name_of() {
	case $1 in
	pp_rdma) echo "rdmesh transport, RDMA" ;;
	ib) echo "ib_send_lat -z" ;;
	pp_tcp) echo "rdmesh transport, TCP" ;;
	hop_rdma) echo "rdmesh chain hop, RDMA" ;;
	hop_tcp) echo "rdmesh chain hop, TCP" ;;
	esac
}

# throughput TRANSPORT SIZE -> "pps sender_us_per_frame receiver_us_per_frame frames_per_msg"
throughput() {
	rdmesh_hop "$1" "$2" "$TP_N" 0 >/dev/null
	awk -v n="$TP_N" '
		FILENAME ~ /s1$/ && $1 == "cpu_ms" { c1 = $2 }
		FILENAME ~ /s1$/ && $1 == "down_tx_frames" { fr = $2 }
		FILENAME ~ /s1$/ && $1 == "down_tx_msgs" { msg = $2 }
		FILENAME ~ /s2$/ && $1 == "cpu_ms" { c2 = $2 }
		FILENAME ~ /s2$/ && $1 == "egress_packets" { got = $2 }
		FILENAME ~ /s2$/ && $1 == "egress_span_us" { span = $2 }
		END {
			pps = span > 0 ? got * 1e6 / span : 0
			u1 = got > 0 ? c1 * 1000 / got : 0
			u2 = got > 0 ? c2 * 1000 / got : 0
			per = msg > 0 ? sprintf("%.1f", fr / msg) : "-"
			printf "%.0f %.1f %.1f %s\n", pps, u1, u2, per
		}' "$work/s1" "$work/s2"
}

# median_pps "PPS ..." ...: the line whose packets/s is the median (odd counts).
median_pps() {
	printf '%s\n' "$@" | sort -n -k1,1 | awk '{ l[NR] = $0 } END { print l[int((NR + 1) / 2)] }'
}

"$RDMESH" ctl certs --out "$work/certs" host1 host2 >/dev/null || { echo "bench-rdma: certificates" >&2; exit 1; }
echo "bench-rdma: one hop $A1 ($D1) -> $A2 ($D2); 64 B and 1500 B packets with 128 B of state (parts: $PARTS)"
has a && echo "  (a) round trips, both ends polling like ib_send_lat: $N each, half the round trip, median of $ROUNDS interleaved rounds"
has b && echo "  (b) the chain: host1 (tag, stamp) -> host2 (stamp, egress), $N packets at $RATE pkt/s, stamp to stamp"
has c && echo "  (c) throughput: the same chain, $TP_N packets unpaced, median of $ROUNDS interleaved rounds"
has d && echo "  (d) protect none / auth / encrypt on the RDMA hop, 1500 B: (b) and (c) again, median of $ROUNDS interleaved rounds"
printf 'size_b,frame_b,path,p50_us,p99_us\n' >"$work/hop-rdma.csv"
printf 'size_b,frame_b,transport,pps,sender_us_per_frame,receiver_us_per_frame,frames_per_msg\n' >"$work/hop-rdma-tp.csv"
declare -A R
for size in 64 1500; do
	frame=$((size + STATE_HDR))
	"$PWD/$BUILD/tools/fixedpcap" $size "$N" 16 "$work/in-$size-$N.pcap"
	if has a; then
		echo "  $size B: (a) rdma, ib_send_lat, tcp"
		# The guest's speed drifts from minute to minute: interleave the three paths over
		# ROUNDS rounds and keep each path's median round, so a ratio compares like with like.
		a=() b=() c=()
		for ((r = 0; r < ROUNDS; r++)); do
			a+=("$(pingpong rdma $frame)")
			b+=("$(ib_send_lat_hop $frame)")
			c+=("$(pingpong tcp $frame)")
		done
		R[pp_rdma, $size]=$(median "${a[@]}")
		R[ib, $size]=$(median "${b[@]}")
		R[pp_tcp, $size]=$(median "${c[@]}")
		echo "    rounds (p50 p99): rdma [${a[*]}] ib_send_lat [${b[*]}] tcp [${c[*]}]"
	fi
	if has b; then
		echo "  $size B: (b) rdma, tcp"
		R[hop_rdma, $size]=$(rdmesh_hop rdma $size)
		R[hop_tcp, $size]=$(rdmesh_hop tcp $size)
	fi
	for p in pp_rdma ib pp_tcp hop_rdma hop_tcp; do
		[ -n "${R[$p, $size]:-}" ] || continue
		printf '%s,%s,%s,%s\n' $size $frame "$(name_of $p)" "${R[$p, $size]// /,}" >>"$work/hop-rdma.csv"
	done
	if has c; then
		echo "  $size B: (c) rdma, tcp"
		"$PWD/$BUILD/tools/fixedpcap" $size "$TP_N" 16 "$work/in-$size-$TP_N.pcap"
		a=() c=()
		for ((r = 0; r < ROUNDS; r++)); do
			a+=("$(throughput rdma $size)")
			c+=("$(throughput tcp $size)")
		done
		R[tp_rdma, $size]=$(median_pps "${a[@]}")
		R[tp_tcp, $size]=$(median_pps "${c[@]}")
		echo "    rounds (pps, sender us/frame, receiver us/frame, frames/msg): rdma [${a[*]}] tcp [${c[*]}]"
		for t in rdma tcp; do
			printf '%s,%s,%s,%s\n' $size $frame $t "${R[tp_$t, $size]// /,}" >>"$work/hop-rdma-tp.csv"
		done
	fi
done

# (d)'s cases: transport-protect. The TCP rows use the guest kernel's TLS (kTLS) for
# sending under encrypt, which the build host's kernel lacks.
D_CASES="rdma-none rdma-auth rdma-encrypt tcp-auth tcp-encrypt"
if has d; then
	echo "  1500 B: (d) $D_CASES"
	"$PWD/$BUILD/tools/fixedpcap" 1500 "$N" 16 "$work/in-1500-$N.pcap"
	"$PWD/$BUILD/tools/fixedpcap" 1500 "$TP_N" 16 "$work/in-1500-$TP_N.pcap"
	declare -A PL PT PH
	for ((r = 0; r < ROUNDS; r++)); do
		for k in $D_CASES; do
			PL[$k]+="$(HOP_PROTECT=${k#*-} rdmesh_hop ${k%-*} 1500)|"
			PH[$k]+="$(stat "$work/s1" down_handshakes) $(stat "$work/s1" down_handshake_us) $(stat "$work/s1" down_ktls_tx)|"
			PT[$k]+="$(HOP_PROTECT=${k#*-} throughput ${k%-*} 1500)|"
		done
	done
	for k in $D_CASES; do
		IFS='|' read -r -a l <<<"${PL[$k]%|}"
		IFS='|' read -r -a t <<<"${PT[$k]%|}"
		R[d_lat, $k]=$(median "${l[@]}")
		R[d_tp, $k]=$(median_pps "${t[@]}")
		R[d_hs, $k]=$(awk -v s="${PH[$k]}" 'BEGIN { n = split(s, a, "|"); for (i = 1; i <= n; i++) { split(a[i], b, " "); h += b[1]; u += b[2]; kt += b[3] } printf "%d %.1f %d", h, (h > 0 ? u / h / 1000 : 0), kt }')
		echo "    $k: rounds (p50 p99) [${PL[$k]}] (pps ...) [${PT[$k]}]"
		printf '%s,%s,%s,%s\n' 1500 $((1500 + STATE_HDR)) "$k" "${R[d_lat, $k]// /,}" >>"$work/hop-rdma.csv"
		printf '%s,%s,%s,%s\n' 1500 $((1500 + STATE_HDR)) "$k" "${R[d_tp, $k]// /,}" >>"$work/hop-rdma-tp.csv"
	done
fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
{
	if has a || has b; then
		echo "| packet | frame | path | p50 (us) | p99 (us) |"
		echo "|---:|---:|---|---:|---:|"
		for size in 64 1500; do
			for p in pp_rdma ib pp_tcp hop_rdma hop_tcp; do
				[ -n "${R[$p, $size]:-}" ] || continue
				read -r a b <<<"${R[$p, $size]}"
				echo "| $size B | $((size + STATE_HDR)) B | $(name_of $p) | $a | $b |"
			done
		done
		echo
	fi
	if has a && has b; then
		echo "| packet | (a) rdma / ib_send_lat p50 (target <= 1.25) | (a) rdma / tcp p50 | (a) rdma / tcp p99 | (b) rdma / tcp p50 | (b) rdma / tcp p99 |"
		echo "|---:|---:|---:|---:|---:|---:|"
		for size in 64 1500; do
			read -r r50 r99 <<<"${R[pp_rdma, $size]}"
			read -r i50 i99 <<<"${R[ib, $size]}"
			read -r t50 t99 <<<"${R[pp_tcp, $size]}"
			read -r h50 h99 <<<"${R[hop_rdma, $size]}"
			read -r k50 k99 <<<"${R[hop_tcp, $size]}"
			echo "| $size B | $(ratio "$r50" "$i50") | $(ratio "$r50" "$t50") | $(ratio "$r99" "$t99") | $(ratio "$h50" "$k50") | $(ratio "$h99" "$k99") |"
		done
		echo
	fi
	if has c; then
		echo "(c) throughput through one hop, $TP_N packets unpaced; CPU per frame of each node (us):"
		echo
		echo "| packet | frame | transport | packets/s | sender CPU/frame | receiver CPU/frame | frames per RDMA message |"
		echo "|---:|---:|---|---:|---:|---:|---:|"
		for size in 64 1500; do
			for t in rdma tcp; do
				read -r a b c d <<<"${R[tp_$t, $size]}"
				[ $t = tcp ] && d=-
				echo "| $size B | $((size + STATE_HDR)) B | $t | $a | $b | $c | $d |"
			done
		done
		echo
		echo "| packet | rdma / tcp packets/s | rdma / tcp sender CPU |"
		echo "|---:|---:|---:|"
		for size in 64 1500; do
			read -r ra rb _ <<<"${R[tp_rdma, $size]}"
			read -r ta tb _ <<<"${R[tp_tcp, $size]}"
			echo "| $size B | $(ratio "$ra" "$ta") | $(ratio "$rb" "$tb") |"
		done
	fi
	if has d; then
		echo
		echo "(d) transport.protect on one hop, 1500 B packets (paced: $N at $RATE pkt/s; throughput: $TP_N unpaced); TCP encrypt with kernel TLS sending where kTLS says 1:"
		echo
		echo "| transport | protect | hop p50 (us) | hop p99 (us) | packets/s | sender CPU/frame (us) | proofs | proof time (ms) | kTLS | packets/s vs the transport's first row |"
		echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
		for k in $D_CASES; do
			read -r a b <<<"${R[d_lat, $k]}"
			read -r pps cpu _ <<<"${R[d_tp, $k]}"
			read -r hs hsms kt <<<"${R[d_hs, $k]}"
			[ "$hs" = 0 ] && hsms=-
			case $k in rdma-none | tcp-auth) read -r base _ <<<"${R[d_tp, $k]}" ;; esac
			echo "| ${k%-*} | ${k#*-} | $a | $b | $pps | $cpu | $hs | $hsms | $kt | $(ratio "$pps" "$base") |"
		done
	fi
} | tee "$work/hop-rdma.md"
echo
echo "setup: QEMU TCG guest, 2 vCPU, Debian kernel $(uname -r), Soft-RoCE (rdma_rxe) with each end on its own rxe device (veth pair over a bridge). (a) pingpong (tests/tools/pingpong, spin_us 1000) and ib_send_lat both poll; (b) uses the default spin_us (20) and sleeps between packets, so it includes the guest's wake-up cost; (c) CPU per frame is each node process's user+system time over the frames delivered. Emulation inflates every absolute figure: compare within one run."
