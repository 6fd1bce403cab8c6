#!/usr/bin/python3
"""Request trailers through the gateway, for dataplane/tests/proxy.rs.

Run by the test with Debian's /usr/bin/python3 (python3-h2 and its hpack)
inside the client namespace, against sluice's plain listener (h2c by prior
knowledge, or HTTP/1.1). One POST per case, each on its own connection:

  h2:PATH     HTTP/2, body in DATA frames (as the flow-control windows
              allow, reading the echo meanwhile), then a trailing HEADERS
              frame with END_STREAM; no content-length
  h2-cl:PATH  the same with a content-length in the request head
  h1:PATH     HTTP/1.1, a chunked body, then trailer fields after the last
              chunk (raw socket: curl cannot send request trailers)

The request trailers are always

    x-sum: <sum of the body's bytes>
    content-length: 99        (a framing field: must not reach the backend)
    host: evil.example        (a routing field: must not either)

(HTTP/2: lowercase, as HTTP/2 requires). Prints one JSON object on stdout,
keyed by case: status, informational statuses, response headers, body_ok
(the response body equals the request body), body_len, response trailers
([name, value] pairs, names lowercased), chunked (HTTP/1.1: the response
was chunked), or "error" for a case that failed outright. Every socket
operation is bounded (--timeout); the test decides what must hold.
"""

import argparse
import json
import socket
import sys
import threading

import h2.config
import h2.connection
import h2.events


def body_for(n):
    # Reproducible bytes of every value.
    x = 0x2545F4914F6CDD1D
    out = bytearray(n)
    for i in range(n):
        x ^= (x << 13) & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 7
        x ^= (x << 17) & 0xFFFFFFFFFFFFFFFF
        out[i] = x & 0xFF
    return bytes(out)


def request_trailers(body):
    return [
        ("x-sum", str(sum(body))),
        ("content-length", "99"),
        ("host", "evil.example"),
    ]


def h2_case(host, port, path, with_length, body, timeout):
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.settimeout(timeout)
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
    )
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    sid = conn.get_next_available_stream_id()
    head = [
        (":method", "POST"),
        (":path", path),
        (":scheme", "http"),
        (":authority", host),
        ("content-type", "application/x-trailers-test"),
    ]
    if with_length:
        head.append(("content-length", str(len(body))))
    conn.send_headers(sid, head)
    res = {"status": None, "informational": [], "headers": [], "trailers": []}
    data = bytearray()
    sent, trailers_sent, ended = 0, False, False
    while not ended:
        while sent < len(body):
            n = min(
                conn.local_flow_control_window(sid),
                conn.max_outbound_frame_size,
                len(body) - sent,
            )
            if n <= 0:
                break
            conn.send_data(sid, body[sent : sent + n])
            sent += n
        if sent == len(body) and not trailers_sent:
            conn.send_headers(sid, request_trailers(body), end_stream=True)
            trailers_sent = True
        out = conn.data_to_send()
        if out:
            sock.sendall(out)
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed before the response ended")
        for ev in conn.receive_data(chunk):
            if isinstance(ev, h2.events.InformationalResponseReceived):
                res["informational"].append(int(dict(ev.headers)[":status"]))
            elif isinstance(ev, h2.events.ResponseReceived):
                res["status"] = int(dict(ev.headers)[":status"])
                res["headers"] = [[n, v] for n, v in ev.headers]
            elif isinstance(ev, h2.events.DataReceived):
                data += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.TrailersReceived):
                res["trailers"] = [[n, v] for n, v in ev.headers]
            elif isinstance(ev, h2.events.StreamEnded):
                ended = True
            elif isinstance(ev, h2.events.StreamReset):
                raise RuntimeError(f"stream reset, code {ev.error_code}")
            elif isinstance(ev, h2.events.ConnectionTerminated):
                raise RuntimeError(f"GOAWAY, code {ev.error_code}")
        out = conn.data_to_send()
        if out:
            sock.sendall(out)
    if not trailers_sent:
        raise RuntimeError(f"response ended with {sent} of {len(body)} body bytes sent")
    conn.close_connection()
    try:
        sock.sendall(conn.data_to_send())
    except OSError:
        pass
    sock.close()
    res["body_ok"] = bytes(data) == body
    res["body_len"] = len(data)
    return res


