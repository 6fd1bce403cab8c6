#!/usr/bin/env bash
# Installs, on Debian 12 as root and without questions, what sluice's build,
# tests and benchmarks need -- only the packages that are missing, in one
# apt-get call -- and mounts bpffs. Fast (one dpkg-query) when all is there.
#
#   sudo scripts/install-deps.sh
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
source "$here/lib.sh"

require_root "it installs packages and mounts bpffs"

PACKAGES=(
	# BPF build: clang/llvm compile bpf/, libbpf-sys and libxdp-sys build against these
	clang llvm libbpf-dev libelf-dev zlib1g-dev pkg-config m4 make
	# <linux/if.h> pulls in glibc's <sys/socket.h>; under -target bpf glibc
	# picks gnu/stubs-32.h, which only the 32-bit libc headers ship
	libc6-dev-i386
	# topology and tests: ip, ethtool, sysctl (procps), ping
	iproute2 ethtool bpftool iputils-ping procps
	# traffic and inspection
	python3-scapy hping3 tcpdump netcat-openbsd linux-perf
	# baselines and load generators (nghttp2-client: nghttp, h2load)
	nginx haproxy nghttp2-client wrk
	# TLS and HTTP/2 tests: certificates and s_client (openssl), the scan
	# (testssl.sh, which needs bsdextrautils' hexdump), the HTTP/2 attack
	# client (python3-h2, run by /usr/bin/python3) and curl
	openssl testssl.sh bsdextrautils python3-h2 curl
	# gRPC through the proxy: a grpcio client and server (/usr/bin/python3)
	python3-grpcio
	# plots in docs/benchmarks.md
	python3-matplotlib
)

# One dpkg-query for all: "name status" for every package dpkg knows.
declare -A installed=()
while read -r name status; do
	[[ $status == installed ]] && installed[$name]=1
done < <(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${PACKAGES[@]}" 2>/dev/null || true)

missing=()
for p in "${PACKAGES[@]}"; do
	[[ -n ${installed[$p]:-} ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
	log "all ${#PACKAGES[@]} packages present"
else
	log "missing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	available=()
	for p in "${missing[@]}"; do
		candidate=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ { print $2 }')
		if [[ -n $candidate && $candidate != "(none)" ]]; then
			available+=("$p")
		else
			warn "package $p is not available from the configured apt sources; skipping it"
		fi
	done
	if ((${#available[@]})); then
		# Packages such as nginx start their service on install; benchmarks
		# start their own instances inside namespaces, so keep services off.
		if [[ ! -e /usr/sbin/policy-rc.d ]]; then
			printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
			chmod 755 /usr/sbin/policy-rc.d
			on_exit rm -f /usr/sbin/policy-rc.d
		fi
		apt-get install -y -qq --no-install-recommends "${available[@]}"
		log "installed: ${available[*]}"
	fi
fi

# bpffs is not mounted at boot on these machines.
if ! grep -qs ' /sys/fs/bpf bpf ' /proc/mounts; then
	mount -t bpf bpf /sys/fs/bpf
	log "mounted bpffs on /sys/fs/bpf"
fi
