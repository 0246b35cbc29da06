#!/bin/bash
# PID 1 of the Soft-RoCE guest started by tests/softroce/guest.sh (after the
# initramfs has switched to the overlay of the host root). Not for use on the host.
#
# Sets up three Soft-RoCE devices, each on its own veth with one address, all in the
# init network namespace (rxe on 6.1 cannot live in another one):
#
#   rxe0 - veth0 10.88.0.1 --+
#   rxe1 - veth1 10.88.0.2 --+-- (veth peers) -- bridge br0
#   rxe2 - veth2 10.88.0.3 --+
#
# Policy routing sends traffic that has a 10.88.0.x source out of that address's own
# veth (rule "from 10.88.0.x iif lo", tried before the local table), so an RDMA
# connection between two addresses really goes rxeA -> vethA -> br0 -> vethB -> rxeB,
# instead of both ends collapsing onto one rxe device through the local route. A peer
# that does not bind a source address still works: the local table resolves it and
# both ends share the destination's rxe device (rxe's internal loopback).
# Then runs $RDM_OUT/job.sh in $RDM_CWD, writes $RDM_OUT/status and powers off.
set -euo pipefail

if [ "$$" != 1 ] || [ -z "${RDM_OUT:-}" ]; then
    echo "guest-init.sh: runs only as PID 1 of the guest started by tests/softroce/guest.sh" >&2
    exit 2
fi

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 LC_ALL=C.UTF-8 TERM=dumb SHELL=/bin/bash USER=root LOGNAME=root

SHARE=/run/rdm                      # the results share as the initramfs mounted it
N=3
NET=10.88.0

# Few exec()s here: every program start reads its binary and libraries over 9p,
# which costs tens of ms under TCG (hundreds when the host is busy).
log() { local up _; read -r up _ </proc/uptime; echo "RDM-GUEST: [$up] $*"; }
power_off() {
    sync
    echo o >/proc/sysrq-trigger
    while :; do sleep 1; done
}
fail() {
    trap - ERR
    echo "RDM-GUEST-FAIL: $*"
    printf '%s\n' "$*" >"$SHARE/error" 2>/dev/null || true
    power_off
}
trap 'fail "guest set-up failed (line $LINENO): $BASH_COMMAND"' ERR

sysw() { printf '%s\n' "$2" >"/proc/sys/$1"; }

read -r kver </proc/sys/kernel/osrelease
log "guest-init: kernel $kver"

# ---- file systems
mkdir -p /dev/pts /dev/shm "$RDM_OUT" "/lib/modules/$RDM_KVER"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts /dev/pts
mount -t tmpfs -o mode=1777,nosuid,nodev shm /dev/shm
# The results share at the same absolute path as on the host.
mount --bind "$SHARE" "$RDM_OUT"
# The unpacked kernel's modules where kmod looks for them, so plain modprobe and the
# kernel's own module auto-loading (request_module) work in the guest.
mount --bind "$RDM_KDIR/lib/modules/$RDM_KVER" "/lib/modules/$RDM_KVER"
sysw kernel/hostname rdm-guest
ulimit -l unlimited

# ---- modules. crc32_generic: rxe needs the crc32 hash (crc32_pclmul has no CPU for it).
# Newer kernels (a guest booted with RDM_GUEST_KERNEL, 7.x) have crc32 as a library and
# no crc32_generic module: load it only where it exists.
mods="rdma_rxe rdma_ucm ib_uverbs ib_umad veth bridge"
modprobe -q -n crc32_generic && mods="$mods crc32_generic"
modprobe -a $mods || fail "modprobe failed ($mods)"
log "modules loaded"

# ---- network
sysw net/ipv4/conf/all/rp_filter 0
sysw net/ipv4/conf/default/rp_filter 0
sysw net/ipv4/conf/all/accept_local 1
sysw net/ipv4/conf/default/accept_local 1
sysw net/ipv4/conf/all/arp_ignore 1       # answer ARP only for the veth's own address
sysw net/ipv4/conf/all/arp_announce 2
addrs=() devs=() netdevs=()
{
    echo "link set lo up"
    echo "link add br0 type bridge stp_state 0 forward_delay 0"
    echo "link set br0 up"
    for i in $(seq 0 $((N - 1))); do
        a=$NET.$((i + 1))
        echo "link add veth$i type veth peer name veth${i}p"
        echo "link set veth${i}p master br0"
        echo "link set veth${i}p up"
        echo "addr add $a/24 dev veth$i"
        echo "link set veth$i up"
        echo "route add $NET.0/24 dev veth$i src $a table $((100 + i))"
        echo "rule add pref $((50 + i)) from $a to $a lookup local"
        echo "rule add pref $((100 + i)) from $a iif lo lookup $((100 + i))"
        addrs+=("$a") devs+=("rxe$i") netdevs+=("veth$i")
    done
    # The local table after our source rules (it is pref 0 by default).
    echo "rule add pref 1000 lookup local"
    echo "rule del pref 0 lookup local"
} >/run/rdm-net.batch
ip -batch /run/rdm-net.batch || fail "ip -batch /run/rdm-net.batch failed"
# Static neighbours: no ARP round trips, no ARP flux between the veths.
for i in $(seq 0 $((N - 1))); do
    sysw "net/ipv4/conf/veth$i/rp_filter" 0
    sysw "net/ipv4/conf/veth$i/accept_local" 1
    for j in $(seq 0 $((N - 1))); do
        [ "$i" = "$j" ] && continue
        read -r mac <"/sys/class/net/veth$j/address"
        echo "neigh replace $NET.$((j + 1)) lladdr $mac dev veth$i nud permanent"
    done
done >/run/rdm-neigh.batch
ip -batch /run/rdm-neigh.batch || fail "ip -batch /run/rdm-neigh.batch failed"
log "network up"

for i in $(seq 0 $((N - 1))); do
    echo "link add rxe$i type rxe netdev veth$i"
done >/run/rdm-rdma.batch
rdma -b /run/rdm-rdma.batch || fail "rdma -b /run/rdm-rdma.batch failed"
for i in $(seq 0 $((N - 1))); do
    st=""
    for _ in $(seq 100); do
        read -r st <"/sys/class/infiniband/rxe$i/ports/1/state" 2>/dev/null || true
        [[ $st == *ACTIVE* ]] && break
        sleep 0.1
    done
    [[ $st == *ACTIVE* ]] || fail "rxe$i port is not ACTIVE: '$st'"
done
log "rxe ready: ${devs[*]} on ${addrs[*]}"

export RDM_GUEST=1
export RDM_RXE_ADDRS="${addrs[*]}"
export RDM_RXE_DEVS="${devs[*]}"
export RDM_RXE_NETDEVS="${netdevs[*]}"
export RDM_OUT RDM_REPO RDM_CWD

# ---- the job
trap - ERR
set +e
cd "$RDM_CWD" || fail "cannot cd to $RDM_CWD in the guest"
log "job start in $RDM_CWD"
bash "$RDM_OUT/job.sh" </dev/null >>"$RDM_OUT/output.log" 2>&1
rc=$?
log "job end"
printf '%s\n' "$rc" >"$RDM_OUT/status.tmp" && mv -f "$RDM_OUT/status.tmp" "$RDM_OUT/status"
sync
echo "RDM-GUEST-DONE: status=$rc"
power_off
