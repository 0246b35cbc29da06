#!/usr/bin/env bash
# rdmesh orchestrator benchmark: one orchestrator against 1000 simulated rack nodes
# (tests/tools/orchsim: real TLS control channels with one certificate per node, the
# real messages, no data plane), all on this host. Run by `make bench-orch`, or directly:
#   tests/bench/orch.sh [--out DIR] [--count N]     (default build/bench/orch, 1000 nodes)
# Measures:
#   certificates   `rdmesh ctl certs` for orch, ctl and every node
#   join           orchsim started -> every node applied its first assignment (or was
#                  acked): orchsim's "joined N" line
#   scale push     just before `rdmesh ctl scale dpi 3` -> every node applied the epoch
#                  the scale made: orchsim's "epoch E all N"
#   memory, CPU    the orchestrator's VmRSS and utime+stime (/proc) after the join, per
#                  node, and its CPU share over 5 s of heartbeats (every 250 ms per node)
#   failover       (when etcd is installed and `rdmesh orch` has --store) two
#                  orchestrators on one etcd; kill -9 the leader -> every node is served
#                  by the other: orchsim's "connected-to ADDR N"
# Output: progress lines, then a markdown table, also in DIR/orch.md and DIR/orch.csv,
# with the orchestrators' and orchsim's logs (DIR/*.log). Exits 1 when a step did not
# finish in time (what was measured until then is still written); a target missed is
# reported in the table, not as a failure.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$ROOT/tests/lib/rack.sh" # wait_log
RDMESH=${RDMESH:-$ROOT/build/rdmesh}
TOOLS=${TOOLS:-$(dirname "$RDMESH")/tools}
SIM=$TOOLS/orchsim
out=$ROOT/build/bench/orch
N=1000
while [ $# -gt 0 ]; do
	case $1 in
	--out) out=$2; shift ;;
	--count) N=$2; shift ;;
	*) echo "usage: tests/bench/orch.sh [--out DIR] [--count N]" >&2; exit 2 ;;
	esac
	shift
done
for b in "$RDMESH" "$SIM"; do
	[ -x "$b" ] || { echo "bench-orch: $b missing (make $b)" >&2; exit 1; }
done
[ "$N" -ge 4 ] 2>/dev/null || { echo "bench-orch: --count needs at least 4 nodes" >&2; exit 2; }
mkdir -p "$out" || exit 1
work=$(mktemp -d "${TMPDIR:-/tmp}/rdm-bench-orch.XXXXXX") || exit 1
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
# A channel per node on each side: the orchestrator needs more than the usual 1024 files.
ulimit -n "$(ulimit -Hn)" 2>/dev/null
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -gt $((N + 64)) ] ||
	echo "bench-orch: only $(ulimit -n) open files allowed for $N channels: expect refusals" >&2

step() { printf '[%5ss] %s\n' "$SECONDS" "$*"; }
now_ns() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }
# free_port VAR: sets VAR to a TCP port nothing listens on and no earlier call gave (from
# a random start, so runs side by side differ). Ports 20000-29999 are the replicas'.
taken=" "
free_port() {
	local p=$((30000 + RANDOM % 20000))
	while ss -Hltn "sport = :$p" 2>/dev/null | grep -q . || [[ $taken == *" $p "* ]]; do
		p=$((p + 1))
	done
	taken="$taken$p "
	printf -v "$1" %s "$p"
}
# wait_line FILE PATTERN SECS: until FILE has a line matching PATTERN (an ERE); prints the
# last such line; 1 after SECS without it.
wait_line() {
	wait_log "$1" "$2" "$3" || return 1
	grep -E -- "$2" "$1" | tail -n 1
}
t_ns_of() { sed -n 's/.*t_ns=\([0-9]*\).*/\1/p' <<<"$1"; }
# cpu_ticks PID: utime+stime (fields 14 and 15 of /proc/PID/stat; the name before them
# is in parentheses and may hold spaces, so count from its closing one).
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
rss_kb() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status"; }
HZ=$(getconf CLK_TCK)

