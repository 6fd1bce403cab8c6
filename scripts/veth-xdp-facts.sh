#!/usr/bin/env bash
# Re-checks, on this kernel, what the topology's veth settings are for: with
# an XDP program on gw0 that answers UDP with XDP_TX, which settings of the
# peer p-gw (GRO, an XDP_PASS program) and of the client's TX checksum
# offload let the answers reach the client. Prints one row per combination.
#
#   sudo scripts/veth-xdp-facts.sh          # builds sluice-bench if needed
#
# Expected on kernel 6.18: replies only with an XDP program on the peer (GRO
# alone gives NAPI but XDP_TX frames are never flushed to the peer), and only
# with the client's tx checksumming off (else UDP checksum errors).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
source "$here/lib.sh"

require_root "it creates network namespaces and attaches XDP programs"
require_cmd ip ethtool clang python3

root=$(cd "$here/.." && pwd)
bench=${SLUICE_BENCH:-$root/target/debug/sluice-bench}
if [[ ! -x $bench ]]; then
	log "building sluice-bench"
	(cd "$root" && cargo build -q -p sluice-bench)
fi

prefix=slf$$
work=$(mktemp -d)
on_exit rm -rf "$work"
on_exit topo_down
topo_down() { "$bench" topo down --prefix "$prefix" >&2; }
"$bench" topo up --prefix "$prefix" --no-peer-xdp >/dev/null

clang -O2 -g -target bpf -c "$root/bench/tests/xdp/udp_reflect.bpf.c" -o "$work/reflect.o"
cat >"$work/pass.c" <<'C'
#define SEC(n) __attribute__((section(n), used))
struct xdp_md;
SEC("xdp") int facts_pass(struct xdp_md *ctx) { return 2; }
char _license[] SEC("license") = "GPL";
C
clang -O2 -g -target bpf -c "$work/pass.c" -o "$work/pass.o"

gw=$prefix-gw br=$prefix-br client=$prefix-client
ip netns exec "$client" ping -c1 -W2 -q 198.18.0.2 >/dev/null
ip -n "$gw" link set dev gw0 xdpdrv obj "$work/reflect.o" sec xdp

# Sum of an ethtool -S counter over all queues of gw0.
gw_stat() {
	ip netns exec "$gw" ethtool -S gw0 |
		awk -v k="$1" '{ sub(":", "", $1) } $1 ~ "^rx_queue_[0-9]+_" k "$" { s += $2 } END { print s + 0 }'
}

# Sends 5 datagrams to the reflector, prints how many came back.
replies() {
	ip netns exec "$client" python3 - <<'PY'
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.3)
ok = 0
for i in range(5):
    s.sendto(b"x" * 100, ("198.18.0.2", 7777))
    try:
        s.recvfrom(2048)
        ok += 1
    except socket.timeout:
        pass
print(ok)
PY
}

printf '%-8s %-13s %-15s %-8s %-8s %s\n' "PEER GRO" "PEER XDP" "CLIENT TX-CSUM" "REPLIES" "XDP_TX" "XDP_TX_ERRORS"
for gro in off on; do
	for pxdp in none xdp_pass; do
		for txcsum in off on; do
			ip netns exec "$br" ethtool -K p-gw gro "$gro" >/dev/null
			ip -n "$br" link set dev p-gw xdpdrv off
			if [[ $pxdp == xdp_pass ]]; then
				ip -n "$br" link set dev p-gw xdpdrv obj "$work/pass.o" sec xdp
			fi
			ip netns exec "$client" ethtool -K client0 tx "$txcsum" >/dev/null
			tx0=$(gw_stat xdp_tx) err0=$(gw_stat xdp_tx_errors)
			got=$(replies)
			tx1=$(gw_stat xdp_tx) err1=$(gw_stat xdp_tx_errors)
			printf '%-8s %-13s %-15s %-8s %-8s %s\n' "$gro" "$pxdp" "$txcsum" "$got/5" \
				"$((tx1 - tx0))" "$((err1 - err0))"
		done
	done
done
