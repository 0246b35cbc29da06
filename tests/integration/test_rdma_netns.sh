#!/usr/bin/env bash
# RDMA between pods: a stage in its own network namespace reaches the next over RDMA.
# Boots the Soft-RoCE guest on Debian's trixie-backports kernel, whose rdma_rxe has a
# RoCEv2 socket per network namespace (the default guest's 6.1 has one, in the init
# namespace only: tests/softroce/README.md, "Other kernels"), and runs tests/rdma/netns.sh
# there (tests/rdma/netns-guest.sh). Its kernel cache lives outside the checkout
# (RDM_NETNS_CACHE, default ~/.cache/rdmesh/softroce-netns): the first run fetches about
# 120 MB, later ones reuse it. Skips, saying why, only where qemu cannot run.
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
if ! command -v qemu-system-x86_64 >/dev/null; then
	echo "SKIP rdma-netns: qemu-system-x86_64 is not installed (make deps installs it)"
	exit 0
fi
out=$PWD/$BUILD/softroce-netns
rm -rf "$out"
mkdir -p "$out"
# A TCG guest on 7.3 panicked once while booting (run_timer_softirq, before any test ran):
# a guest that did not boot is booted once more, and says so.
for try in 1 2; do
	tests/rdma/netns-guest.sh --out "$out" --env "BUILD=$BUILD" 2>&1 | tee "$out/run.log"
	rc=${PIPESTATUS[0]}
	[ "$rc" = 125 ] && [ $try = 1 ] && grep -q "guest did not boot" "$out/run.log" || exit "$rc"
	echo "note: the guest did not boot (its console: above); booting it once more"
done
