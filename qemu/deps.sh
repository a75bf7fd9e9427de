#!/bin/bash
# Installs what `make qemu` and the e2e tests need: QEMU for both targets
# and the network tools used from the test namespace. As root it installs
# missing Debian packages with apt-get. It fails, saying what is missing and
# how to get it, when something is missing and cannot be installed (not
# root, no apt-get, apt-get failed): `make test` stops there rather than
# skipping the tests that need it. Quick and silent when everything is
# present.
set -uo pipefail

# command -> Debian package
declare -A pkgs=(
	[qemu-system-x86_64]=qemu-system-x86
	[qemu-system-arm]=qemu-system-arm
	[ip]=iproute2
	[ping]=iputils-ping
	[nc]=netcat-openbsd
	[curl]=curl
	# make bench's Linux guest (qemu/linuxguest) unpacks Debian packages.
	[dpkg-deb]=dpkg
	[iperf3]=iperf3
	[hping3]=hping3
	[nping]=nmap
	[dnsmasq]=dnsmasq-base
	[mkimage]=u-boot-tools [arm-none-eabi-objcopy]=binutils-arm-none-eabi
)

# Debian's scapy lives under the system python, which may not be the first
# python3 on PATH (pyenv).
py=python3
[ -x /usr/bin/python3 ] && py=/usr/bin/python3

check() {
	missing=()
	for cmd in "${!pkgs[@]}"; do
		command -v "$cmd" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1 || missing+=("${pkgs[$cmd]}")
	done
	"$py" -c 'import scapy' >/dev/null 2>&1 || missing+=(python3-scapy)
	[ ${#missing[@]} -eq 0 ] && return 0
	mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
	return 1
}

check && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
	echo "deps: FAIL: missing packages: ${missing[*]}: run this as root on Debian/Ubuntu to install them (apt-get install ${missing[*]}); without them use \`make test-host\`" >&2
	exit 1
fi

echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get update -qq || ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
	echo "deps: FAIL: apt-get could not install ${missing[*]} (see its messages above)" >&2
	exit 1
fi
if ! check; then
	echo "deps: FAIL: still missing after apt-get install: ${missing[*]}" >&2
	exit 1
fi
