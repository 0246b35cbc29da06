#!/usr/bin/env bash
# Host side of tests/rdma/netns.sh ("a stage in its own network namespace reaches the next
# over RDMA"): boots a Debian kernel whose rdma_rxe has a RoCEv2 socket per network
# namespace (linux-image-amd64 from trixie-backports: 7.3.4 when this was written; the
# default guest's 6.1 and bookworm's 6.12 have one socket, in the init namespace only) with
# tests/softroce/guest.sh and runs tests/rdma/netns.sh in it.
#
#   tests/rdma/netns-guest.sh [guest.sh options]        e.g. --out /tmp/netns-out -v
#
# The kernel and apt's lists for that suite live in a cache of their own (default
# ~/.cache/rdmesh/softroce-netns, outside the checkout so clones share it;
# RDM_NETNS_CACHE overrides; about 120 MB), so the default
# guest's cache and the system's apt configuration are left alone: apt reads a private
# configuration (APT_CONFIG) naming only RDM_NETNS_SUITE (default trixie-backports).
# The first run fetches apt's lists (about 400 kB) and the kernel (about 120 MB);
# later runs refresh the lists once a day. Exit status: netns.sh's, or guest.sh's.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO=$(cd "$HERE/../.." && pwd -P)
CACHE=${RDM_NETNS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rdmesh/softroce-netns}
SUITE=${RDM_NETNS_SUITE:-trixie-backports}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

mkdir -p "$CACHE/apt/lists/partial" "$CACHE/apt/cache/archives/partial" "$CACHE/guest"
CACHE=$(cd "$CACHE" && pwd -P)
cat >"$CACHE/apt/apt.conf" <<EOF
Dir::Etc::SourceList "$CACHE/apt/sources.list";
Dir::Etc::SourceParts "$CACHE/apt/sources.list.d";
Dir::State::Lists "$CACHE/apt/lists";
Dir::Cache "$CACHE/apt/cache";
Acquire::Languages "none";
EOF
mkdir -p "$CACHE/apt/sources.list.d"
echo "deb [signed-by=$KEYRING] http://deb.debian.org/debian $SUITE main" >"$CACHE/apt/sources.list"
export APT_CONFIG=$CACHE/apt/apt.conf

if [ -z "$(find "$CACHE/apt/lists" -maxdepth 1 -name '*_Packages*' -mtime -1 2>/dev/null)" ]; then
	echo "[netns-guest.sh] apt-get update for $SUITE (private lists in $CACHE/apt)" >&2
	apt-get update -qq >&2 ||
		[ -n "$(find "$CACHE/apt/lists" -maxdepth 1 -name '*_Packages*' 2>/dev/null)" ] ||
		echo "[netns-guest.sh] warning: apt-get update failed; guest.sh falls back to a cached kernel if there is one" >&2
fi

RDM_SOFTROCE_CACHE=$CACHE/guest exec "$REPO/tests/softroce/guest.sh" --timeout 600 --cwd "$REPO" "$@" \
	-- bash "$REPO/tests/rdma/netns.sh"
