# A "rack" of hosts made of network namespaces on this machine: one namespace per host,
# each with eth0 on a shared bridge that lives in a switch namespace of its own, so the
# machine's own network is never touched. Source this file, then:
#   rack_up N          hosts $RACK-h1..hN with 10.77.0.1..N/24 (RACK defaults to rdm<pid>)
#   rack_exec I CMD..  run CMD inside host I
#   rack_edge NAME I NET  a namespace $RACK-NAME joined to host I by a veth pair:
#                      NAME gets NET.2/24 (default route via NET.1), host I gets NET.1/24
#   rack_down          kill everything inside and delete the namespaces (idempotent)
# Callers set `trap rack_down EXIT` so a failing test still cleans up.

RACK=${RACK:-rdm$$}
RACK_NET=${RACK_NET:-10.77.0}
RACK_HOSTS=0

rack_up() {
	local n=$1 i
	RACK_HOSTS=$n
	ip netns add "$RACK-sw" || return 1
	ip -n "$RACK-sw" link add br0 type bridge || return 1
	ip -n "$RACK-sw" link set br0 up
	for ((i = 1; i <= n; i++)); do
		ip netns add "$RACK-h$i" || return 1
		ip -n "$RACK-sw" link add "p$i" type veth peer name eth0 netns "$RACK-h$i" || return 1
		ip -n "$RACK-sw" link set "p$i" master br0 up
		ip -n "$RACK-h$i" addr add "$RACK_NET.$i/24" dev eth0
		ip -n "$RACK-h$i" link set eth0 up
		ip -n "$RACK-h$i" link set lo up
	done
	# Wait until every host reaches the others (bridge ports take a moment to forward).
	for ((i = 2; i <= n; i++)); do
		local tries=0
		until ip netns exec "$RACK-h1" ping -c1 -W1 "$RACK_NET.$i" >/dev/null 2>&1; do
			tries=$((tries + 1))
			[ $tries -ge 20 ] && { echo "rack: host $i unreachable" >&2; return 1; }
			sleep 0.1
		done
	done
}

rack_edge() {
	local name=$1 i=$2 net=$3
	ip netns add "$RACK-$name" || return 1
	ip -n "$RACK-h$i" link add "to-$name" type veth peer name eth0 netns "$RACK-$name" || return 1
	ip -n "$RACK-h$i" addr add "$net.1/24" dev "to-$name"
	ip -n "$RACK-h$i" link set "to-$name" up
	ip -n "$RACK-$name" addr add "$net.2/24" dev eth0
	ip -n "$RACK-$name" link set eth0 up
	ip -n "$RACK-$name" link set lo up
	ip -n "$RACK-$name" route add default via "$net.1"
}

rack_exec() {
	local i=$1
	shift
	ip netns exec "$RACK-h$i" "$@"
}

rack_down() {
	local ns
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$RACK-[a-z0-9]+$"); do
		ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
		ip netns del "$ns" 2>/dev/null
	done
	return 0
}

# wait_exit PID SECS: waits for a child process to end; its status if it did in time,
# 1 if it is still running after SECS.
wait_exit() {
	local t=0
	while kill -0 "$1" 2>/dev/null; do
		[ $t -ge $(($2 * 10)) ] && return 1
		sleep 0.1
		t=$((t + 1))
	done
	wait "$1"
}

# wait_log FILE TEXT [SECONDS]: until FILE says TEXT (a grep pattern); 1 after SECONDS
# (default 10) without it.
wait_log() {
	local t=0
	until grep -q -- "$2" "$1" 2>/dev/null; do
		[ $t -ge $((${3:-10} * 10)) ] && return 1
		sleep 0.1
		t=$((t + 1))
	done
}

# until_status SECS AWK: polls `ctl status` (the caller's ctl function) into
# $work/status until the awk program over it exits 0; 1 after SECS.
until_status() {
	local t=0
	while [ $t -lt $(($1 * 5)) ]; do
		ctl status >"$work/status" 2>/dev/null && awk "$2" "$work/status" && return 0
		sleep 0.2
		t=$((t + 1))
	done
	return 1
}

# wait_cm_listen PORT: until an rdma_cm id listens on PORT (ib_send_lat -z's server opens
# no TCP socket), within 10 s; 1 if none did.
wait_cm_listen() {
	local t=0
	until rdma resource show cm_id 2>/dev/null | grep -q "state LISTEN .*src-addr [0-9.]*:$1 "; do
		t=$((t + 1))
		[ $t -ge 100 ] && return 1
		sleep 0.1
	done
}

# stat FILE KEY: a value from a node's --stats file ("key value" lines).
stat() {
	awk -v k="$2" '$1 == k { print $2; found = 1 } END { if (!found) print "" }' "$1"
}
