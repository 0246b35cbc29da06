#!/usr/bin/env bash
# Instructions per packet of one hop, by stage set: what the hop itself costs, counted
# repeatably (valgrind --tool=callgrind: user-space instructions; no hardware counters
# here). A three-node chain on loopback, edge -> MIDDLE -> log, the middle node under
# callgrind, run twice (N1 then N2 packets at RATE pkt/s); the difference of the two
# totals divided by the difference of the frames the middle node received is its cost per
# packet, set-up and teardown cancelled out. Stage sets:
#   bare   stamp                the hop alone (decode, steer, encode, send)
#   full   stamp, dpi, policy   the demo's dpi stage; nDPI's own instructions (functions
#                               of libndpi) reported beside it, and the rest
# Output in DIR: insns.csv, insns.md: each set's total, then per stage (a stage's process
# function with all it calls; the rest is the hop around the stages) with the frames that
# share a batch, then each hop's top functions.
#   tests/bench/insns.sh [--out DIR] [--quick]
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
RDMESH=${RDMESH:-$ROOT/build/rdmesh}
out=$ROOT/build/bench/insns
N1=2000 N2=12000 RATE=3000
while [ $# -gt 0 ]; do
	case $1 in
	--out) out=$2; shift ;;
	--quick) N1=1000 N2=3000 ;;
	*) echo "usage: tests/bench/insns.sh [--out DIR] [--quick]" >&2; exit 2 ;;
	esac
	shift
done
command -v valgrind >/dev/null || { echo "insns: valgrind is not installed (make deps)" >&2; exit 1; }
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/rdm-insns.XXXXXX")
pids=()
trap 'kill -9 "${pids[@]}" 2>/dev/null; rm -rf "$work"' EXIT
PORT=$((7800 + $$ % 100 * 3))

# chain FILE STAGES COUNT: the static chain, on 127.0.0.1, no certificates (protect: none:
# proving hops is set-up, not per packet).
chain() {
	cat >"$1" <<EOF
chain: {name: insns}
transport: {protect: none}
flows: {max: 65536}
nodes:
  - name: edge
    id: 1
    listen: 127.0.0.1:$PORT
    stages: [stamp, {name: identity, directory: $ROOT/configs/directory.yaml}]
    next: mid
    transport: tcp
    ingress: {mode: gen, count: $3, rate: $RATE, flows: 100, seed: 7, wait_ms: 30000}
  - name: mid
    id: 2
    listen: 127.0.0.1:$((PORT + 1))
    stages: $2
    next: log
    transport: tcp
  - name: log
    id: 3
    listen: 127.0.0.1:$((PORT + 2))
    stages: [stamp]
    egress: {count: $3}
EOF
}

# functions FILE: "instructions<TAB>file:function [object]" per function of a callgrind
# output (self cost, every function).
functions() {
	callgrind_annotate --threshold=100 --inclusive=no --tree=none --auto=no "$1" 2>/dev/null |
		awk '/^ *[0-9][0-9,]* \( *[0-9.]+%\)  / && !/PROGRAM TOTALS|=>|events annotated/ {
			v = $1; gsub(",", "", v); sub(/^ *[0-9,]+ \( *[0-9.]+%\)  /, ""); print v "\t" $0 }'
}

# by_function FILE: "name<TAB>inclusive<TAB>calls<TAB>ndpi" per function name of a callgrind
# output, over all its files: its own instructions and those of the calls it makes, how
# often it was called, and of its calls' cost the part spent in calls into nDPI (ndpi_*).
by_function() {
	awk '
	function name(s, id, rest) {
		if (match(s, /^\([0-9]+\)/)) {
			id = substr(s, 2, RLENGTH - 2)
			rest = substr(s, RLENGTH + 1)
			sub(/^ /, "", rest)
			if (rest != "")
				names[id] = rest
			return names[id]
		}
		return s
	}
	/^fn=/ { cur = name(substr($0, 4)); next }
	/^cfn=/ { callee = name(substr($0, 5)); next }
	/^calls=/ { split(substr($0, 7), a, " "); calls[callee] += a[1]; incall = 1; next }
	/^[0-9+*-]/ {
		if (incall) {
			callcost[cur] += $NF
			if (callee ~ /^ndpi_/)
				ndpi[cur] += $NF
			incall = 0
		} else {
			self[cur] += $NF
		}
	}
	END { for (f in self) printf "%s\t%d\t%d\t%d\n", f, self[f] + callcost[f], calls[f], ndpi[f] }' "$1"
}

