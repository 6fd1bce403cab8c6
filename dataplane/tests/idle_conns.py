"""Opens N keep-alive connections to the gateway, makes one request on each,
then holds them idle until stdin closes (the Rust test reads the gateway's
counters meanwhile). Modes: tls (TLS 1.3 + HTTP/1.1), h1 (plaintext
HTTP/1.1), h2c (HTTP/2 with prior knowledge, via Debian's python3-h2).
Run with /usr/bin/python3. Prints "ready N" once every connection has its
response."""
import socket
import ssl
import sys

import h2.connection
import h2.events

n, host, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
BODY = 20000
family = socket.AF_INET6 if ":" in host else socket.AF_INET


def read_http1(s):
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("connection closed before the response head")
        got += chunk
    head, body = got.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200"), head
    while len(body) < BODY:
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("connection closed inside the body")
        body += chunk


def h2_get(s):
    c = h2.connection.H2Connection()
    c.initiate_connection()
    c.send_headers(1, [(":method", "GET"), (":path", f"/bytes/{BODY}"),
                       (":scheme", "http"), (":authority", "x")], end_stream=True)
    s.sendall(c.data_to_send())
    got, done = 0, False
    while not done:
        data = s.recv(65536)
        if not data:
            sys.exit("connection closed before the response")
        for ev in c.receive_data(data):
            if isinstance(ev, h2.events.DataReceived):
                got += len(ev.data)
                c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            if isinstance(ev, h2.events.StreamEnded):
                done = True
        s.sendall(c.data_to_send())
    assert got == BODY, got
    return c


ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["http/1.1"])
held = []
for _ in range(n):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect((host, 443 if mode == "tls" else 80))
    if mode == "tls":
        s = ctx.wrap_socket(s, server_hostname="sluice.test")
    if mode == "h2c":
        held.append((s, h2_get(s)))
    else:
        s.sendall(f"GET /bytes/{BODY} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        read_http1(s)
        held.append((s, None))
print(f"ready {len(held)}", flush=True)
sys.stdin.read()
