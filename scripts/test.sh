#!/usr/bin/env bash
# Set up, build and run every prismfs test: unit tests (cmocka), the
# libFuzzer targets (FUZZ_SECONDS each, default 30), then the integration
# suite (pytest, real mounts through /dev/fuse) against the normal build
# and against the AddressSanitizer + UBSan build. The builds packagers make
# (release, plain, clang, sanitizers at -O2) are built too, with -Werror,
# and run the unit tests.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

./scripts/setup.sh || exit 1
./scripts/build.sh --asan --variants || { echo "prismfs test: build failed" >&2; exit 1; }

status=0
total_pass=0
total_fail=0

echo "== unit tests"
if meson test -C build --print-errorlogs; then :; else
	status=1
	total_fail=$((total_fail + 1))
fi
# The other builds: one line each, the log when one fails. (meson test
# runs them with halt_on_error for the sanitizers; build.sh also builds
# them not to recover from a UBSan finding.)
for b in build-asan build-release build-plain build-clang build-sanitize; do
	if out=$(meson test -C "$b" --print-errorlogs 2>&1); then
		echo "$b ($(cat "$b/prismfs-setup")): $(grep -Eo '^Ok: +[0-9]+' <<<"$out" | grep -Eo '[0-9]+') ok"
	else
		printf '%s\n' "$out"
		echo "$b ($(cat "$b/prismfs-setup")): unit tests FAILED"
		status=1
		total_fail=$((total_fail + 1))
	fi
done

echo "== fuzz"
if ./scripts/fuzz.sh; then :; else
	status=1
	total_fail=$((total_fail + 1))
fi

run_suite() { # name binary [extra env...]
	local name=$1 bin=$2; shift 2
	local log="$root/build/pytest-$name.log"
	echo "== integration tests ($name: $bin)"
	# A test that hangs (a daemon stuck in the kernel, say) fails after
	# 15 minutes with every thread's stack, instead of running into CI's limit.
	env PRISMFS_BIN="$bin" "$@" /usr/bin/python3 -m pytest -q -p no:cacheprovider \
		-p timeout -o timeout=900 -o timeout_method=thread \
		-rs -o console_output_style=classic tests/integration "${PYTEST_ARGS[@]}" 2>&1 | tee "$log"
	local rc=${PIPESTATUS[0]}
	# pytest exits 5 when it collected nothing: that is a failure here.
	[ "$rc" -eq 0 ] || status=1
	local p f
	p=$(grep -Eo '[0-9]+ passed' "$log" | tail -1 | grep -Eo '[0-9]+' || echo 0)
	f=$(grep -Eo '[0-9]+ (failed|error)' "$log" | awk '{s+=$1} END {print s+0}')
	total_pass=$((total_pass + p))
	total_fail=$((total_fail + f))
}

# Requests reach the daemon over io_uring only while the kernel's
# enable_uring is Y. Each pass sets it as it needs; the old value comes back
# at the end.
uring_param=/sys/module/fuse/parameters/enable_uring
uring_old=$(cat "$uring_param" 2>/dev/null || true)
restore_uring() { [ -n "$uring_old" ] && echo "$uring_old" >"$uring_param"; }
trap restore_uring EXIT
uring() { # on|off: the mode a pass runs in, as far as this kernel allows
	if [ "$1" = on ] && [ -z "$uring_old" ]; then
		echo "off" # no FUSE over io_uring in this kernel: said below
		return
	fi
	[ -n "$uring_old" ] && { [ "$1" = on ] && echo Y || echo N; } >"$uring_param"
	echo "$1"
}
[ -n "$uring_old" ] || echo "== note: this kernel has no FUSE over io_uring; every pass reads /dev/fuse"

PYTEST_ARGS=("$@")
asan_dir=$(mktemp -d /tmp/prismfs-asan.XXXXXX)
# Every suite runs on both data paths, kernel passthrough and the daemon,
# and on both ways requests arrive, io_uring and /dev/fuse: each build meets
# each of the four. The sanitized daemon-path run also keeps at most 16 node
# fds open, so that nearly every node's fd is closed and reopened from its
# file handle.
for pt in on off; do
	budget=()
	[ "$pt" = off ] && budget=(PRISMFS_TEST_NODE_FDS=16)
	u=$(uring "$([ "$pt" = on ] && echo on || echo off)")
	run_suite "plain-passthrough-$pt-uring-$u" "$root/build/prismfs" \
		PRISMFS_TEST_PASSTHROUGH=$pt PRISMFS_TEST_URING=$u
	u=$(uring "$([ "$pt" = on ] && echo off || echo on)")
	run_suite "asan-passthrough-$pt-uring-$u${budget:+-node-fds-16}" "$root/build-asan/prismfs" \
		PRISMFS_TEST_PASSTHROUGH=$pt PRISMFS_TEST_URING=$u "${budget[@]}" \
		ASAN_OPTIONS="detect_leaks=1:log_path=$asan_dir/asan" \
		UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$asan_dir/ubsan"
done
if compgen -G "$asan_dir/*" >/dev/null; then
	echo "== sanitizer reports from prismfs:"
	cat "$asan_dir"/*
	status=1
	total_fail=$((total_fail + 1))
fi
rm -rf "$asan_dir"

# No run leaves a mount behind. Ours are under the tests' directory, in
# run-PID of a pytest that has ended by now; a live PID there is a test run
# beside this one, and a mount elsewhere (a benchmark, a user's) is not ours.
left_behind() {
	local mp pid
	awk '$3 == "fuse.prismfs" {print $2}' /proc/mounts | while IFS= read -r mp; do
		case $mp in
		/tmp/prismfs-tests/run-*)
			pid=${mp#/tmp/prismfs-tests/run-}
			pid=${pid%%/*}
			kill -0 "$pid" 2>/dev/null || echo "$mp"
			;;
		esac
	done
}
left=$(left_behind)
if [ -n "$left" ]; then
	echo "== prismfs mounts left behind:"
	echo "$left"
	status=1
fi

echo "prismfs: ${total_pass} passed, ${total_fail} failed"
exit $status
