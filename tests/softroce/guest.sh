#!/usr/bin/env bash
# Run a command inside a QEMU (TCG) guest with Soft-RoCE: three rxe devices on
# 10.88.0.1-3, real rdma_cm/verbs, the host's own root file system (read-only,
# over 9p, with a throw-away tmpfs overlay). See tests/softroce/README.md.
#
#   tests/softroce/guest.sh [options] -- COMMAND...
#   tests/softroce/guest.sh --check          # boot + Soft-RoCE self-test
#   tests/softroce/guest.sh --prepare        # only fetch/unpack the kernel, build the initramfs
#
# Exit status: the job's own, 124 on --timeout, 125 when the guest could not be
# prepared, did not boot or failed its set-up, 2 on bad usage, 130/143 on INT/TERM.
set -euo pipefail

SELF=$(readlink -f "${BASH_SOURCE[0]}")
HERE=$(dirname "$SELF")
REPO=$(cd "$HERE/../.." && pwd -P)
CACHE=${RDM_SOFTROCE_CACHE:-$HERE/cache}
# Debian meta package; we take what it depends on. RDM_GUEST_KERNEL overrides it for
# experiments (a meta package such as linux-image-6.12-amd64, or an image package
# linux-image-6.12.X+deb12-amd64 itself); pair it with its own RDM_SOFTROCE_CACHE, as a
# cache keeps one kernel and deletes the others.
KERNEL_META=${RDM_GUEST_KERNEL:-linux-image-amd64}
CACHE_LAYOUT=2                         # bump when what the kernel cache holds changes

# Module trees dropped from the unpacked kernel (hardware drivers a TCG guest never
# needs; about 250 MB). Everything else stays, so modprobe/auto-loading work as usual.
TRIM_DIRS="sound drivers/gpu drivers/media drivers/net/wireless drivers/net/ethernet
drivers/net/usb drivers/net/can drivers/net/ieee802154 drivers/staging drivers/iio
drivers/usb drivers/scsi drivers/hwmon drivers/hid drivers/input drivers/infiniband/hw
drivers/bluetooth drivers/video drivers/mmc drivers/mtd drivers/isdn drivers/platform
drivers/nfc drivers/atm net/wireless net/mac80211 net/bluetooth"
# Modules the initramfs needs to reach the host root over virtio-9p and build the overlay.
INITRD_MODULES="virtio_pci 9pnet_virtio 9p overlay"

timeout_s=600
out=""
mem=${RDM_GUEST_MEM:-2048}
smp=${RDM_GUEST_SMP:-2}
cwd=$PWD
verbose=0
mode=run
envs=()

prog=tests/softroce/guest.sh
log() { printf '[guest.sh] %s\n' "$*" >&2; }
die() { printf '[guest.sh] error: %s\n' "$*" >&2; exit 125; }
bad() { printf '[guest.sh] usage error: %s (see --help)\n' "$*" >&2; exit 2; }
usage() {
    cat <<EOF
usage: $prog [options] -- COMMAND...
       $prog [options] --check
       $prog --prepare

Boots Debian's 6.1 kernel under qemu (TCG) with Soft-RoCE and runs COMMAND with bash
in the guest, in the current directory (same absolute path: the host root is mounted
read-only with a tmpfs overlay, so writes outside --out are lost at power-off).
One COMMAND word is run as a bash script text ('make x && ./y'); several words are
run as one command with exactly those arguments.

options:
  --timeout SECS   kill the guest after SECS seconds (default 600); exit 124
  --out DIR        writable results share, mounted at the same path in the guest and
                   exported as \$RDM_OUT (default tests/softroce/cache/results). Holds
                   output.log, status, console.log (guest serial console), qemu.log.
  --cwd DIR        directory to run COMMAND in (default: the current directory)
  --env NAME=VAL   export NAME=VAL to COMMAND (repeatable)
  --mem MB         guest memory (default 2048, or \$RDM_GUEST_MEM)
  --smp N          guest vCPUs (default 2, or \$RDM_GUEST_SMP)
  -v, --verbose    also stream the guest console (boot + set-up) to stderr
  --check          run tests/softroce/selftest.sh in the guest (rping, ib_send_lat, ...)
  --prepare        only make the cache ready (kernel + initramfs); do not boot
  -h, --help       this text

in the guest: RDM_GUEST=1, RDM_RXE_DEVS="rxe0 rxe1 rxe2",
  RDM_RXE_ADDRS="10.88.0.1 10.88.0.2 10.88.0.3", RDM_RXE_NETDEVS, RDM_OUT, RDM_REPO.
another kernel: RDM_GUEST_KERNEL=PKG with its own RDM_SOFTROCE_CACHE (README, Other kernels).
EOF
}

