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
		go test -run '^$' -fuzz "^$f\$" -fuzztime "$t" -fuzzminimizetime 2s "$pkg"
		n=$((n + 1))
	done
done
echo "fuzz: $n targets ran"