# Results: metric|value|target (|-separated, for the table and the CSV).
results=()
result() { results+=("$1|$2|$3"); }
fail_step() {
	echo "bench-orch: $*" >&2
	failed=1
}
failed=0

# --- 1. the rack, the chain and the certificates ------------------------------------------
# Nodes share 127.0.0.1 (nothing listens on their data ports: no data plane); zone a and b
# alternate so the chain's label placements have half the rack each.
awk -v n="$N" 'BEGIN {
	print "ports: 20000-29999"
	print "nodes:"
	for (i = 0; i < n; i++)
		printf "  - {name: sim-%d, control: 127.0.0.1, data: 127.0.0.1, capacity: 4, labels: {zone: %s}}\n",
			i, i % 2 ? "b" : "a"
}' >"$work/rack.yaml"
# Three stages of stamp only: nothing to read from disk; the orchestrator validates it all.
cat >"$work/chain.yaml" <<EOF
chain: {name: orchbench, spi: 7}
stages:
  - name: edge
    run: [stamp]
    placement: {labels: {zone: a}}
    ingress: {mode: gen, count: 1000, flows: 10, rate: 100, seed: 1}
  - name: dpi
    run: [stamp]
    replicas: 2
  - name: log
    run: [stamp]
    placement: {labels: {zone: b}}
    egress: {count: 0}
EOF
names=()
for ((i = 0; i < N; i++)); do names+=("sim-$i"); done
step "certificates for orch, ctl and $N nodes"
t0=$(now_ns)
"$RDMESH" ctl certs --out "$work/certs" orch ctl "${names[@]}" >/dev/null || { echo "bench-orch: certificates" >&2; exit 1; }
certs_s=$(secs "$t0" "$(now_ns)")
step "certificates: $certs_s s"
result "certificates ($((N + 2)))" "$certs_s s" "-"
ctl() { "$RDMESH" ctl --orch "$1" --certs "$work/certs" "${@:2}"; }

# --- 2. one orchestrator (file store): join, scale, memory and CPU -------------------------
free_port PORT
ORCH=127.0.0.1:$PORT
"$RDMESH" orch --rack "$work/rack.yaml" --chain "$work/chain.yaml" --certs "$work/certs" \
	--state "$work/orch.state" --listen "$ORCH" >"$work/orch.log" 2>&1 &
pid_orch=$!
pids+=($pid_orch)
wait_log "$work/orch.log" "listening on" 20 || { fail_step "the orchestrator did not start"; tail -5 "$work/orch.log" >&2; }
if [ $failed = 0 ]; then
	rss0=$(rss_kb $pid_orch) cpu0=$(cpu_ticks $pid_orch)
	step "orchestrator on $ORCH (pid $pid_orch, RSS $rss0 kB); starting orchsim with $N nodes"
	t_start=$(now_ns)
	"$SIM" --orch "$ORCH" --certs "$work/certs" --prefix sim- --count "$N" --quiet \
		>"$work/sim.out" 2>"$work/sim.err" &
	pid_sim=$!
	pids+=($pid_sim)
	if line=$(wait_line "$work/sim.out" "^joined $N " 120); then
		join_s=$(secs "$t_start" "$(t_ns_of "$line")")
		rss1=$(rss_kb $pid_orch) cpu1=$(cpu_ticks $pid_orch)
		step "joined: $N nodes in $join_s s"
		result "join $N nodes" "$join_s s" "<= 30 s"
		result "orchestrator RSS after the join" "$(awk -v k="$rss1" 'BEGIN { printf "%.1f", k / 1024 }') MiB" "-"
		result "  per node (above the idle $((rss0 / 1024)) MiB)" \
			"$(awk -v a="$rss0" -v b="$rss1" -v n="$N" 'BEGIN { printf "%.1f", (b - a) / n }') KiB" "-"
		result "orchestrator CPU for the join, per node" \
			"$(awk -v a="$cpu0" -v b="$cpu1" -v n="$N" -v hz="$HZ" 'BEGIN { printf "%.2f", (b - a) * 1000 / hz / n }') ms" "-"
		# Steady state: every node heartbeats every 250 ms; 5 s of it.
		c0=$(cpu_ticks $pid_orch) w0=$(now_ns)
		sleep 5
		c1=$(cpu_ticks $pid_orch) w1=$(now_ns)
		steady=$(awk -v a="$c0" -v b="$c1" -v hz="$HZ" -v w0="$w0" -v w1="$w1" \
			'BEGIN { printf "%.1f", (b - a) / hz * 100 / ((w1 - w0) / 1e9) }')
		step "steady: the orchestrator uses $steady% of a core for $N nodes' heartbeats"
		result "orchestrator CPU, steady ($N nodes heartbeating)" "$steady % of a core" "-"
	else
		fail_step "orchsim: $N nodes did not join within 120 s"
		tail -3 "$work/sim.err" >&2
	fi
