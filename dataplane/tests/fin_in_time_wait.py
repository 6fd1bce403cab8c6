"""A TCP client in scapy that closes an HTTP/1.1 connection to the gateway
and then retransmits its FIN from another CPU (tcp_interop's
a_fin_retransmitted_onto_another_queue_in_time_wait_is_acked_not_reset).

Usage: fin_in_time_wait.py IFACE SRC DST PORT CPU_FIRST CPU_RETX
(Debian's /usr/bin/python3 with python3-scapy, in the client namespace).

SRC is an address no interface of the namespace holds, so the kernel drops
the gateway's segments to it instead of resetting a connection it does not
know; the sniffer on IFACE sees them. With XPS on the bridge port mapping
CPU n to the gateway's RX queue n, the sending CPU picks the queue.

1. Pinned to CPU_FIRST: handshake, `GET /health` with `Connection: close`,
   the response and the gateway's FIN (ACKed), then our FIN, and the
   gateway's ACK of it: the gateway is in TIME_WAIT. Prints one JSON line
   {"closed": ...} and waits for a line on stdin.
2. Pinned to CPU_RETX: the same FIN frame again. Prints one JSON line
   {"replies": [...]}: every segment the gateway sent back within two
   seconds of the first (none within ten seconds is an error).

Errors exit non-zero with the reason on stderr. Every wait is bounded.
"""
import json
import os
import queue
import random
import socket
import sys
import threading
import time

from scapy.all import (
    AsyncSniffer,
    Ether,
    IP,
    IPv6,
    TCP,
    conf,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    get_if_hwaddr,
    getmacbyip,
    in6_getnsma,
    in6_getnsmac,
    sendp,
    srp1,
)

conf.verb = 0
WAIT = 10.0

iface, src, dst = sys.argv[1], sys.argv[2], sys.argv[3]
port, cpu_first, cpu_retx = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
v6 = ":" in dst
sport = random.randint(20000, 60000)
isn = random.randint(0, 2**32 - 1)


def on_cpu(n):
    # Pins the calling (sending) thread; it is moved before this returns.
    os.sched_setaffinity(0, {n})
    assert os.sched_getaffinity(0) == {n}


def fail(msg):
    sys.exit(f"fin_in_time_wait ({src}:{sport} -> {dst}:{port}): {msg}")


def w(v):
    return v % 2**32


replies = queue.Queue()
started = threading.Event()
sniffer = AsyncSniffer(
    iface=iface,
    filter=f"tcp and src host {dst} and src port {port} and dst port {sport}",
    prn=replies.put,
    store=False,
    started_callback=started.set,
)
sniffer.start()
if not started.wait(WAIT):
    fail("the sniffer did not start")


def solicit(target):
    # scapy's getmacbyip6/neighsol find no route for the solicited-node
    # group here; the solicitation is built by hand (hop limit 255).
    group = in6_getnsma(socket.inet_pton(socket.AF_INET6, target))
    ns = (Ether(src=ours, dst=in6_getnsmac(group))
          / IPv6(src=src, dst=socket.inet_ntop(socket.AF_INET6, group), hlim=255)
          / ICMPv6ND_NS(tgt=target) / ICMPv6NDOptSrcLLAddr(lladdr=ours))
    na = srp1(ns, iface=iface, timeout=3, retry=2)
    return na[ICMPv6NDOptDstLLAddr].lladdr if na and ICMPv6NDOptDstLLAddr in na else None


on_cpu(cpu_first)
ours = get_if_hwaddr(iface)
mac = solicit(dst) if v6 else getmacbyip(dst)
if mac is None:
    fail("no neighbour answer for the gateway's address")
l3 = IPv6(src=src, dst=dst) if v6 else IP(src=src, dst=dst)
base = Ether(src=ours, dst=mac) / l3


def seg(flags, seq, ack=0, data=b"", **kw):
    return base / TCP(sport=sport, dport=port, flags=flags, seq=w(seq),
                      ack=w(ack), window=65535, **kw) / data


def summary(p):
    t = p[TCP]
    return {"flags": str(t.flags), "seq": t.seq, "ack": t.ack, "len": len(t.payload)}


def next_reply(deadline, what):
    left = deadline - time.monotonic()
    if left <= 0:
        fail(f"no {what} within {WAIT} s")
    try:
        p = replies.get(timeout=left)
    except queue.Empty:
        fail(f"no {what} within {WAIT} s")
    if "R" in str(p[TCP].flags):
        fail(f"reset while waiting for {what}: {summary(p)}")
    return p


# Handshake.
sendp(seg("S", isn, options=[("MSS", 1400)]), iface=iface)
deadline = time.monotonic() + WAIT
while True:
    p = next_reply(deadline, "SYN-ACK")
    if str(p[TCP].flags) == "SA" and p[TCP].ack == w(isn + 1):
        break
rcv = p[TCP].seq + 1
snd = isn + 1
sendp(seg("A", snd, rcv), iface=iface)

# The request; the response and the gateway's FIN, in order.
request = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
sendp(seg("PA", snd, rcv, request), iface=iface)
snd += len(request)
body = b""
gw_fin = None
deadline = time.monotonic() + WAIT
while gw_fin is None:
    p = next_reply(deadline, "the response and the gateway's FIN")
    t = p[TCP]
    if t.seq != w(rcv):
        continue  # a retransmission of what we have
    data = bytes(t.payload)
    body += data
    rcv += len(data)
    if "F" in str(t.flags):
        gw_fin = rcv
        rcv += 1
if not body.startswith(b"HTTP/1.1 200 "):
    fail(f"unexpected response {body!r}")

# ACK the gateway's FIN, then our own FIN; the gateway's ACK of it means
# it has both FINs: TIME_WAIT.
sendp(seg("A", snd, rcv), iface=iface)
fin = seg("FA", snd, rcv)
fin_seq = snd
sendp(fin, iface=iface)
deadline = time.monotonic() + WAIT
while True:
    p = next_reply(deadline, "the ACK of our FIN")
    if p[TCP].ack == w(fin_seq + 1):
        break
print(json.dumps({"closed": {"sport": sport, "fin_seq": w(fin_seq),
                             "gw_fin_seq": w(gw_fin), "ack": summary(p)}}),
      flush=True)

if sys.stdin.readline().strip() != "go":
    fail("expected 'go' on stdin")
# Anything the gateway sent since (it should have sent nothing) is reported.
early = []
while not replies.empty():
    early.append(summary(replies.get()))

# The same FIN, byte for byte, from the other CPU: the other RX queue.
on_cpu(cpu_retx)
sendp(fin, iface=iface)
got = []
try:
    got.append(replies.get(timeout=WAIT))
except queue.Empty:
    fail(f"no answer to the retransmitted FIN within {WAIT} s")
deadline = time.monotonic() + 2.0
while (left := deadline - time.monotonic()) > 0:
    try:
        got.append(replies.get(timeout=left))
    except queue.Empty:
        break
sniffer.stop()
print(json.dumps({"replies": [summary(p) for p in got], "early": early}), flush=True)
