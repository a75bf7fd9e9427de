#!/bin/bash
# `make test`: every test, or a failure that says why.
#
#  1. qemu/deps.sh installs missing Debian packages (as root) or fails;
#     internal/toolcheck -prereq fails, with the fix, without a complete
#     TamaGo distribution, root, /dev/net/tun, ip or QEMU. Either stops the
#     run at once: `make test-host` is for machines that cannot run the
#     firmware.
#  2. go vet and gofmt on the host; go build, firmware link and go vet of
#     every firmware package for GOOS=tamago on each board.
#  3. The host tests under the race detector, except the allocation tests
#     (named *Allocs*), which count allocations and so run without it.
#  4. Every fuzz target for CI_FUZZTIME.
#  5. The end-to-end suite under QEMU on microvm and mx6ullevk.
#
# A failing step does not stop the later ones. The run ends with
# "N passed, N failed, N skipped" over every go test result, and fails if
# anything failed.
#
# Environment: GO (go), ACCEL (auto), CI_FUZZTIME (5s), E2E_TARGETS
# (microvm mx6ullevk).
set -uo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
ACCEL=${ACCEL:-auto}
CI_FUZZTIME=${CI_FUZZTIME:-5s}
E2E_TARGETS=${E2E_TARGETS:-microvm mx6ullevk}

echo "== prerequisites"
./qemu/deps.sh || exit 1
"$GO" run ./internal/toolcheck -prereq || exit 1

mkdir -p build
tally=build/test-results.txt
: >"$tally"
start=$SECONDS

"$GO" build -o build/testsummary ./internal/testsummary || exit 1
summary=build/testsummary

step() { # name command...: runs a step that is not a go test run
	local name=$1
	shift
	echo "== $name"
	local t=$SECONDS
	if ! "$@"; then
		"$summary" -tally "$tally" -fail "$name"
	fi
	echo "== $name: $((SECONDS - t))s"
}

gotest() { # name [-v] go-test-args...: go test -json, summarised
	local name=$1 v=
	shift
	if [ "${1:-}" = -v ]; then
		v=-v
		shift
	fi
	echo "== $name"
	local t=$SECONDS
	"$GO" test -json "$@" 2>&1 | "$summary" -tally "$tally" -label "$name" $v
	local st=("${PIPESTATUS[@]}")
	if [ "${st[0]}" -ne 0 ] && [ "${st[1]}" -eq 0 ]; then
		"$summary" -tally "$tally" -fail "$name: go test exited ${st[0]} with no failure reported"
	fi
	echo "== $name: $((SECONDS - t))s"
}

step "go vet" "$GO" vet ./...
step "gofmt" sh -c 'out=$(gofmt -l .); [ -z "$out" ] || { echo "$out"; echo "gofmt: files above need formatting"; exit 1; }'
step "tamago build and vet" "$GO" run ./internal/toolcheck -tamago

# qemu/e2e runs below, with its targets.
mapfile -t host < <("$GO" list ./... | grep -v '/qemu/e2e$')
if [ ${#host[@]} -eq 0 ]; then
	"$summary" -tally "$tally" -fail "go list ./... found no packages"
	host=(./...)
fi
gotest "host tests (-race)" -race -count=1 -timeout 40m -skip Allocs "${host[@]}"
gotest "allocation tests" -count=1 -timeout 10m -run Allocs "${host[@]}"

step "fuzz ($CI_FUZZTIME per target)" ./.ci/fuzz.sh "$CI_FUZZTIME"

for target in $E2E_TARGETS; do
	gotest "e2e $target" -v -count=1 -timeout 30m ./qemu/e2e -args -target "$target" -accel "$ACCEL"
done

echo "== make test: $(((SECONDS - start) / 60)) min"
"$summary" -tally "$tally" -summary
