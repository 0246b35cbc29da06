#!/bin/bash
# Soft-RoCE self-test. On the host it boots the guest (tests/softroce/guest.sh --check,
# which runs this file inside); in the guest (RDM_GUEST=1) it checks:
#   1. ibv_devices lists every rxe device
#   2. ibv_devinfo -v -d rxe0 (port ACTIVE), plus max_inline_data (probed: ibv_devinfo
#      does not show it)
#   3. rping between 10.88.0.1 -> 10.88.0.2 and 10.88.0.2 -> 10.88.0.3, each client
#      bound to its own address (-I); the rxe packet counters must show the traffic
#      leaving the client's rxe device and arriving on the server's
#   4. ib_send_lat -R: server -d rxe1, client -d rxe0 to 10.88.0.2
#   5. ib_send_lat -z --source_ip (rdma_cm with the client bound to 10.88.0.1): really
#      rxe0 -> rxe1 (perftest 4.5's -R client does not bind a source address, so in
#      check 4 rdma_cm puts both ends on rxe1, the server address's device)
# Exit status 0 only when every check passes.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
if [ "${RDM_GUEST:-}" != 1 ]; then
    exec "$HERE/guest.sh" --check "$@"
fi

read -r -a ADDRS <<<"${RDM_RXE_ADDRS:?}"
read -r -a DEVS <<<"${RDM_RXE_DEVS:?}"
ITERS=${SELFTEST_ITERS:-1000}
T=60                                    # seconds allowed per tool run
WORK=$(mktemp -d /tmp/selftest.XXXXXX)  # guest tmpfs overlay; gone at power-off
npass=0 nfail=0 summary=()

now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'; }
pass() { npass=$((npass + 1)); summary+=("PASS  $*"); echo "PASS: $*"; }
fail() { nfail=$((nfail + 1)); summary+=("FAIL  $*"); echo "FAIL: $*"; }
hdr() { echo; echo "==== $*"; }
dev_of() { local i; for i in "${!ADDRS[@]}"; do [ "${ADDRS[$i]}" = "$1" ] && echo "${DEVS[$i]}"; done; }
counter() { cat "/sys/class/infiniband/$1/ports/1/hw_counters/$2"; }
snapshot() { local d; for d in "${DEVS[@]}"; do echo "$d $(counter "$d" sent_pkts) $(counter "$d" rcvd_pkts)"; done; }
# deltas OLD: "dev:+sent/+rcvd ..." for devices whose counters moved
deltas() {
    local d s r os or out=""
    while read -r d os or; do
        s=$(counter "$d" sent_pkts); r=$(counter "$d" rcvd_pkts)
        if [ "$s" != "$os" ] || [ "$r" != "$or" ]; then out+="$d:+$((s - os))tx/+$((r - or))rx "; fi
    done <<<"$1"
    echo "${out% }"
}
sent_delta() { local d os or; while read -r d os or; do [ "$d" = "$2" ] && echo $(( $(counter "$d" sent_pkts) - os )); done <<<"$1"; }
rcvd_delta() { local d os or; while read -r d os or; do [ "$d" = "$2" ] && echo $(( $(counter "$d" rcvd_pkts) - or )); done <<<"$1"; }
# wait until an rdma_cm id listens on PORT
wait_listen() {
    local i
    for i in $(seq 100); do
        rdma resource show cm_id 2>/dev/null | grep -q "state LISTEN .*src-addr [0-9.]*:$1 " && return 0
        sleep 0.1
    done
    return 1
}

t0=$(now)
echo "Soft-RoCE self-test: kernel $(uname -r), $(nproc) vCPU, devices ${DEVS[*]} on ${ADDRS[*]}"
echo "rdma-core $(dpkg-query -W -f='${Version}' rdma-core 2>/dev/null), perftest $(dpkg-query -W -f='${Version}' perftest 2>/dev/null)"

# ---------------------------------------------------------------- 1. ibv_devices
hdr "ibv_devices"
if ibv_devices | tee "$WORK/devices"; then
    missing=""
    for d in "${DEVS[@]}"; do grep -qw "$d" "$WORK/devices" || missing+=" $d"; done
    if [ -z "$missing" ]; then pass "ibv_devices lists ${DEVS[*]}"; else fail "ibv_devices misses$missing"; fi