fi
if [ $failed = 0 ]; then
	step "ctl scale dpi 3"
	t0=$(now_ns)
	if ctl "$ORCH" scale dpi 3 >"$work/scale.out" 2>&1 &&
		epoch=$(sed -n 's/^epoch \([0-9][0-9]*\)$/\1/p' "$work/scale.out") && [ -n "$epoch" ] &&
		line=$(wait_line "$work/sim.out" "^epoch $epoch all $N " 30); then
		scale_s=$(secs "$t0" "$(t_ns_of "$line")")
		step "epoch $epoch on all $N nodes in $scale_s s"
		result "scale push (epoch $epoch to $N nodes)" "$scale_s s" "<= 2 s"
	else
		fail_step "the scale did not reach every node within 30 s"
		cat "$work/scale.out" >&2
	fi
fi
for p in ${pid_sim:-} $pid_orch; do kill -TERM "$p" 2>/dev/null; done
for p in ${pid_sim:-} $pid_orch; do wait_exit "$p" 10 2>/dev/null; done
cp "$work/orch.log" "$out/orch-file.log" 2>/dev/null
cp "$work/sim.err" "$out/orchsim-file.log" 2>/dev/null

# --- 3. failover: two orchestrators on etcd, kill -9 the leader ----------------------------
if ! command -v etcd >/dev/null; then
	step "failover: skipped (no etcd)"
	result "failover (kill -9 the leader)" "skipped: no etcd" "<= 5 s"
elif ! "$RDMESH" orch --help 2>&1 | grep -q -- --store; then
	step "failover: skipped (this rdmesh has no --store)"
	result "failover (kill -9 the leader)" "skipped: no --store" "<= 5 s"
