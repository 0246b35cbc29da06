#!/usr/bin/env bash
# Build the OCI image of rdmesh from Debian packages only (no registry is contacted):
#   1. the runtime packages: `ldd` of the binary, then `dpkg -S` of every library it loads;
#   2. `mmdebstrap --variant=essential` of bookworm with those packages, documentation,
#      man pages and locales left out, and the binary uploaded to /usr/bin/rdmesh;
#   3. `podman import` of that root as localhost/rdmesh:TAG, TAG a content hash of the
#      binary and of this script. An image with that tag already there is reused.
# Usage: deploy/image/build.sh [--rdmesh PATH] [--print-tag]
#   --rdmesh PATH  the binary to put in the image (default build/rdmesh)
#   --print-tag    print TAG and exit (nothing is installed or built)
# Environment: IMAGE_MIRROR (default http://deb.debian.org), IMAGE_CACHE (where the
# downloaded .debs are kept between builds, default build/image/debs).
# Installs mmdebstrap, podman and runc with apt-get when they are missing.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SELF=$HERE/$(basename "${BASH_SOURCE[0]}")
SUITE=bookworm
MIRROR=${IMAGE_MIRROR:-http://deb.debian.org}
CACHE=${IMAGE_CACHE:-$ROOT/build/image/debs}
# Loaded with dlopen(), so ldd cannot see it: libibverbs' device drivers (rxe, mlx5...),
# without which no RDMA device is found in the container.
EXTRA_PKGS=(ibverbs-providers)

die() { echo "image: $*" >&2; exit 1; }
trap 'echo "image: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
T0=$(date +%s.%N)
elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
step() { printf '[%6ss] %s\n' "$(elapsed)" "$*"; }

rdmesh=$ROOT/build/rdmesh
print_tag=0
while [ $# -gt 0 ]; do
	case $1 in
	--rdmesh) [ $# -ge 2 ] || die "--rdmesh needs a PATH"; rdmesh=$2; shift ;;
	--print-tag) print_tag=1 ;;
	*) echo "usage: deploy/image/build.sh [--rdmesh PATH] [--print-tag]" >&2; exit 2 ;;
	esac
	shift
done
if [ ! -f "$rdmesh" ] || [ ! -x "$rdmesh" ]; then die "$rdmesh: no such executable (make build/rdmesh)"; fi
rdmesh=$(readlink -f "$rdmesh")

# The tag: what goes into the image is the binary, and what this script does with it.
TAG=$(cat "$rdmesh" "$SELF" | sha256sum | cut -c1-12)
IMAGE=localhost/rdmesh:$TAG
if [ $print_tag = 1 ]; then echo "$TAG"; exit 0; fi

# ensure CMD PKG...: install PKGs when CMD is missing; `apt-get update` (once) only when
# that fails, e.g. a package the local index does not know yet.
ensure() {
	local cmd=$1; shift
	command -v "$cmd" >/dev/null && return 0
	[ "$(id -u)" = 0 ] || die "$cmd is missing: apt-get install $* (as root)"
	step "installing $* (for $cmd)"
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1; then
		apt-get update -qq >/dev/null || die "apt-get update failed"
		apt-get install -y -qq --no-install-recommends "$@" >/dev/null ||
			die "apt-get install $* failed"
	fi
	command -v "$cmd" >/dev/null || die "$cmd still missing after installing $*"
}
# runc with podman: crun (podman's other choice) refuses a hybrid cgroup v1/v2 host.
ensure podman podman runc
ensure runc runc
# As root the root is built with chroot; otherwise in a user namespace, which rootless
# podman needs too (newuidmap).
mode=root
if [ "$(id -u)" != 0 ]; then mode=unshare; ensure newuidmap uidmap; fi

summary() {
	local size
	size=$(podman image inspect --format '{{.Size}}' "$IMAGE") || die "podman image inspect $IMAGE"
	echo "image: $IMAGE"
	echo "size: $size bytes ($(awk -v s="$size" 'BEGIN { printf "%.1f", s / 1048576 }') MiB)"
	echo "time: $(elapsed) s"
}
if podman image exists "$IMAGE"; then
	echo "image $IMAGE cached"
	summary
	exit 0
fi

# --- 1. the packages the binary's libraries come from ------------------------------------
step "runtime packages of $rdmesh"
ldd_out=$(ldd "$rdmesh" 2>&1) || true
if grep -q 'not found' <<<"$ldd_out"; then
	die "$rdmesh: libraries not found on this host: $(grep 'not found' <<<"$ldd_out" | tr -s ' \t\n' ' ')"
