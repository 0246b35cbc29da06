#!/usr/bin/env bash
# Runs the project's checks stage by stage, counts every check, and ends with one total
# line, "N passed, N failed", over all the stages it ran.
#   tests/run.sh [STAGE...]     (BUILD=build by default; no STAGE: all)
# Stages:
#   format       clang-format --dry-run over every tracked .c/.h (make check-format): 1 check
#   layers       includes point only down the layers (tests/lint/check-layers.sh): 1 check
#   manifests    the Kubernetes manifests in deploy/k8s, offline (tests/lint/k8s.sh): one
#                check per PASS/FAIL line
#   unit         the Criterion unit tests in $BUILD/tests: one check per test
#   integration  tests/integration/test_*.sh (needs root; includes the Soft-RoCE guest,
#                which runs whenever qemu can): one check per PASS/FAIL line
#   rdma         only tests/integration/test_softroce.sh
#   san          the unit tests built with SANITIZE=$SAN into $SAN_BUILD, and run
#   fuzz         every libFuzzer target (make fuzz-build) for FUZZ_SECONDS: one check each
#   all          format layers manifests unit integration san fuzz (what `make test` runs)
# A stage that fails does not stop the later ones; the exit status is 0 only when
# nothing failed. The san and fuzz builds start with the integration stage when it comes
# first (in the background, niced); their stages then wait for them.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
SAN=${SAN:-address,undefined}
SAN_BUILD=${SAN_BUILD:-build/san-${SAN//,/-}}
FUZZ_SECONDS=${FUZZ_SECONDS:-5}
# Under SANITIZE builds and fuzzing: leaks inside libcriterion and libndpi are not ours
# (see the file).
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/lsan.supp:print_suppressions=0}
passed=0
failed=0
failures=()
stage_times=()

# check NAME OK LOG: counts one check; on failure shows the last lines of LOG.
check() {
	if [ "$2" = 1 ]; then
		passed=$((passed + 1))
		printf '%-28s passed\n' "$1"
	else
		failed=$((failed + 1))
		failures+=("$1")
		printf '%-28s FAILED\n' "$1"
		[ -n "${3:-}" ] && tail -40 "$3"
	fi
}

# unit_tests DIR PREFIX: every Criterion binary in DIR, one check per test.
unit_tests() {
	local t name out rc line p f sk
	for t in "$1"/test_*; do
		[ -x "$t" ] || continue
		name=$2$(basename "$t")
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
}

# scripts SCRIPT...: integration scripts, one check per PASS/FAIL line they print.
scripts() {
	local t name start log rc secs p f sk
	if [ "$(id -u)" -ne 0 ]; then
		echo "integration tests need root (network namespaces)" >&2
		failed=$((failed + 1))
		failures+=("integration: not root")
		return
	fi
	for t in "$@"; do
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
}

stage_format() {
	local log=$BUILD/check-format.log ok
	mkdir -p "$BUILD"
	make -s -j"${JOBS:-$(nproc)}" --no-print-directory check-format >"$log" 2>&1 && ok=1 || ok=0
	check "check-format" $ok "$log"
}

stage_layers() {
	local log=$BUILD/check-layers.log ok
	mkdir -p "$BUILD"
	tests/lint/check-layers.sh >"$log" 2>&1 && ok=1 || ok=0
	check "check-layers" $ok "$log"
}

# The builds of the san and fuzz stages. When the integration stage runs before them,
# they start with it, in the background at the lowest priority (early): those tests
# spend most of their time waiting for events, and the compilers fill the waits.
build_san() {
	mkdir -p "$SAN_BUILD"
	make -s -j"${JOBS:-$(nproc)}" --no-print-directory SANITIZE="$SAN" unit-build \
		>"$SAN_BUILD/build.log" 2>&1
}
build_fuzz() {
	mkdir -p build/fuzz
	make -s -j"${JOBS:-$(nproc)}" --no-print-directory fuzz-build >build/fuzz/build.log 2>&1
}
declare -A early_pid=()
early() {
	(
		renice -n 19 -p $BASHPID >/dev/null
		"build_$1"
	) &
	early_pid[$1]=$!
}
# built NAME: the build's status, from the early one if it ran.
built() {
	if [ -n "${early_pid[$1]:-}" ]; then
		wait "${early_pid[$1]}"
		local rc=$?
		early_pid[$1]=""
		return $rc
	else
		"build_$1"
	fi
}

stage_san() {
	echo "building the unit tests with SANITIZE=$SAN in $SAN_BUILD"
	if built san; then
		unit_tests "$SAN_BUILD/tests" "san "
	else
		check "san: build" 0 "$SAN_BUILD/build.log"
	fi
}

stage_fuzz() {
	local src n bin log ok
	if ! built fuzz; then
		check "fuzz: build" 0 build/fuzz/build.log
		return
	fi
	for src in tests/fuzz/fuzz_*.c; do
		n=$(basename "$src" .c)
		n=${n#fuzz_}
		bin=build/fuzz/fuzz_$n
		log=build/fuzz/fuzz_$n.log
		mkdir -p "build/fuzz/corpus-$n"
		set -- "build/fuzz/corpus-$n"
		[ -d "tests/fuzz/seeds-$n" ] && set -- "$@" "tests/fuzz/seeds-$n"
		"$bin" -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 -artifact_prefix=build/fuzz/ \
			"$@" >"$log" 2>&1 && ok=1 || ok=0
		check "fuzz_$n (${FUZZ_SECONDS} s)" "$ok" "$log"
		[ "$ok" = 1 ] && printf '    %s runs, corpus %s\n' \
			"$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")" \
			"$(sed -n 's/.*DONE .*corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p' "$log" | tail -1)"
	done
}

# stage NAME: runs one stage and notes its wall time.
stage() {
	local start=$SECONDS
	echo "== $1"
	case $1 in
	format) stage_format ;;
	layers) stage_layers ;;
	manifests) scripts tests/lint/k8s.sh ;;
	unit) unit_tests "$BUILD/tests" "" ;;
	integration) scripts tests/integration/test_*.sh ;;
	rdma) scripts tests/integration/test_softroce.sh ;;
	san) stage_san ;;
	fuzz) stage_fuzz ;;
	*)
		echo "tests/run.sh: no stage '$1'" >&2
		failed=$((failed + 1))
		failures+=("stage $1")
		;;
	esac
	stage_times+=("$1 $((SECONDS - start)) s")
}

[ $# -eq 0 ] && set -- all
stages=()
for s in "$@"; do
	if [ "$s" = all ]; then stages+=(format layers manifests unit integration san fuzz); else stages+=("$s"); fi
done
for ((i = 0; i < ${#stages[@]}; i++)); do
	if [ "${stages[$i]}" = integration ]; then
		for later in "${stages[@]:$i}"; do
			case $later in san | fuzz) [ -z "${early_pid[$later]:-}" ] && early "$later" ;; esac
		done
	fi
	stage "${stages[$i]}"
done

echo
printf 'stage times:'
printf ' %s,' "${stage_times[@]}" | sed 's/,$//'
echo
[ ${#failures[@]} -gt 0 ] && echo "failed: ${failures[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
