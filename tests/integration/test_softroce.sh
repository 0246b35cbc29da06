#!/usr/bin/env bash
# The RDMA tests, for real: boots the Soft-RoCE guest (tests/softroce/guest.sh) and runs
# tests/rdma/guest-job.sh inside it. Skips, saying why, only where qemu cannot run.
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
if ! command -v qemu-system-x86_64 >/dev/null; then
	echo "SKIP rdma: qemu-system-x86_64 is not installed (make deps installs it)"
	exit 0
fi
out=$PWD/$BUILD/softroce
rm -rf "$out"
mkdir -p "$out"
tests/softroce/guest.sh --timeout 600 --out "$out" --env "BUILD=$BUILD" -- bash tests/rdma/guest-job.sh
