#!/bin/bash
# Runs every Go fuzz target in the module for a short, fixed time each.
# Usage: .ci/fuzz.sh [duration]   (default 10s)
set -euo pipefail
cd "$(dirname "$0")/.."
t=${1:-10s}
n=0
for pkg in $(go list ./...); do
	for f in $(go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true); do
		echo "fuzz: $pkg $f ($t)"
		# Go's fuzzer can fail a run with "context deadline exceeded"
		# when fuzztime ends while a worker is still inside one slow
		# input (FuzzInit's device that never finishes a reset waits
		# out the driver's reset polls) or minimizing a new one, on a
		# loaded machine: no failing input is written then, and the
		# run is repeated once. A real failure always writes its input
		# ("Failing input written to"); a hang is reported as one.
		out=$(mktemp)
		if ! go test -run '^$' -fuzz "^$f\$" -fuzztime "$t" -fuzzminimizetime 2s "$pkg" 2>&1 | tee "$out"; then
			if grep -q 'context deadline exceeded' "$out" && ! grep -q 'Failing input written' "$out"; then
				echo "fuzz: $f: the fuzzer hit its deadline inside an input (no failing input written); running it again"
				go test -run '^$' -fuzz "^$f\$" -fuzztime "$t" -fuzzminimizetime 2s "$pkg" || { rm -f "$out"; exit 1; }
			else
				# Print the failing input: CI keeps the log, not
				# the checkout it was written to.
				f_in=$(sed -n 's/.*Failing input written to \(testdata[^ ]*\).*/\1/p' "$out" | tail -1)
				dir=$(go list -f '{{.Dir}}' "$pkg")
				if [ -n "$f_in" ] && [ -f "$dir/$f_in" ]; then
					echo "fuzz: the failing input, $f_in in $pkg (save it there to reproduce):"
					cat "$dir/$f_in"
				fi
				rm -f "$out"
				exit 1
			fi
		fi
		rm -f "$out"
		n=$((n + 1))
	done
done
echo "fuzz: $n targets ran"
