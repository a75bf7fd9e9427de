#!/bin/sh
# refresh.sh rebuilds this copy of gVisor from the version go.mod requires:
# the packages tamanet builds and tests with, as `go mod vendor` selects
# them from the Go module proxy, then patches/*.patch applied in order.
# Run it from anywhere after changing the gvisor.dev/gvisor requirement
# in go.mod; then `go mod tidy` and the tests.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# A copy of the module without the replacement, so that vendoring takes
# upstream gVisor.
(cd "$root" && git ls-files -z --cached --others --exclude-standard -- . ':!third_party/gvisor') |
	(cd "$root" && xargs -0 tar -cf -) | tar -xf - -C "$tmp"
cd "$tmp"
go mod edit -dropreplace gvisor.dev/gvisor
go mod download gvisor.dev/gvisor
go mod vendor
src=vendor/gvisor.dev/gvisor
[ -d "$src/pkg" ] || { echo "refresh: go mod vendor selected no gVisor package" >&2; exit 1; }

rm -rf "$here/pkg"
cp -R "$src/pkg" "$src/LICENSE" "$src/AUTHORS" "$here/"
chmod -R u+w "$here/pkg"
cd "$here"
for p in patches/*.patch; do
	[ -e "$p" ] || continue
	echo "refresh: applying $p"
	patch -p1 --no-backup-if-mismatch <"$p"
done