# run NAME STAGES COUNT: one run; prints "instructions frames ndpi_instructions".
run() {
	local cfg=$work/$1-$3.yaml cg=$work/$1-$3.cg st=$work/$1-$3.stats e m
	chain "$cfg" "$2" "$3"
	"$RDMESH" node --config "$cfg" --name log >"$work/log.out" 2>&1 &
	e=$!
	valgrind --tool=callgrind --callgrind-out-file="$cg" "$RDMESH" node --config "$cfg" --name mid \
		--stats "$st" >"$work/mid.out" 2>&1 &
	m=$!
	pids=($e $m)
	if ! "$RDMESH" node --config "$cfg" --name edge >"$work/edge.out" 2>&1; then
		echo "insns: $1: the edge failed: $(tail -1 "$work/edge.out")" >&2
		kill -9 $e 2>/dev/null
	fi
	wait $e
	# The middle node stops once it has seen its next hop go (its flow contexts towards
	# it reset), in both runs alike: that work then cancels out.
	for _ in $(seq 300); do
		grep -q 'next hop log .* down' "$work/mid.out" && break
		sleep 0.1
	done
	kill -TERM $m 2>/dev/null
	wait $m
	local total frames ndpi
	total=$(callgrind_annotate "$cg" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }')
	frames=$(awk '$1 == "rx_frames" { print $2 }' "$st")
	ndpi=$(functions "$cg" | awk -F'\t' '$2 ~ /libndpi/ { s += $1 } END { printf "%d\n", s }')
	echo "${total:-0} ${frames:-0} ${ndpi:-0}"
}