elif [ $failed = 0 ]; then
	free_port EC && free_port EP && free_port PA && free_port PB
	etcd --name b --data-dir "$work/etcd" --listen-client-urls "http://127.0.0.1:$EC" \
		--advertise-client-urls "http://127.0.0.1:$EC" --listen-peer-urls "http://127.0.0.1:$EP" \
		--initial-advertise-peer-urls "http://127.0.0.1:$EP" --initial-cluster "b=http://127.0.0.1:$EP" \
		>"$work/etcd.log" 2>&1 &
	pids+=($!)
	t=0
	until curl -sf "http://127.0.0.1:$EC/health" >/dev/null 2>&1; do
		t=$((t + 1))
		[ $t -ge 100 ] && break
		sleep 0.1
	done
	[ $t -lt 100 ] || fail_step "etcd did not come up on 127.0.0.1:$EC"
	for o in A B; do
		port=$([ $o = A ] && echo "$PA" || echo "$PB")
		"$RDMESH" orch --rack "$work/rack.yaml" --chain "$work/chain.yaml" --certs "$work/certs" \
			--store "etcd://127.0.0.1:$EC" --listen "127.0.0.1:$port" >"$work/orch$o.log" 2>&1 &
		eval "pid_$o=$!"
		pids+=($!)
	done
	step "failover: etcd on :$EC, orchestrators A 127.0.0.1:$PA (pid $pid_A), B 127.0.0.1:$PB (pid $pid_B)"
	"$SIM" --orch "127.0.0.1:$PA,127.0.0.1:$PB" --certs "$work/certs" --prefix sim- --count "$N" --quiet \
		>"$work/simf.out" 2>"$work/simf.err" &
	pids+=($!)
	# The leader is the one serving every node (orchsim's served-by); its log says so too.
	if [ $failed = 0 ] && wait_line "$work/simf.out" "^joined $N " 120 >/dev/null &&
		line=$(wait_line "$work/simf.out" "^served-by " 30); then
		lead=$(awk '{ print $2 }' <<<"$line")
		if [ "$lead" = "127.0.0.1:$PA" ]; then
			pid_lead=$pid_A other=127.0.0.1:$PB lead_log=$work/orchA.log
		else
			pid_lead=$pid_B other=127.0.0.1:$PA lead_log=$work/orchB.log
		fi
		grep -q -i leader "$lead_log" || echo "bench-orch: note: $lead serves every node but its log never says 'leader'" >&2
		step "joined: $N nodes on the leader $lead; kill -9 it"
		sleep 1 # a few heartbeats on the leader first
		t_kill=$(now_ns)
		kill -9 "$pid_lead"
		# The new leader: the survivor's ctl status says it leads.
		t=0
		until ctl "$other" status 2>/dev/null | grep -q '^leader: this orchestrator' || [ $t -ge 300 ]; do
			sleep 0.05
			t=$((t + 1))
		done
		if [ $t -lt 300 ]; then
			el_s=$(secs "$t_kill" "$(now_ns)")
			step "failover: $other leads $el_s s after the kill"
			result "failover: a new leader (kill -9 the leader)" "$el_s s" "<= 5 s"
		fi
		if line=$(wait_line "$work/simf.out" "^connected-to $other $N " 60); then
			fo_s=$(secs "$t_kill" "$(t_ns_of "$line")")
			step "failover: every node served by $other $fo_s s after the kill"
			result "failover: every node on the new leader ($N nodes)" "$fo_s s" "<= 5 s"
		else
			fail_step "failover: the nodes did not all reach $other within 60 s"
			result "failover (kill -9 the leader, $N nodes)" "not within 60 s" "<= 5 s"
		fi
	else
		fail_step "failover: $N nodes did not join one leader within 150 s"
		result "failover (kill -9 the leader, $N nodes)" "no leader served every node" "<= 5 s"
	fi
	for f in orchA orchB simf etcd; do
		[ -f "$work/$f.log" ] && cp "$work/$f.log" "$out/failover-$f.log"
	done
	cp "$work/simf.err" "$out/orchsim-failover.log" 2>/dev/null
fi

# --- 4. the table ----------------------------------------------------------------------
# met: yes/no against a "<= X s" target, "-" otherwise.
met() {
	awk -v v="$1" -v t="$2" 'BEGIN {
		if (t !~ /^<= [0-9.]+ s$/ || v !~ /^[0-9.]+ s$/) { print "-"; exit }
		split(v, a, " "); split(t, b, " "); print (a[1] + 0 <= b[2] + 0) ? "yes" : "no" }'
}
{
	echo "metric,value,unit,target_s,met"
	for r in "${results[@]}"; do
		IFS='|' read -r m v t <<<"$r"
		read -r num unit <<<"$v"
		[[ $num =~ ^[0-9.]+$ ]] || { num=""; unit="$v"; }
		echo "\"${m#  }\",$num,\"$unit\",$(sed -n 's/^<= \([0-9.]*\) s$/\1/p' <<<"$t"),$(met "$v" "$t")"
	done
} >"$out/orch.csv"
{
	echo "## orchestrator, $N simulated nodes ($(nproc) cores, $(date -u +%Y-%m-%d))"
	echo
	echo "| metric | value | target | met |"
	echo "|---|---|---|---|"
	for r in "${results[@]}"; do
		IFS='|' read -r m v t <<<"$r"
		echo "| $m | $v | $t | $(met "$v" "$t") |"
	done
} >"$out/orch.md"
echo
cat "$out/orch.md"
echo
echo "files: $out/orch.md $out/orch.csv (logs: $out/*.log)"
exit $failed
