#!/usr/bin/env bash
# Runs the Criterion unit tests, then the integration tests, and prints one total.
#   tests/run.sh [unit|integration|rdma]     (BUILD=build by default)
# integration includes rdma: the Soft-RoCE guest runs whenever qemu can.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
what=${1:-all}
# Under SANITIZE builds: leaks inside libcriterion are not ours (see the file).
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/lsan.supp:print_suppressions=0}
passed=0
failed=0
failures=()

if [ "$what" = all ] || [ "$what" = unit ]; then
	for t in "$BUILD"/tests/test_*; do
		[ -x "$t" ] || continue
		name=$(basename "$t")
		out=$("$t" --jobs 2 --verbose 2>&1)
		rc=$?
		line=$(printf '%s\n' "$out" | grep 'Synthesis:' | tail -1)
		p=$(sed -n 's/.*Passing: \([0-9]*\).*/\1/p' <<<"$line")
		f=$(sed -n 's/.*Failing: \([0-9]*\).*/\1/p' <<<"$line")
		p=${p:-0}
		f=${f:-0}
		if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
		passed=$((passed + p))
		failed=$((failed + f))
		printf '%-28s %s\n' "$name" "${line#*Synthesis: }"
		sk=$(printf '%s\n' "$out" | grep -c '^\[SKIP\]')
		[ "$sk" -gt 0 ] && printf '    %d skipped: %s\n' "$sk" \
			"$(printf '%s\n' "$out" | grep -m1 '^\[SKIP\]' | sed 's/^\[SKIP\] [^ ]*: //')"
		if [ "$f" -ne 0 ]; then
			printf '%s\n' "$out" | grep -v '^\[----\] *$' | tail -40
			failures+=("$name")
		fi
	done
fi

if [ "$what" = all ] || [ "$what" = integration ] || [ "$what" = rdma ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "integration tests need root (network namespaces)" >&2
		failed=$((failed + 1))
		failures+=("integration: not root")
	else
		scripts=(tests/integration/test_*.sh)
		[ "$what" = rdma ] && scripts=(tests/integration/test_softroce.sh)
		for t in "${scripts[@]}"; do
			name=$(basename "$t" .sh)
			start=$(date +%s)
			log=$(mktemp)
			BUILD=$BUILD bash "$t" >"$log" 2>&1
			rc=$?
			secs=$(($(date +%s) - start))
			p=$(grep -c '^PASS ' "$log")
			f=$(grep -c '^FAIL ' "$log")
			sk=$(grep -c '^SKIP ' "$log")
			if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
			passed=$((passed + p))
			failed=$((failed + f))
			printf '%-28s %d passed, %d failed, %d skipped (%ds)\n' "$name" "$p" "$f" "$sk" "$secs"
			grep -E '^(PASS|FAIL|SKIP) ' "$log" | sed 's/^/    /'
			if [ "$f" -ne 0 ]; then
				echo "---- $name log (last 60 lines) ----"
				tail -60 "$log"
				failures+=("$name")
			fi
			rm -f "$log"
		done
	fi
fi

echo
[ ${#failures[@]} -gt 0 ] && echo "failed: ${failures[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
