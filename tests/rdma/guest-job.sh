#!/usr/bin/env bash
# The job `make test-rdma` runs inside the Soft-RoCE guest: the RDMA unit tests
# (Criterion, every build/tests/test_rdma* binary), then the 3-host chain over RDMA.
# Prints one PASS/FAIL line per test for tests/run.sh to count.
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
for bin in "$BUILD"/tests/test_rdma*; do
	[ -x "$bin" ] || continue
	name=$(basename "$bin")
	tap=${RDM_OUT:?}/$name.tap
	"$bin" --jobs 1 --tap="$tap" >"$RDM_OUT/$name.log" 2>&1
	rc=$?
	# TAP lines: "ok - rdma::name (0.10s)", "not ok - ...", "ok - ... # SKIP reason"
	while read -r line; do
		case "$line" in
		"not ok"*) echo "FAIL ${line#not ok - }" ;;
		"ok"*"# SKIP"*) echo "SKIP ${line#ok - }" ;;
		"ok"*) echo "PASS ${line#ok - }" ;;
		esac
	done <"$tap"
	if [ $rc -ne 0 ]; then
		echo "$name exited $rc; its log:"
		tail -40 "$RDM_OUT/$name.log"
		grep -q '^not ok' "$tap" || echo "FAIL $name (exit $rc)"
	fi
done
bash tests/rdma/chain.sh
bash tests/rdma/orch.sh
