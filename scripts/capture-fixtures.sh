#!/usr/bin/env bash
# Re-create the real-capture test fixtures of sluice-netstack.
#
# Builds two network namespaces (sln-a, sln-b) joined by a veth pair, makes the
# Linux kernel send ping, ping6 (with neighbour discovery and ARP), UDP (and
# the ICMP port-unreachable answers), and a TCP connection with options, and
# writes one small pcap per scenario into dataplane/netstack/tests/fixtures/.
# VLAN / QinQ fixtures are the real ping frames with tags added by scapy (see
# the end). Needs root, iproute2, ethtool, tcpdump and /usr/bin/python3 with
# scapy. Addresses: 198.18.0.0/15 and 2001:2::/48 only. Everything it creates
# is removed on exit.
#
# The tests pin values of the committed captures (identifiers, sequence
# numbers, timestamps): after re-capturing, update tests/fixtures.rs. The fuzz
# seeds (dataplane/netstack/fuzz/seeds, one file per frame) are rewritten at
# the end.
set -euo pipefail

# Usage: scripts/capture-fixtures.sh [FIXTURE_DIR] [SEED_DIR]
OUT=${1:-"$(cd "$(dirname "$0")/.." && pwd)/dataplane/netstack/tests/fixtures"}
# (Read $2 now: the loop below reuses the positional parameters.)
SEEDS=${2:-"$(cd "$(dirname "$0")/.." && pwd)/dataplane/netstack/fuzz/seeds"}
mkdir -p "$OUT"
A=sln-a; B=sln-b

cleanup() {
    ip netns pids "$B" 2>/dev/null | xargs -r kill 2>/dev/null || true
    ip netns pids "$A" 2>/dev/null | xargs -r kill 2>/dev/null || true
    ip netns del "$A" 2>/dev/null || true
    ip netns del "$B" 2>/dev/null || true
}
trap cleanup EXIT
cleanup

ip netns add "$A"; ip netns add "$B"
ip link add veth-a netns "$A" type veth peer name veth-b netns "$B"
# Fixed MACs so the fixtures are stable across runs.
ip -n "$A" link set veth-a address 02:00:00:00:00:0a
ip -n "$B" link set veth-b address 02:00:00:00:00:0b
for ns_if in "$A veth-a" "$B veth-b"; do
    set -- $ns_if
    # Full checksums on transmit, VLAN tags in-band (no offload).
    ip netns exec "$1" ethtool -K "$2" tx off txvlan off rxvlan off >/dev/null 2>&1 || true
    ip -n "$1" link set lo up
    ip -n "$1" link set "$2" up
done
ip -n "$A" addr add 198.18.0.1/24 dev veth-a
ip -n "$B" addr add 198.18.0.2/24 dev veth-b
ip -n "$A" addr add 2001:2::1/64 dev veth-a nodad
ip -n "$B" addr add 2001:2::2/64 dev veth-b nodad
ip netns exec "$A" sysctl -qw net.ipv4.tcp_timestamps=1 net.ipv4.tcp_sack=1 net.ipv4.tcp_window_scaling=1
ip netns exec "$B" sysctl -qw net.ipv4.tcp_timestamps=1 net.ipv4.tcp_sack=1 net.ipv4.tcp_window_scaling=1
sleep 1

# capture NAME COMMAND...: run COMMAND in sln-a while tcpdump records veth-b.
capture() {
    local name=$1; shift
    ip netns exec "$B" tcpdump -U -n -i veth-b -w "$OUT/$name.pcap" >/dev/null 2>&1 &
    local pid=$!
    sleep 1
    ip netns exec "$A" "$@" >/dev/null
    sleep 1
    kill "$pid"; wait "$pid" 2>/dev/null || true
}

capture ping4 ping -c 1 -s 32 -p 736c75696365 198.18.0.2
capture ping6 ping -6 -c 1 -s 32 -p 736c75696365 2001:2::2
capture udp4 python3 -c '
import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("198.18.0.1", 40000)); s.sendto(b"sluice udp4 fixture", ("198.18.0.2", 7))'
capture udp6 python3 -c '
import socket; s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind(("2001:2::1", 40001)); s.sendto(b"sluice udp6 fixture", ("2001:2::2", 7))'
# A listener in sln-b so the handshake completes; one data segment each way.
ip netns exec "$B" python3 -c '
import socket; l = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("198.18.0.2", 8080)); l.listen(1); c, _ = l.accept(); c.send(c.recv(100)); c.close()' &
sleep 0.5
capture tcp4 python3 -c '
import socket, time; s = socket.create_connection(("198.18.0.2", 8080), source_address=("198.18.0.1", 40002))
s.send(b"hello sluice"); s.recv(100); time.sleep(0.2); s.close()'
ip netns exec "$B" python3 -c '
import socket; l = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("2001:2::2", 8080)); l.listen(1); c, _ = l.accept(); c.send(c.recv(100)); c.close()' &
sleep 0.5
capture tcp6 python3 -c '
import socket, time; s = socket.create_connection(("2001:2::2", 8080), source_address=("2001:2::1", 40003))
s.send(b"hello sluice"); s.recv(100); time.sleep(0.2); s.close()'
# Unreachable port: the kernel answers with ICMP destination unreachable.
capture unreach4 python3 -c '
import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("198.18.0.1", 40004)); s.sendto(b"nobody home", ("198.18.0.2", 9))'
# This kernel has no 8021q module, so the tagged fixtures are the real ping4
# frames with tags inserted by scapy: 802.1Q VID 100 (PCP 5), and 802.1ad S-tag
# VID 200 carrying C-tag VID 300.
/usr/bin/python3 - "$OUT" <<'PY'
import sys
from scapy.all import rdpcap, wrpcap, Ether, Dot1Q, Dot1AD
out = sys.argv[1]
frames = [f for f in rdpcap(out + "/ping4.pcap") if f.haslayer("ICMP")]
def tag(f, *tags):
    e = f[Ether]
    inner = e.payload.copy()
    new = Ether(src=e.src, dst=e.dst)
    for t in tags:
        new = new / t
    return new / inner
wrpcap(out + "/vlan.pcap", [tag(f, Dot1Q(vlan=100, prio=5)) for f in frames])
wrpcap(out + "/qinq.pcap", [tag(f, Dot1AD(vlan=200), Dot1Q(vlan=300)) for f in frames])
PY
ls -l "$OUT"

# Fuzz seeds: every captured frame as its own file.
mkdir -p "$SEEDS"
# Frame seeds only: the tcp_segment seeds (tcpseg-*) are hand-made.
find "$SEEDS" -maxdepth 1 -type f ! -name 'tcpseg-*' -delete
/usr/bin/python3 - "$OUT" "$SEEDS" <<'PY'
import glob, os, struct, sys
src, dst = sys.argv[1], sys.argv[2]
for path in sorted(glob.glob(os.path.join(src, "*.pcap"))):
    data = open(path, "rb").read()
    e = "<" if struct.unpack("<I", data[:4])[0] in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    name = os.path.basename(path)[:-5]
    at, i = 24, 0
    while at + 16 <= len(data):
        incl = struct.unpack(e + "I", data[at + 8:at + 12])[0]
        with open(os.path.join(dst, f"{name}-{i:02d}"), "wb") as f:
            f.write(data[at + 16:at + 16 + incl])
        at, i = at + 16 + incl, i + 1
PY
ls "$SEEDS" | wc -l