class Reader:
    def __init__(self, sock):
        self.sock, self.buf = sock, bytearray()

    def fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed inside a response")
        self.buf += chunk

    def line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[: i + 2]
                return line.decode("latin-1")
            if len(self.buf) > 64 * 1024:
                raise RuntimeError("line too long")
            self.fill()

    def exact(self, n):
        while len(self.buf) < n:
            self.fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


def fields(reader):
    out = []
    while True:
        line = reader.line()
        if not line:
            return out
        name, _, value = line.partition(":")
        out.append([name.strip().lower(), value.strip()])


def h1_case(host, port, path, body, timeout):
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.settimeout(timeout)
    req = bytearray(
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
        "Content-Type: application/x-trailers-test\r\n"
        "Transfer-Encoding: chunked\r\nTrailer: x-sum\r\n"
        "Connection: close\r\n\r\n".encode()
    )
    for i in range(0, len(body), 16_411):
        piece = body[i : i + 16_411]
        req += b"%x\r\n" % len(piece) + piece + b"\r\n"
    req += b"0\r\n"
    for name, value in request_trailers(body):
        # Mixed case on the wire: field names are case-insensitive.
        req += f"{name.title()}: {value}\r\n".encode()
    req += b"\r\n"
    # The echo streams back while the body goes out: write on a thread.
    failed = []

    def write():
        try:
            sock.sendall(req)
        except OSError as e:
            failed.append(repr(e))

    w = threading.Thread(target=write)
    w.start()
    r = Reader(sock)
    res = {"informational": [], "trailers": [], "chunked": False}
    while True:
        status_line = r.line()
        status = int(status_line.split(" ")[1])
        headers = fields(r)
        if status >= 200:
            break
        res["informational"].append(status)
    res["status"], res["headers"] = status, headers
    hmap = {n: v for n, v in headers}
    data = bytearray()
    if hmap.get("transfer-encoding", "").lower() == "chunked":
        res["chunked"] = True
        while True:
            size = int(r.line().split(";")[0].strip(), 16)
            if size == 0:
                break
            data += r.exact(size)
            if r.exact(2) != b"\r\n":
                raise RuntimeError("chunk not followed by CRLF")
        res["trailers"] = fields(r)
    elif "content-length" in hmap:
        data += r.exact(int(hmap["content-length"]))
    else:
        raise RuntimeError(f"response without framing: {headers}")
    w.join(timeout)
    if failed:
        raise RuntimeError("sending the request: " + failed[0])
    sock.close()
    res["body_ok"] = bytes(data) == body
    res["body_len"] = len(data)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("addr", help="HOST:PORT of the gateway's plain listener")
    ap.add_argument("cases", nargs="+", help="h2:PATH, h2-cl:PATH or h1:PATH")
    ap.add_argument("--size", type=int, default=100_000, help="body bytes")
    ap.add_argument("--timeout", type=float, default=15.0, help="per socket operation, s")
    a = ap.parse_args()
    host, _, port = a.addr.rpartition(":")
    body = body_for(a.size)
    results = {}
    for case in a.cases:
        proto, _, path = case.partition(":")
        try:
            if proto == "h2":
                results[case] = h2_case(host, int(port), path, False, body, a.timeout)
            elif proto == "h2-cl":
                results[case] = h2_case(host, int(port), path, True, body, a.timeout)
            elif proto == "h1":
                results[case] = h1_case(host, int(port), path, body, a.timeout)
            else:
                sys.exit(f"unknown case {case}")
        except Exception as e:  # reported, the test decides
            results[case] = {"error": f"{type(e).__name__}: {e}"}
    results["x-sum"] = str(sum(body))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