echo "insns: middle node under callgrind, $N1 then $N2 packets at $RATE pkt/s (each run takes a while)"
printf 'stages,insns_per_packet,ndpi_per_packet,rest_per_packet,frames\n' >"$out/insns.csv"
{
	echo "| stages (middle node) | instructions / packet | of which nDPI | the rest | frames counted | target (the rest) | met |"
	echo "|---|---|---|---|---|---|---|"
} >"$out/insns.md"
for set in "bare:[stamp]" "full:[stamp, dpi, {name: policy, file: $ROOT/configs/policy.yaml}]"; do
	name=${set%%:*}
	stages=${set#*:}
	read -r t1 f1 n1 <<<"$(run "$name" "$stages" $N1)"
	echo "  $name: $N1 packets: $t1 instructions, $f1 frames"
	read -r t2 f2 n2 <<<"$(run "$name" "$stages" $N2)"
	echo "  $name: $N2 packets: $t2 instructions, $f2 frames"
	df=$((f2 - f1))
	if [ "$df" -le 0 ]; then
		echo "insns: $name: no more frames in the longer run ($f1, $f2): see $work" >&2
		continue
	fi
	per=$(((t2 - t1) / df))
	ndpi=$(((n2 - n1) / df))
	printf '%s,%d,%d,%d,%d\n' "$name" "$per" "$ndpi" $((per - ndpi)) "$df" >>"$out/insns.csv"
	target=600
	[ "$name" = full ] && target=2000
	printf '| %s | %d | %d | %d | %d | <= %d | %s |\n' "${stages//|/\\|}" "$per" "$ndpi" $((per - ndpi)) "$df" \
		"$target" "$([ $((per - ndpi)) -le $target ] && echo yes || echo no)" >>"$out/insns.md"
	cp "$work/$name-$N2.cg" "$out/$name.callgrind"
	cp "$work/$name-$N1.cg" "$out/$name-short.callgrind"
done
# Per stage: each stage's process function with all it calls, per packet (the longer run
# less the shorter, as above); the hop around the stages is the rest. Stages run once per
# batch, so their calls count the batches.
stage_row() { # LABEL BARE FULL
	printf '| %s | %s | %s |\n' "$1" "$2" "$3" >>"$out/insns.md"
}
declare -A SC
for name in bare full; do
	[ -f "$out/$name.callgrind" ] || continue
	df=$(awk -F, -v n="$name" '$1 == n { print $5 }' "$out/insns.csv")
	tot=$(awk -F, -v n="$name" '$1 == n { print $2 }' "$out/insns.csv")
	by_function "$out/$name-short.callgrind" >"$work/sa"
	by_function "$out/$name.callgrind" >"$work/sb"
	rest=$tot
	for st in stamp dpi policy; do
		read -r per nd calls <<<"$(awk -F'\t' -v f="^${st}_process([.]|$)" -v df="$df" '
			$1 ~ f { if (NR == FNR) { a += $2; an += $4; ac += $3 } else { b += $2; bn += $4; bc += $3 } }
			END { if (bc > ac) printf "%d %d %d\n", (b - a) / df, (bn - an) / df, bc - ac; else print "- - 0" }' "$work/sa" "$work/sb")"
		SC[$name, $st]=$per
		[ "$st" = dpi ] && [ "$per" != - ] && SC[$name, $st]="$per (nDPI's calls $nd)"
		[ "$per" != - ] && rest=$((rest - per))
		[ "$st" = stamp ] && SC[$name, batch]=$(awk -v d="$df" -v c="$calls" 'BEGIN { if (c > 0) printf "%.1f", d / c; else print "-" }')
	done
	SC[$name, rest]=$rest
	SC[$name, all]=$tot
done
{
	echo
	echo "Per stage, instructions per packet (a stage: its process function and all it calls; for dpi, in brackets, its calls into nDPI with all they call, which is more than the libndpi instructions counted in the table above):"
	echo
	echo "| stage | bare hop | full hop |"
	echo "|---|---:|---:|"
} >>"$out/insns.md"
stage_row '`stamp`' "${SC[bare, stamp]:--}" "${SC[full, stamp]:--}"
stage_row '`dpi`' "${SC[bare, dpi]:--}" "${SC[full, dpi]:--}"
stage_row '`policy`' "${SC[bare, policy]:--}" "${SC[full, policy]:--}"
stage_row 'the hop around the stages: receive, decode, path check, steering, encode, send, the loop' \
	"${SC[bare, rest]:--}" "${SC[full, rest]:--}"
stage_row 'all' "${SC[bare, all]:--}" "${SC[full, all]:--}"
stage_row 'frames per batch (each stage runs once a batch)' "${SC[bare, batch]:--}" "${SC[full, batch]:--}"

# Each hop's top functions per packet (self cost, the longer run less the shorter).
for name in bare full; do
	[ -f "$out/$name.callgrind" ] || continue
	functions "$out/$name-short.callgrind" >"$work/a"
	functions "$out/$name.callgrind" >"$work/b"
	df=$(awk -F, -v n="$name" '$1 == n { print $5 }' "$out/insns.csv")
	{
		echo
		echo "$name hop, the functions that cost most per packet (self):"
		echo
		echo "| instructions / packet | function |"
		echo "|---|---|"
		awk -F'\t' -v df="$df" 'NR == FNR { a[$2] = $1; next } { d = ($1 - a[$2]) / df; if (d >= 5) printf "%d\t%s\n", d, $2 }' "$work/a" "$work/b" |
			sort -rn | head -12 | awk -F'\t' '{ sub(/ \[.*/, "", $2); n = split($2, p, "/"); printf "| %d | `%s` |\n", $1, p[n] }'
	} >>"$out/insns.md"
done
cat "$out/insns.md"
echo "insns: $out/insns.csv, $out/insns.md"