else
    fail "ibv_devices failed"
fi

# ---------------------------------------------------------------- 2. ibv_devinfo
hdr "ibv_devinfo -v -d ${DEVS[0]} (excerpt)"
if ibv_devinfo -v -d "${DEVS[0]}" >"$WORK/devinfo" 2>&1; then
    grep -E 'hca_id|transport|fw_ver|node_guid|vendor_id|max_mr_size|max_qp:|max_qp_wr|max_sge:|max_cqe|max_inline|state:|active_mtu|link_layer|GID\[' "$WORK/devinfo"
    if grep -q 'PORT_ACTIVE' "$WORK/devinfo"; then pass "ibv_devinfo ${DEVS[0]}: port ACTIVE"; else fail "ibv_devinfo ${DEVS[0]}: port not ACTIVE"; fi
    if grep -qi 'max_inline' "$WORK/devinfo"; then
        echo "ibv_devinfo shows: $(grep -i 'max_inline' "$WORK/devinfo" | xargs)"
    else
        echo "ibv_devinfo -v shows no max_inline_data field (rdma-core $(dpkg-query -W -f='${Version}' rdma-core 2>/dev/null))"
    fi
else
    cat "$WORK/devinfo"
    fail "ibv_devinfo -v -d ${DEVS[0]} failed"
fi
probe=${RDM_SOFTROCE_CACHE:-$HERE/cache}/bin/max-inline
if [ -x "$probe" ]; then
    if out=$(timeout $T "$probe" "${DEVS[0]}" 2>&1); then
        echo "$out"
        summary+=("INFO  $out")
    else
        echo "max-inline probe failed: $out"
    fi
else
    echo "max-inline probe not built (needs cc + libibverbs-dev on the host); skipped"
fi