fi
# "libx.so.1 => /lib/.../libx.so.1 (0x...)" and "/lib64/ld-linux-x86-64.so.2 (0x...)"
libs=$(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$ldd_out")
[ -n "$libs" ] || grep -q 'not a dynamic executable\|statically linked' <<<"$ldd_out" ||
	die "ldd $rdmesh: $ldd_out"
# ldd names the path the loader found (often /lib/...); dpkg knows the path the package
# ships (/lib/... or /usr/lib/... on merged-/usr), or the symlink's target: ask for all
# of them in one dpkg -S (each call reads the whole database), then pick per library.
declare -A owner_of=()
cands() { printf '%s\n' "$1" "/usr$1" "${1#/usr}" "$(readlink -f "$1")"; }
while IFS= read -r line; do # "pkg:arch: /path" or "pkg1, pkg2: /path"
	owner_of[${line#*: }]=$(cut -d: -f1 <<<"${line%%,*}")
done < <(for lib in $libs; do cands "$lib"; done | sort -u | xargs -r dpkg -S 2>/dev/null | grep -v '^diversion' || true)
pkgs=()
for lib in $libs; do
	owner=""
	while IFS= read -r p; do
		owner=${owner_of[$p]:-} && [ -n "$owner" ] && break
	done < <(cands "$lib")
	[ -n "$owner" ] || die "$lib (needed by $rdmesh) belongs to no Debian package: cannot put it in the image"
	pkgs+=("$owner")
done
mapfile -t pkgs < <(printf '%s\n' "${pkgs[@]}" "${EXTRA_PKGS[@]}" | sort -u)
step "${#pkgs[@]} packages: ${pkgs[*]}"

# --- 2. the root: essential + those packages, trimmed, with the binary -------------------
ensure mmdebstrap mmdebstrap
mkdir -p "$CACHE" "$ROOT/build/image"
work=$(mktemp -d "$ROOT/build/image/work.XXXXXX")
trap 'rm -rf "$work"' EXIT
step "mmdebstrap $SUITE (about a minute; the log on failure: build/image/mmdebstrap.log)"
trims=()
for d in '/usr/share/doc/*' '/usr/share/man/*' '/usr/share/info/*' '/usr/share/locale/*' \
	'/usr/share/lintian/*'; do
	trims+=(--dpkgopt="path-exclude=$d")
done
trims+=(--dpkgopt='path-include=/usr/share/doc/*/copyright') # keep the licences
# merged-usr hook: /bin -> usr/bin etc. as Debian does (without it apt picks usrmerge,
# which pulls in perl: 50 MB more). The .debs are synced in from CACHE and back out, so
# a rebuild (a new binary) downloads nothing that did not change. The last hook runs the
# binary in the new root: every library it loads is there. "$1" is the root.
# shellcheck disable=SC2016
if ! mmdebstrap --variant=essential --mode=$mode --format=tar \
	--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
	--include="$(IFS=,; echo "${pkgs[*]}")" "${trims[@]}" \
	--skip=download/empty --skip=essential/unlink \
	--setup-hook='mkdir -p "$1"/var/cache/apt/archives/' \
	--setup-hook="sync-in '$CACHE' /var/cache/apt/archives/" \
	--customize-hook="sync-out /var/cache/apt/archives '$CACHE'" \
	--customize-hook='rm -f "$1"/var/cache/apt/archives/*.deb' \
	--customize-hook="upload '$rdmesh' /usr/bin/rdmesh" \
	--customize-hook='chmod 0755 "$1"/usr/bin/rdmesh' \
	--customize-hook='chroot "$1" /usr/bin/rdmesh version' \
	"$SUITE" "$work/root.tar" \
	"deb $MIRROR/debian $SUITE main" \
	"deb $MIRROR/debian $SUITE-updates main" \
	"deb $MIRROR/debian-security $SUITE-security main" \
	</dev/null >"$work/mmdebstrap.log" 2>&1; then
	tail -n 20 "$work/mmdebstrap.log" >&2
	cp "$work/mmdebstrap.log" "$ROOT/build/image/mmdebstrap.log"
	die "mmdebstrap failed (log: build/image/mmdebstrap.log)"
fi
rm -f "$ROOT/build/image/mmdebstrap.log" # an earlier failure's
step "root: $(du -m "$work/root.tar" | cut -f1) MB tar, $(grep -c '' <(tar -tf "$work/root.tar")) entries"

# --- 3. the image -----------------------------------------------------------------------
step "podman import as $IMAGE"
podman import --quiet \
	--change 'ENTRYPOINT ["/usr/bin/rdmesh"]' \
	--change 'CMD ["version"]' \
	--change 'WORKDIR /' \
	--change 'LABEL org.opencontainers.image.title=rdmesh' \
	--change "LABEL org.opencontainers.image.version=$TAG" \
	--message "rdmesh $TAG: $SUITE essential + ${#pkgs[@]} runtime packages" \
	"$work/root.tar" "$IMAGE" >/dev/null || die "podman import failed"
summary
