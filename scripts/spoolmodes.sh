#!/usr/bin/env bash
# spoolmodes.sh: what SpoolMode "always" costs Handle next to "spill", as a
# ratio of medians over interleaved runs (one binary per benchmark, runs
# alternated so that machine noise hits both modes alike).
#
#   bash scripts/spoolmodes.sh [rounds]     (default 9)
#
# Two measurements: the handler package's BenchmarkPipeline (fake Loki in
# the process) and the bench/ module's BenchmarkHandle (receiver in its own
# process, default config). The target (issue 3) is always ≤ 1.5× spill.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-9}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

go test -c -o "$tmp/handler.test" ./handler
(cd bench && go test -c -o "$tmp/bench.test" .)

median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

run() { # name binary benchmark-prefix benchtime
	local name=$1 bin=$2 prefix=$3 bt=$4
	: >"$tmp/$name-spill"
	: >"$tmp/$name-always"
	for ((i = 1; i <= rounds; i++)); do
		for m in spill always; do
			"$bin" -test.run '^$' -test.bench "$prefix/lokislog-$m\$" -test.benchtime="$bt" 2>&1 |
				awk '/^Benchmark/ {print $3}' >>"$tmp/$name-$m"
		done
	done
	local s a
	s=$(median <"$tmp/$name-spill")
	a=$(median <"$tmp/$name-always")
	printf '%-40s spill %6s ns/op  always %6s ns/op  always/spill %s\n' "$name ($rounds rounds, medians)" "$s" "$a" \
		"$(awk -v a="$a" -v s="$s" 'BEGIN {printf "%.2fx", a/s}')"
}

run "handler BenchmarkPipeline" "$tmp/handler.test" BenchmarkPipeline 200000x
(cd bench && run "bench BenchmarkHandle" "$tmp/bench.test" BenchmarkHandle 400000x)