while [ $# -gt 0 ]; do
    case $1 in
        --timeout) [ $# -ge 2 ] || { usage >&2; exit 2; }; timeout_s=$2; shift 2 ;;
        --timeout=*) timeout_s=${1#*=}; shift ;;
        --out) [ $# -ge 2 ] || { usage >&2; exit 2; }; out=$2; shift 2 ;;
        --out=*) out=${1#*=}; shift ;;
        --cwd) [ $# -ge 2 ] || { usage >&2; exit 2; }; cwd=$2; shift 2 ;;
        --cwd=*) cwd=${1#*=}; shift ;;
        --env) [ $# -ge 2 ] || { usage >&2; exit 2; }; envs+=("$2"); shift 2 ;;
        --env=*) envs+=("${1#*=}"); shift ;;
        --mem) [ $# -ge 2 ] || { usage >&2; exit 2; }; mem=$2; shift 2 ;;
        --mem=*) mem=${1#*=}; shift ;;
        --smp) [ $# -ge 2 ] || { usage >&2; exit 2; }; smp=$2; shift 2 ;;
        --smp=*) smp=${1#*=}; shift ;;
        -v|--verbose) verbose=1; shift ;;
        --check) mode=check; shift ;;
        --prepare) mode=prepare; shift ;;
        -h|--help) usage; exit 0 ;;
        --) shift; break ;;
        -*) printf '%s: unknown option %s\n' "$prog" "$1" >&2; usage >&2; exit 2 ;;
        *) break ;;
    esac
done
job=("$@")