# ---------------------------------------------------------------- 3. rping
# One try; sets RESULT (a one-line description). Returns 0 when it passed.
rping_try() { # CLIENT_ADDR SERVER_ADDR PORT
    local c=$1 s=$2 port=$3 cdev sdev before spid crc src t
    cdev=$(dev_of "$c"); sdev=$(dev_of "$s")
    before=$(snapshot)
    t=$(now)
    timeout $T rping -s -a "$s" -p "$port" -C 5 >"$WORK/rping-s.$port" 2>&1 &
    spid=$!
    wait_listen "$port" || echo "(server not seen listening; trying anyway)"
    timeout $T rping -c -a "$s" -I "$c" -p "$port" -C 5 -v 2>&1 | tee "$WORK/rping-c.$port"
    crc=${PIPESTATUS[0]}
    wait "$spid"; src=$?
    echo "client exit $crc, server exit $src, $(since "$t") s; rxe counters: $(deltas "$before")"
    if [ "$crc" = 0 ] && [ "$src" = 0 ] && [ "$(grep -c 'ping data: rdma-ping-' "$WORK/rping-c.$port")" = 5 ] &&
        [ "$(sent_delta "$before" "$cdev")" -gt 0 ] && [ "$(rcvd_delta "$before" "$sdev")" -gt 0 ]; then
        RESULT="rping $c -> $s: 5 pings verified, $cdev -> $sdev"
        return 0
    fi
    echo "--- server output"; cat "$WORK/rping-s.$port"
    RESULT="rping $c -> $s (client $crc, server $src, counters: $(deltas "$before"))"
    return 1
}
rping_pair() { # CLIENT_ADDR SERVER_ADDR PORT
    hdr "rping $1 ($(dev_of "$1")) -> $2 ($(dev_of "$2"))"
    if rping_try "$1" "$2" "$3"; then pass "$RESULT"; return; fi
    echo "first try failed: $RESULT; retrying once"
    if rping_try "$1" "$2" $(($3 + 100)); then pass "$RESULT (on the 2nd try)"; else fail "$RESULT"; fi
}
rping_pair "${ADDRS[0]}" "${ADDRS[1]}" 7471
if [ ${#ADDRS[@]} -ge 3 ]; then rping_pair "${ADDRS[1]}" "${ADDRS[2]}" 7472; fi

# ---------------------------------------------------------------- 4./5. ib_send_lat
# Prints the result line "bytes iters t_min t_max t_typical t_avg t_stdev p99 p99.9".
lat_line() { awk '/t_typical/ { getline; print; exit }' "$1" | xargs; }
# One try; sets RESULT. Returns 0 when it passed.
send_lat_try() { # NAME SERVER_ARGS CLIENT_ARGS SERVER_ADDR EXPECT_CLIENT_DEV EXPECT_SERVER_DEV PORT
    local name=$1 sargs=$2 cargs=$3 saddr=$4 cdev=$5 sdev=$6 port=$7 before spid crc src line t
    echo "server: ib_send_lat $sargs -p $port -n $ITERS"
    echo "client: ib_send_lat $cargs -p $port -n $ITERS $saddr"
    before=$(snapshot)
    t=$(now)
    # shellcheck disable=SC2086
    timeout $T ib_send_lat $sargs -p "$port" -n "$ITERS" >"$WORK/lat-s.$port" 2>&1 &
    spid=$!
    wait_listen "$port" || echo "(server not seen listening; trying anyway)"
    # shellcheck disable=SC2086
    timeout $T ib_send_lat $cargs -p "$port" -n "$ITERS" "$saddr" >"$WORK/lat-c.$port" 2>&1
    crc=$?
    wait "$spid"; src=$?
    grep -E 'Device|GID:|local address|remote address|t_typical' "$WORK/lat-c.$port" | sed 's/^/  /'
    line=$(lat_line "$WORK/lat-c.$port")
    echo "  $line"
    echo "client exit $crc, server exit $src, $(since "$t") s; rxe counters: $(deltas "$before")"
    if [ "$crc" = 0 ] && [ "$src" = 0 ] && [ -n "$line" ] &&
        [ "$(sent_delta "$before" "$cdev")" -gt 0 ] && [ "$(rcvd_delta "$before" "$sdev")" -gt 0 ]; then
        read -r _ _ tmin _ ttyp tavg _ p99 _ <<<"$line"
        RESULT="$name: t_typical $ttyp us, t_avg $tavg us, t_min $tmin us, p99 $p99 us (2 B, $ITERS iters; packets $(deltas "$before"))"
        return 0
    fi
    echo "--- client output"; cat "$WORK/lat-c.$port"
    echo "--- server output"; cat "$WORK/lat-s.$port"
    RESULT="$name (client $crc, server $src, counters: $(deltas "$before"))"
    return 1
}
send_lat() { # NAME SERVER_ARGS CLIENT_ARGS SERVER_ADDR EXPECT_CLIENT_DEV EXPECT_SERVER_DEV PORT
    hdr "$1"
    if send_lat_try "$@"; then pass "$RESULT"; return; fi
    echo "first try failed: $RESULT; retrying once"
    if send_lat_try "${@:1:6}" $(($7 + 100)); then pass "$RESULT (on the 2nd try)"; else fail "$RESULT"; fi
}
# 4: as asked for: rdma_cm (-R), server on rxe1, client -d rxe0 (no source bind: ends up on rxe1)
send_lat "ib_send_lat -R, server -d ${DEVS[1]}, client -d ${DEVS[0]} -> ${ADDRS[1]}" \
    "-R -d ${DEVS[1]}" "-R -d ${DEVS[0]}" "${ADDRS[1]}" "${DEVS[1]}" "${DEVS[1]}" 18515
# 5: rdma_cm with the client bound to its own address: rxe0 -> veth0 -> br0 -> veth1 -> rxe1
send_lat "ib_send_lat -z --source_ip ${ADDRS[0]} (${DEVS[0]}) -> ${ADDRS[1]} (${DEVS[1]})" \
    "-z -d ${DEVS[1]} --source_ip ${ADDRS[1]}" "-z -d ${DEVS[0]} --source_ip ${ADDRS[0]}" \
    "${ADDRS[1]}" "${DEVS[0]}" "${DEVS[1]}" 18516

# ---------------------------------------------------------------- summary
hdr "summary ($(since "$t0") s in the guest)"
printf '%s\n' "${summary[@]}"
rm -rf "$WORK"
if [ "$nfail" = 0 ]; then
    echo "SELFTEST PASS ($npass checks)"
    exit 0
fi
echo "SELFTEST FAIL ($nfail of $((npass + nfail)) checks failed)"
exit 1
