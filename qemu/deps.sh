#!/bin/bash
# Installs what `make qemu` and the e2e tests need: QEMU for both targets
# and the network tools used from the test namespace. As root it installs
# missing Debian packages with apt-get; otherwise it says what is missing
# and carries on (the tests then SKIP with the reason). Quick and silent
# when everything is present.
set -uo pipefail

# command -> Debian package
declare -A pkgs=(
	[qemu-system-x86_64]=qemu-system-x86
	[qemu-system-arm]=qemu-system-arm
	[ip]=iproute2
	[ping]=iputils-ping
	[nc]=netcat-openbsd
	[curl]=curl
	[iperf3]=iperf3
	[hping3]=hping3
	[nping]=nmap
	[dnsmasq]=dnsmasq-base
	[mkimage]=u-boot-tools [arm-none-eabi-objcopy]=binutils-arm-none-eabi
)

missing=()
for cmd in "${!pkgs[@]}"; do
	command -v "$cmd" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1 || missing+=("${pkgs[$cmd]}")
done
# Debian's scapy lives under the system python, which may not be the first
# python3 on PATH (pyenv).
py=python3
[ -x /usr/bin/python3 ] && py=/usr/bin/python3
"$py" -c 'import scapy' >/dev/null 2>&1 || missing+=(python3-scapy)

[ ${#missing[@]} -eq 0 ] && exit 0
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
	echo "deps: missing packages: ${missing[*]} (run as root on Debian/Ubuntu to install them; tests that need them will SKIP)" >&2
	exit 0
fi

echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get update -qq || ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
	echo "deps: apt-get could not install ${missing[*]}; tests that need them will SKIP" >&2
fi
exit 0
