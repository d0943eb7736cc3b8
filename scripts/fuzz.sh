#!/usr/bin/env bash
# Build the libFuzzer targets (tests/fuzz/) into build-fuzz/ and run each for
# FUZZ_SECONDS seconds (default 30) on a copy of its seed corpus, so a run
# never adds files to the repository. Exits non-zero if any target fails.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

secs=${FUZZ_SECONDS:-30}
out=build-fuzz
cc=${FUZZ_CC:-clang}

command -v "$cc" >/dev/null || { echo "prismfs fuzz: $cc not found (run scripts/setup.sh)" >&2; exit 1; }
jansson=$(pkg-config --cflags --libs jansson) || { echo "prismfs fuzz: jansson not found" >&2; exit 1; }
mkdir -p "$out"

# no-recover: UBSan must stop the run, not just print, for libFuzzer to see it.
# shellcheck disable=SC2054 # the commas belong to one flag
cflags=(-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -D_GNU_SOURCE -std=c11
	-Isrc -g -O1 -Wall -Wextra -Werror -Wno-unused-parameter)

build() { # target sources...
	local t=$1; shift
	# shellcheck disable=SC2086 # pkg-config output is a list of words
	"$cc" "${cflags[@]}" -o "$out/$t" "$@" $jansson ||
		{ echo "prismfs fuzz: building $t failed" >&2; return 1; }
}
build fuzz_mapping tests/fuzz/fuzz_mapping.c src/map/mapping.c || exit 1
build fuzz_frame tests/fuzz/fuzz_frame.c src/map/mapframe.c || exit 1

work=$(mktemp -d /tmp/prismfs-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
artifacts="$out/artifacts/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$artifacts"

status=0
for t in mapping frame; do
	cp -r "tests/fuzz/corpus/$t" "$work/$t"
	log="$out/fuzz_$t.log"
	dict=()
	[ -f "tests/fuzz/$t.dict" ] && dict=(-dict="tests/fuzz/$t.dict")
	if "$out/fuzz_$t" -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$artifacts/$t-" "${dict[@]}" "$work/$t" \
		>"$log" 2>&1; then
		runs=$(grep -Eo 'number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$')
		echo "fuzz_$t: ok, ${runs:-?} runs in ${secs}s"
	else
		echo "prismfs fuzz: fuzz_$t FAILED (log: $log)" >&2
		grep -E 'ERROR|SUMMARY|check failed|runtime error|Test unit written' "$log" | head -20 >&2
		echo "reproduce: $out/fuzz_$t <input> (inputs in $artifacts/)" >&2
		status=1
	fi
done
exit $status