case $timeout_s in ''|*[!0-9]*) bad "--timeout wants whole seconds, got '$timeout_s'" ;; esac
case $mem in ''|*[!0-9]*) bad "--mem wants MB, got '$mem'" ;; esac
case $smp in ''|*[!0-9]*) bad "--smp wants a number, got '$smp'" ;; esac
for e in "${envs[@]+"${envs[@]}"}"; do
    [[ $e =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || bad "--env wants NAME=VALUE, got '$e'"
done
if [ "$mode" = check ]; then
    [ ${#job[@]} -eq 0 ] || bad "--check takes no COMMAND"
    job=(bash "$HERE/selftest.sh")
    cwd=$REPO
elif [ "$mode" = run ] && [ ${#job[@]} -eq 0 ]; then
    usage >&2; exit 2
fi

# ---------------------------------------------------------------- host tools
need() {
    local t
    for t in "$@"; do
        command -v "$t" >/dev/null 2>&1 || die "'$t' not found; install the Debian packages: qemu-system-x86 busybox-static cpio kmod (make deps)"
    done
}
need qemu-system-x86_64 busybox cpio gzip depmod modprobe apt-get apt-cache dpkg-deb flock tail sha256sum setpriv
BUSYBOX=$(command -v busybox)
if ! grep -q 'not a dynamic executable' <<<"$(LC_ALL=C ldd "$BUSYBOX" 2>&1 || true)"; then
    die "$BUSYBOX is dynamically linked; the initramfs needs busybox-static (apt-get install busybox-static)"
fi

mkdir -p "$CACHE/kernel" "$CACHE/initramfs"
CACHE=$(cd "$CACHE" && pwd -P)

# ---------------------------------------------------------------- kernel
# Prints "PKG VERSION" of the kernel image linux-image-amd64 currently points at.
# apt-cache takes about a second, so the answer is kept until apt's lists or
# configuration change (their mtimes are the key).
apt_key() { stat -c '%n %Y' /var/lib/apt/lists /etc/apt /etc/apt/*.d /etc/apt/sources.list 2>/dev/null | tr '\n' ' '; }
resolve_kernel() {
    local pkg ver key saved
    read -r key <<<"$(apt_key)" || true
    [ "$KERNEL_META" = linux-image-amd64 ] || key="$key meta=$KERNEL_META"
    if [ -f "$CACHE/kernel/.resolved" ]; then
        { read -r saved; read -r pkg ver; } <"$CACHE/kernel/.resolved" || true
        if [ "$saved" = "$key" ] && [ -n "${ver:-}" ]; then
            printf '%s %s\n' "$pkg" "$ver"; return 0
        fi
    fi
    pkg=$(apt-cache depends "$KERNEL_META" 2>/dev/null |
        sed -n 's/^ *|\{0,1\}Depends: <\{0,1\}\(linux-image-[0-9][^ >]*\).*/\1/p' | head -n1)
    # RDM_GUEST_KERNEL may name an image package itself (it depends on no other image).
    [ -n "$pkg" ] || [ "$KERNEL_META" = linux-image-amd64 ] || pkg=$KERNEL_META
    [ -n "$pkg" ] || return 1
    ver=$(apt-cache policy "$pkg" 2>/dev/null | awk '$1 == "Candidate:" { print $2; exit }')
    [ -n "$ver" ] && [ "$ver" != "(none)" ] || return 1
    printf '%s\n%s %s\n' "$key" "$pkg" "$ver" >"$CACHE/kernel/.resolved.$$" &&
        mv -f "$CACHE/kernel/.resolved.$$" "$CACHE/kernel/.resolved" || true
    printf '%s %s\n' "$pkg" "$ver"
}

apt_updated=0
apt_update_once() {
    [ $apt_updated = 0 ] || return 1
    apt_updated=1
    rm -f "$CACHE/kernel/.resolved"
    log "running apt-get update"
    apt-get update -qq >&2 || { log "apt-get update failed"; return 1; }
}

kernel_ready() { [ -f "$1/.unpacked" ] && [ "$(cat "$1/.unpacked")" = "$2" ]; }

# The bzImage's payload as a plain ELF vmlinux: qemu boots it through the PVH entry
# point and skips the in-guest decompression (about 3 s under TCG).
extract_vmlinux() { # VMLINUZ OUT
    local magic off cmd
    grep -q '^CONFIG_PVH=y' "$(dirname "$1")/config-${1##*/vmlinuz-}" 2>/dev/null || return 1
    for magic in xz zstd gzip; do
        case $magic in
            xz) off=$(LC_ALL=C grep -abo $'\xfd7zXZ\x00' "$1" | head -n1 | cut -d: -f1); cmd="xz -dc --single-stream" ;;
            zstd) off=$(LC_ALL=C grep -abo $'\x28\xb5\x2f\xfd' "$1" | head -n1 | cut -d: -f1); cmd="zstd -dcq" ;;
            gzip) off=$(LC_ALL=C grep -abo $'\x1f\x8b\x08' "$1" | head -n1 | cut -d: -f1); cmd="gzip -dcq" ;;
        esac
        [ -n "$off" ] && command -v "${cmd%% *}" >/dev/null || continue
        tail -c +$((off + 1)) "$1" | $cmd >"$2" 2>/dev/null || true
        [ "$(head -c 4 "$2" 2>/dev/null | od -An -c | tr -d ' ')" = '177ELF' ] && return 0
    done
    rm -f "$2"
    return 1
}

# Sets KDIR (unpacked tree), KVER (uname -r), KID (cache key), KERNEL (what qemu boots).
prepare_kernel() {
    local pv pkg ver newest marker tmp deb d
    pv=$(resolve_kernel) || { apt_update_once && pv=$(resolve_kernel); } || pv=""
    if [ -z "$pv" ]; then
        # No apt metadata (offline?): fall back to the newest complete cached kernel.
        newest=$(ls -1t "$CACHE"/kernel/*/.unpacked 2>/dev/null | head -n1 || true)
        [ -n "$newest" ] || die "cannot find the package $KERNEL_META depends on (apt-cache depends $KERNEL_META) and no kernel is cached in $CACHE/kernel"
        KDIR=$(dirname "$newest")
        log "warning: apt metadata unavailable; using cached $(basename "$KDIR")"
    else
        read -r pkg ver <<<"$pv"
        KID="${pkg}_${ver//:/%}_L$CACHE_LAYOUT"
        KDIR=$CACHE/kernel/$KID
        marker="$pkg $ver layout$CACHE_LAYOUT"
        if ! kernel_ready "$KDIR" "$marker"; then
            exec 8>"$CACHE/.prepare.lock"
            flock 8
            if ! kernel_ready "$KDIR" "$marker"; then
                local t0=$SECONDS
                tmp=$(mktemp -d "$CACHE/kernel/.unpack.XXXXXX")
                log "downloading $pkg ($ver) into $CACHE"
                if ! (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$pkg=$ver" >&2); then
                    apt_update_once || true
                    pv=$(resolve_kernel) || { rm -rf "$tmp"; die "apt-cache cannot resolve $KERNEL_META after apt-get update"; }
                    read -r pkg ver <<<"$pv"
                    KID="${pkg}_${ver//:/%}_L$CACHE_LAYOUT"; KDIR=$CACHE/kernel/$KID; marker="$pkg $ver layout$CACHE_LAYOUT"
                    (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$pkg=$ver" >&2) ||
                        { rm -rf "$tmp"; die "apt-get download $pkg=$ver failed"; }
                fi
                # Newer Debian kernels (trixie's backports, e.g. through RDM_GUEST_KERNEL or
                # APT_CONFIG) split the image package into linux-binary-* (vmlinuz),
                # linux-modules-* and linux-base-* (config), all under /usr/lib/modules:
                # fetch those too, and move them where 6.1's package has them.
                for d in $(apt-cache depends "$pkg" 2>/dev/null |
                           sed -n 's/^ *Depends: \(linux-\(binary\|modules\|base\)-[0-9][^ >]*\).*/\1/p' | sort -u); do
                    (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$d=$ver" >&2) ||
                        { rm -rf "$tmp"; die "apt-get download $d=$ver failed"; }
                done
                mkdir "$tmp/root"
                for deb in "$tmp"/*.deb; do
                    log "unpacking $(basename "$deb")"
                    dpkg-deb -x "$deb" "$tmp/root" || { rm -rf "$tmp"; die "dpkg-deb -x $deb failed"; }
                    rm -f "$deb"
                done
                if [ ! -d "$tmp/root/lib/modules" ] && [ -d "$tmp/root/usr/lib/modules" ]; then
                    mkdir -p "$tmp/root/lib" "$tmp/root/boot"
                    mv "$tmp/root/usr/lib/modules" "$tmp/root/lib/modules"
                    KVER=$(ls "$tmp/root/lib/modules" | head -n1)
                    for d in vmlinuz config System.map; do
                        [ ! -f "$tmp/root/lib/modules/$KVER/$d" ] ||
                            mv "$tmp/root/lib/modules/$KVER/$d" "$tmp/root/boot/$d-$KVER"
                    done
                fi
                KVER=$(ls "$tmp/root/lib/modules" | head -n1)
                [ -n "$KVER" ] && [ -f "$tmp/root/boot/vmlinuz-$KVER" ] || { rm -rf "$tmp"; die "$pkg has no /boot/vmlinuz or /lib/modules"; }
                for d in $TRIM_DIRS; do rm -rf "$tmp/root/lib/modules/$KVER/kernel/$d"; done
                depmod -b "$tmp/root" "$KVER" || { rm -rf "$tmp"; die "depmod -b failed"; }
                extract_vmlinux "$tmp/root/boot/vmlinuz-$KVER" "$tmp/root/boot/vmlinux-$KVER" ||
                    log "note: no PVH vmlinux could be extracted; booting the compressed vmlinuz"
                printf '%s\n' "$marker" >"$tmp/root/.unpacked"
                rm -rf "$KDIR"
                mv "$tmp/root" "$KDIR"
                rm -rf "$tmp"
                log "kernel $KVER ready in $((SECONDS - t0)) s ($(du -sh "$KDIR" | cut -f1))"
            fi
            flock -u 8; exec 8>&-
        fi
    fi
    KID=$(basename "$KDIR")
    KVER=$(ls "$KDIR/lib/modules" | head -n1)
    KERNEL=$KDIR/boot/vmlinux-$KVER
    [ -f "$KERNEL" ] || KERNEL=$KDIR/boot/vmlinuz-$KVER
    [ -f "$KERNEL" ] || die "no kernel image in $KDIR/boot; remove $KDIR and retry"
    # Hold this tree (shared lock, until exit) so that a concurrent run that resolves
    # another kernel version does not delete it under a running guest; drop the other
    # trees that no run holds.
    exec 6>"$KDIR.inuse"
    flock -s 6
    for d in "$CACHE"/kernel/*/; do
        d=${d%/}
        [ "$d" = "$KDIR" ] || [ ! -d "$d" ] && continue
        { flock -xn 7 && rm -rf "$d"; } 7>"$d.inuse" 2>/dev/null || true
    done
    # Half-finished unpacks (an interrupted run), unless one is in progress right now.
    { flock -xn 8 && rm -rf "$CACHE"/kernel/.unpack.*; } 8>"$CACHE/.prepare.lock" 2>/dev/null || true
}

# ---------------------------------------------------------------- initramfs
write_init() {
    cat <<'EOF'
#!/bin/busybox sh
# initramfs /init written by tests/softroce/guest.sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
fail() {
    echo "RDM-GUEST-FAIL: initramfs: $*"
    echo o >/proc/sysrq-trigger
    while :; do sleep 1; done
}
echo "RDM-GUEST-BOOT: initramfs at $(cut -d' ' -f1 /proc/uptime) s"
while read -r m; do
    insmod "/modules/$m" || fail "insmod $m"
done </modules/order
cache=none
for a in $(cat /proc/cmdline); do
    case $a in rdm.9pcache=*) cache=${a#rdm.9pcache=} ;; esac
done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=$cache hostroot /lower || fail "mounting the host root (9p tag hostroot)"
mount -t tmpfs -o mode=0755 overlay-rw /rw || fail "tmpfs"
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot || fail "overlay mount"
mount -t tmpfs -o mode=0755,nosuid,nodev run /newroot/run || fail "tmpfs on /run"
mkdir -p /newroot/run/rdm
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 rdmout /newroot/run/rdm || fail "mounting the results share (9p tag rdmout)"
[ -r /newroot/run/rdm/guest.env ] || fail "no guest.env on the results share"
mount --move /dev /newroot/dev
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
exec switch_root /newroot /bin/bash -c '. /run/rdm/guest.env && exec /bin/bash "$RDM_GUEST_INIT"'
EOF
}

# Sets INITRD.
prepare_initramfs() {
    local key tmp m path n=0 mods
    key=$( { sha256sum "$SELF" "$BUSYBOX" | cut -d' ' -f1; echo "$KID $INITRD_MODULES"; } | sha256sum | cut -c1-16)
    INITRD=$CACHE/initramfs/$KVER-$key.cpio.gz
    [ -s "$INITRD" ] && return 0
    tmp=$(mktemp -d "$CACHE/initramfs/.build.XXXXXX")
    mkdir -p "$tmp"/{bin,dev,proc,sys,lower,rw,newroot,modules}
    cp "$BUSYBOX" "$tmp/bin/busybox"
    mknod "$tmp/dev/console" c 5 1 2>/dev/null || true
    # Load order: modprobe --show-depends lists dependencies first ("insmod PATH").
    mods=$(for m in $INITRD_MODULES; do
               modprobe -d "$KDIR" -S "$KVER" --show-depends "$m" ||
                   echo "MISSING $m"
           done)
    if grep -q '^MISSING' <<<"$mods"; then
        rm -rf "$tmp"; die "kernel $KVER lacks module(s): $(grep '^MISSING' <<<"$mods" | cut -d' ' -f2 | tr '\n' ' ')"
    fi
    while read -r kind path _; do
        [ "$kind" = insmod ] || continue
        grep -qxF "$(basename "$path")" "$tmp/modules/seen" 2>/dev/null && continue
        basename "$path" >>"$tmp/modules/seen"
        n=$((n + 1))
        m=$(printf '%02d-%s' "$n" "$(basename "$path")")
        case $path in
            *.ko.xz) xz -dc "$path" >"$tmp/modules/${m%.xz}"; m=${m%.xz} ;;
            *.ko.zst) zstd -qdc "$path" >"$tmp/modules/${m%.zst}"; m=${m%.zst} ;;
            *.ko.gz) gzip -dc "$path" >"$tmp/modules/${m%.gz}"; m=${m%.gz} ;;
            *) cp "$path" "$tmp/modules/$m" ;;
        esac
        echo "$m" >>"$tmp/modules/order"
    done <<<"$mods"
    rm -f "$tmp/modules/seen"
    touch "$tmp/modules/order"
    write_init >"$tmp/init"
    chmod 755 "$tmp/init"
    (cd "$tmp" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
        cpio --null -o -H newc --quiet -R 0:0 | gzip -1) >"$INITRD.tmp.$$"
    mv "$INITRD.tmp.$$" "$INITRD"
    rm -rf "$tmp"
    # Older initramfs images (another script version or kernel) are useless now.
    for m in "$CACHE"/initramfs/*.cpio.gz; do
        [ "$m" = "$INITRD" ] || rm -f "$m"
    done
    log "initramfs built: $(basename "$INITRD") ($n modules)"
}

# The self-test's helper (max-inline.c) is built on the host: compiling under TCG is slow.
build_probe() {
    local src=$HERE/max-inline.c bin=$CACHE/bin/max-inline
    [ -x "$bin" ] && [ "$bin" -nt "$src" ] && return 0
    command -v cc >/dev/null || { log "note: no cc; the self-test skips the max_inline_data probe"; return 0; }
    mkdir -p "$CACHE/bin"
    if cc -O2 -o "$bin.tmp.$$" "$src" -libverbs 2>"$CACHE/bin/max-inline.log"; then
        mv -f "$bin.tmp.$$" "$bin"
    else
        rm -f "$bin.tmp.$$"
        log "note: building max-inline failed (libibverbs-dev missing?); see $CACHE/bin/max-inline.log"
    fi
}

prepare_kernel
prepare_initramfs
[ "$mode" != check ] || build_probe
if [ "$mode" = prepare ]; then
    log "cache ready: kernel $KVER in $KDIR ($(du -sh "$KDIR" | cut -f1)), initramfs $INITRD"
    exit 0
fi

# ---------------------------------------------------------------- job files
[ -d "$cwd" ] || bad "--cwd $cwd: no such directory"
cwd=$(cd "$cwd" && pwd -P)
case $cwd in
    /proc|/proc/*|/sys|/sys/*|/dev|/dev/*|/run|/run/*)
        die "the job's directory $cwd is not visible in the guest (guest-owned mount)" ;;
esac
out=${out:-$CACHE/results}
mkdir -p "$out"
out=$(cd "$out" && pwd -P)
case $out in /|/proc*|/sys*|/dev*|/run*) die "--out $out is not usable" ;; esac

# One guest per results folder at a time.
exec 9>"$out/.lock"
if ! flock -n 9; then
    log "another guest.sh run is using $out; waiting (use --out DIR to run in parallel)"
    flock 9
fi
rm -f "$out"/{output.log,status,error,console.log,qemu.log,guest.env,job.sh}
: >"$out/output.log"

{
    echo "#!/bin/bash"
    echo "# written by tests/softroce/guest.sh; run with bash in the guest"
    if [ ${#job[@]} -eq 1 ]; then
        printf '%s\n' "${job[0]}"
    else
        printf '%q ' "${job[@]}"; echo
    fi
} >"$out/job.sh"
{
    printf 'export RDM_GUEST_INIT=%q\n' "$HERE/guest-init.sh"
    printf 'export RDM_OUT=%q\n' "$out"
    printf 'export RDM_CWD=%q\n' "$cwd"
    printf 'export RDM_REPO=%q\n' "$REPO"
    printf 'export RDM_KDIR=%q\n' "$KDIR"
    printf 'export RDM_KVER=%q\n' "$KVER"
    printf 'export RDM_SOFTROCE_CACHE=%q\n' "$CACHE"
    for e in "${envs[@]+"${envs[@]}"}"; do
        printf 'export %s=%q\n' "${e%%=*}" "${e#*=}"
    done
} >"$out/guest.env"

# ---------------------------------------------------------------- run qemu
qpid=""
tpids=()
cleanup() {
    local p
    if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then
        kill -TERM "$qpid" 2>/dev/null || true
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$qpid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$qpid" 2>/dev/null || true
        wait "$qpid" 2>/dev/null || true
    fi
    for p in "${tpids[@]+"${tpids[@]}"}"; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
}
on_signal() {
    trap - INT TERM
    log "interrupted; stopping the guest"
    cleanup
    exit "$1"
}
trap cleanup EXIT
trap 'on_signal 130' INT
trap 'on_signal 143' TERM
trap 'on_signal 129' HUP

append="console=ttyS0 panic=-1 loglevel=4 mitigations=off rdm.9pcache=${RDM_GUEST_9PCACHE:-none}"
# setpriv --pdeathsig: qemu dies with this script even on SIGKILL.
setpriv --pdeathsig KILL qemu-system-x86_64 -nodefaults -no-user-config -accel tcg -smp "$smp" -m "$mem" \
    -display none -monitor none -serial "file:$out/console.log" -no-reboot \
    -kernel "$KERNEL" -initrd "$INITRD" -append "$append" \
    -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
    -virtfs "local,path=$out,mount_tag=rdmout,security_model=none,multidevs=remap" \
    </dev/null >"$out/qemu.log" 2>&1 &
qpid=$!
log "guest started (kernel $KVER, $smp vCPU, $mem MB, timeout ${timeout_s}s); output follows"

# Stream the job's output while it runs; tail exits by itself after qemu does.
tail -n +1 -s 0.2 -f --pid="$qpid" "$out/output.log" &
tpids+=($!)
if [ $verbose = 1 ]; then
    touch "$out/console.log"
    tail -n +1 -s 0.2 -f --pid="$qpid" "$out/console.log" >&2 &
    tpids+=($!)
fi

t_boot=$SECONDS
timed_out=0
while kill -0 "$qpid" 2>/dev/null; do
    if [ $((SECONDS - t_boot)) -ge "$timeout_s" ]; then
        timed_out=1
        break
    fi
    sleep 0.2
done
if [ $timed_out = 1 ]; then
    kill -TERM "$qpid" 2>/dev/null || true
fi
qrc=0
wait "$qpid" || qrc=$?
qpid=""
# Let tail print the rest (it ends by itself once qemu has: its PASS/FAIL lines are what
# tests/run.sh counts), then stop it if it lingers past 30 s.
for p in "${tpids[@]}"; do
    for _ in $(seq 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
done
tpids=()

show_console() {
    if [ -s "$out/qemu.log" ]; then
        log "qemu said:"; sed 's/^/  | /' "$out/qemu.log" >&2
    fi
    if [ -s "$out/console.log" ]; then
        log "last lines of the guest console ($out/console.log):"
        tail -n 25 "$out/console.log" | tr -d '\r' | sed 's/^/  | /' >&2
    fi
}

elapsed=$((SECONDS - t_boot))
if [ $timed_out = 1 ]; then
    log "timed out after ${timeout_s}s; guest killed"
    [ $verbose = 1 ] || show_console
    exit 124
fi
if [ -s "$out/status" ]; then
    rc=$(tr -dc '0-9' <"$out/status")
    rc=${rc:-125}
    log "job exited with status $rc (guest ran ${elapsed}s, ${SECONDS}s in all)"
    exit "$rc"
fi
if grep -q 'RDM-GUEST-FAIL' "$out/console.log" 2>/dev/null; then
    log "guest set-up failed: $(grep -a -m1 'RDM-GUEST-FAIL' "$out/console.log" | tr -d '\r' | sed 's/.*RDM-GUEST-FAIL: //')"
elif grep -q 'RDM-GUEST-BOOT' "$out/console.log" 2>/dev/null; then
    log "guest booted but stopped before the job finished (qemu exit $qrc)"
else
    log "guest did not boot (qemu exit $qrc)"
    [ -s "$out/console.log" ] || log "no console output at all: the kernel did not start (too little --mem? see $out/qemu.log)"
fi
show_console
exit 125
