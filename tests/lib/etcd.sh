# A real etcd cluster (Debian's etcd-server) on rack hosts (tests/lib/rack.sh): one
# member per host, each in its own network namespace. Source after rack.sh, then:
#   etcd_up DIR I...     members e<I> on hosts I... (client $RACK_NET.I:2379, peers
#                        :2380), data and logs under DIR; waits until all answer
#   etcd_start I         (re)starts member I with its data (after etcd_kill)
#   etcd_kill I          kill -9 of member I
#   etcd_endpoints       "IP:2379,IP:2379,..." of every member, for --store etcd://
#   etcd_answering       how many members answer /health with true
#   etcd_raft_leader     I of the member that is etcd's own (raft) leader now
# rack_down kills the members with everything else in the namespaces.
ETCD_HOSTS=""
ETCD_DIR=""

etcd_start() {
	local i=$1 cluster="" j
	for j in $ETCD_HOSTS; do cluster="$cluster${cluster:+,}e$j=http://$RACK_NET.$j:2380"; done
	ip netns exec "$RACK-h$i" etcd --name "e$i" --data-dir "$ETCD_DIR/e$i" \
		--listen-client-urls "http://$RACK_NET.$i:2379" --advertise-client-urls "http://$RACK_NET.$i:2379" \
		--listen-peer-urls "http://$RACK_NET.$i:2380" --initial-advertise-peer-urls "http://$RACK_NET.$i:2380" \
		--initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token "$RACK" \
		--heartbeat-interval 100 --election-timeout 1000 >>"$ETCD_DIR/e$i.log" 2>&1 &
	eval "ETCD_PID_$i=$!"
}

etcd_kill() {
	local pid
	pid=$(eval echo "\${ETCD_PID_$1:-0}")
	kill -9 "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	eval "ETCD_PID_$1=0"
}

etcd_endpoints() {
	local j out=""
	for j in $ETCD_HOSTS; do out="$out${out:+,}$RACK_NET.$j:2379"; done
	echo "$out"
}

etcd_answering() {
	local j n=0
	for j in $ETCD_HOSTS; do
		ip netns exec "$RACK-h$j" curl -s -m 1 "http://$RACK_NET.$j:2379/health" 2>/dev/null |
			grep -q '"health":"true"' && n=$((n + 1))
	done
	echo $n
}

etcd_raft_leader() {
	local j st id
	for j in $ETCD_HOSTS; do
		st=$(ip netns exec "$RACK-h$j" curl -s -m 1 -X POST -d '{}' \
			"http://$RACK_NET.$j:2379/v3/maintenance/status" 2>/dev/null) || continue
		# on the leader, its own id and its leader's are the same number
		id=$(sed -n 's/.*"member_id":"\([0-9]*\)".*/\1/p' <<<"$st")
		[ -n "$id" ] && grep -q "\"leader\":\"$id\"" <<<"$st" && { echo "$j"; return 0; }
	done
	return 1
}

etcd_up() {
	local i t=0 n
	ETCD_DIR=$1
	shift
	ETCD_HOSTS="$*"
	mkdir -p "$ETCD_DIR" || return 1
	command -v etcd >/dev/null || { echo "etcd: not installed (make deps installs etcd-server)" >&2; return 1; }
	for i in $ETCD_HOSTS; do etcd_start "$i"; done
	n=$#
	until [ "$(etcd_answering)" = "$n" ]; do
		t=$((t + 1))
		[ $t -ge 150 ] && { echo "etcd: $(etcd_answering) of $n members healthy after 30 s" >&2; return 1; }
		sleep 0.2
	done
}
