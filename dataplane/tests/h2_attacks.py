#!/usr/bin/python3
"""HTTP/2 abuse client for dataplane/tests/h2_attacks.rs.

Run by the test with Debian's /usr/bin/python3 (python3-h2 4.1.0 and its
hpack) inside the client namespace: one attack per run, against sluice's
h2c listener (--http) or its h2 listener (--tls, ALPN h2). Every loop is
bounded in frames and in time. Prints one line of JSON (the summary the
Rust test parses) on stdout; exits 1 with a message on stderr when an
expectation fails (the JSON then has "ok": false and "error").

Attacks (docs/http2.md, "Protections"):

  ping_flood, settings_flood, window_update_flood, priority_flood,
  unknown_frame_flood, empty_data_flood, empty_headers_flood,
  empty_continuation_flood, continuation_flood, rapid_reset,
  rapid_reset_burst, made_you_reset_window, made_you_reset_length,
  made_you_reset_data, bad_frame_size
      flood (or break the protocol) until the server answers with GOAWAY
      and the expected code (ENHANCE_YOUR_CALM; FRAME_SIZE_ERROR for
      bad_frame_size), then expect its FIN (not a RST) within 5 s.
  stall
      SETTINGS_INITIAL_WINDOW_SIZE 0, GET /bytes/1000000, never open the
      window: expect RST_STREAM CANCEL on that stream between --stall-min
      and --stall-max seconds, and the connection still serving after.
  ping_timeout
      never answer the server's keepalive PING: expect the PING, then the
      connection reset within --ping-timeout-max seconds.
  busy_client
      a well-behaved but chatty client (python-hyper's h2 state machine):
      concurrent downloads, two WINDOW_UPDATEs and a PING per DATA frame,
      PRIORITY with every request, a quarter of the requests cancelled.
      Must never see a GOAWAY; every completed body byte-exact.
"""

import argparse
import json
import socket
import ssl
import struct
import sys
import time
import traceback

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS = 0x0, 0x1, 0x2, 0x3, 0x4
PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0x5, 0x6, 0x7, 0x8, 0x9
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4

NO_ERROR, PROTOCOL_ERROR, FLOW_CONTROL_ERROR = 0x0, 0x1, 0x3
FRAME_SIZE_ERROR, CANCEL, ENHANCE_YOUR_CALM = 0x6, 0x8, 0xB
CODE_NAMES = {
    0x0: "NO_ERROR", 0x1: "PROTOCOL_ERROR", 0x2: "INTERNAL_ERROR",
    0x3: "FLOW_CONTROL_ERROR", 0x4: "SETTINGS_TIMEOUT", 0x5: "STREAM_CLOSED",
    0x6: "FRAME_SIZE_ERROR", 0x7: "REFUSED_STREAM", 0x8: "CANCEL",
    0x9: "COMPRESSION_ERROR", 0xA: "CONNECT_ERROR", 0xB: "ENHANCE_YOUR_CALM",
    0xC: "INADEQUATE_SECURITY", 0xD: "HTTP_1_1_REQUIRED",
}
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
SETTINGS_INITIAL_WINDOW_SIZE = 0x4

# How long the server gets to close after its GOAWAY.
CLOSE_WITHIN = 5.0


class Fail(Exception):
    pass


def frame(ty, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", ty, flags, stream) + payload


def pattern(offset, n):
    """Bytes offset..offset+n of /bytes/N: byte i is i % 251."""
    block = bytes(range(251))
    start = offset % 251
    out = bytearray(block[start:])
    while len(out) < n:
        out += block
    return bytes(out[:n])


class Conn:
    """A raw HTTP/2 client connection: frames out as bytes, frames in parsed
    (9-byte headers), server SETTINGS acknowledged and (unless told not to)
    server PINGs answered."""

    def __init__(self, args):
        self.args = args
        raw = socket.create_connection((args.host, args.port), timeout=5)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if args.tls:
            ctx = ssl.create_default_context(cafile=args.ca)
            ctx.set_alpn_protocols(["h2"])
            self.sock = ctx.wrap_socket(raw, server_hostname=args.sni)
            if self.sock.selected_alpn_protocol() != "h2":
                raise Fail("ALPN did not select h2: %r" % self.sock.selected_alpn_protocol())
        else:
            self.sock = raw
        self.buf = b""
        self.frames = []  # (type, flags, stream, payload)
        self.eof = False
        self.reset = False
        self.eof_at = None
        self.send_error = None
        self.answer_pings = True
        # Frames (or frame groups: a request and its RST_STREAM) sent.
        self.sent_frames = 0
        self.enc = hpack.Encoder()
        self.goaway_at = None
        self.reset_error = None
        # Streams whose response HEADERS arrived.
        self.answered = set()

    def send(self, data, frames=1):
        if self.eof or self.reset or self.send_error:
            return False
        try:
            self.sock.sendall(data)
            self.sent_frames += frames
            return True
        except OSError as e:  # EPIPE, ECONNRESET, a TLS error
            self.send_error = repr(e)
            return False

    def closed(self):
        return self.eof or self.reset

    def pump(self, timeout):
        """Reads what arrives within `timeout` (at least one attempt), and
        returns once something came and nothing more is waiting."""
        deadline = time.monotonic() + timeout
        got = False
        while not self.closed():
            # Once data came, only what is already there.
            wait = 0.001 if got else deadline - time.monotonic()
            self.sock.settimeout(max(wait, 0.001))
            try:
                chunk = self.sock.recv(65536)
            except (socket.timeout, TimeoutError, ssl.SSLWantReadError):
                break
            except OSError as e:  # ECONNRESET, or a TLS error
                self.reset = True
                self.reset_error = repr(e)
                self.eof_at = time.monotonic()
                break
            if not chunk:
                self.eof = True
                self.eof_at = time.monotonic()
                break
            got = True
            self.buf += chunk
            self.parse()

    def parse(self):
        while len(self.buf) >= 9:
            n = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + n:
                return
            ty, flags, stream = struct.unpack(">BBI", self.buf[3:9])
            payload = self.buf[9:9 + n]
            self.buf = self.buf[9 + n:]
            stream &= 0x7FFFFFFF
            self.frames.append((ty, flags, stream, payload))
            if ty == SETTINGS and not flags & ACK:
                self.send(frame(SETTINGS, ACK, 0))
            elif ty == PING and not flags & ACK and self.answer_pings:
                self.send(frame(PING, ACK, 0, payload))
            elif ty == GOAWAY and self.goaway_at is None:
                self.goaway_at = time.monotonic()
            elif ty == HEADERS:
                self.answered.add(stream)

    def wait(self, pred, timeout):
        deadline = time.monotonic() + timeout
        while not pred() and not self.closed() and time.monotonic() < deadline:
            self.pump(min(0.2, deadline - time.monotonic()))
        return pred()

    def goaway(self):
        for ty, _, _, p in self.frames:
            if ty == GOAWAY:
                last, code = struct.unpack(">II", p[:8])
                return last & 0x7FFFFFFF, code
        return None

    def count(self, ty, code=None):
        return sum(
            1 for t, _, _, p in self.frames
            if t == ty and (code is None or struct.unpack(">I", p[:4])[0] == code)
        )

    def handshake(self):
        """Preface and an empty SETTINGS; waits for the server's SETTINGS
        and its ACK of ours."""
        self.send(PREFACE + frame(SETTINGS, 0, 0), frames=1)
        ok = self.wait(
            lambda: any(t == SETTINGS and f & ACK for t, f, _, _ in self.frames)
            and any(t == SETTINGS and not f & ACK for t, f, _, _ in self.frames),
            5.0,
        )
        if not ok:
            raise Fail("no SETTINGS exchange with the server: %s" % self.describe())

    def headers(self, stream, method, path, end_stream=True, extra=(), end_headers=True):
        block = self.enc.encode(
            [(":method", method), (":scheme", "https" if self.args.tls else "http"),
             (":authority", self.args.sni), (":path", path)] + list(extra)
        )
        flags = (END_STREAM if end_stream else 0) | (END_HEADERS if end_headers else 0)
        return frame(HEADERS, flags, stream, block)

    def describe(self):
        kinds = {}
        for ty, _, _, _ in self.frames:
            kinds[ty] = kinds.get(ty, 0) + 1
        return "frames in by type %s, eof %s, reset %s (%s), send error %s" % (
            kinds, self.eof, self.reset, self.reset_error, self.send_error)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def flood(conn, frames, batch, pause=0.0):
    """Sends `frames` (a list of bytes, one frame or frame group each) in
    batches until the server answers with a GOAWAY or closes."""
    for i in range(0, len(frames), batch):
        if not conn.send(b"".join(frames[i:i + batch]), frames=len(frames[i:i + batch])):
            break
        conn.pump(pause)
        if conn.goaway() or conn.closed():
            break


def expect_goaway_and_close(conn, code, started):
    """A GOAWAY with `code`, then the server's FIN within CLOSE_WITHIN."""
    conn.wait(lambda: conn.goaway() is not None, 10.0)
    g = conn.goaway()
    if g is None:
        raise Fail("no GOAWAY after %d sent: %s" % (conn.sent_frames, conn.describe()))
    if g[1] != code:
        raise Fail("GOAWAY %s, expected %s (%s)" % (
            CODE_NAMES.get(g[1], g[1]), CODE_NAMES[code], conn.describe()))
    conn.wait(lambda: False, CLOSE_WITHIN)
    if conn.reset:
        raise Fail("the connection was reset after the GOAWAY instead of closed: %s" % conn.describe())
    if not conn.eof:
        raise Fail("the connection was still open %.0f s after the GOAWAY: %s" % (
            CLOSE_WITHIN, conn.describe()))
    return {
        "goaway": CODE_NAMES.get(g[1], g[1]),
        "goaway_last_stream": g[0],
        "close": "eof",
        "goaway_after_s": round(conn.goaway_at - started, 3),
        "close_after_goaway_s": round(conn.eof_at - conn.goaway_at, 3),
    }


def run_flood(args, build, batch, code=ENHANCE_YOUR_CALM, pause=0.0):
    """A connection, then the frames `build(conn)` makes, `batch` a write
    (and a read of at least `pause` s between writes)."""
    conn = Conn(args)
    conn.handshake()
    started = time.monotonic()
    flood(conn, build(conn), batch, pause)
    res = expect_goaway_and_close(conn, code, started)
    res["sent"] = conn.sent_frames
    res["rst_stream_in"] = conn.count(RST_STREAM)
    for rst in (PROTOCOL_ERROR, FLOW_CONTROL_ERROR, CANCEL):
        res["rst_stream_" + CODE_NAMES[rst]] = conn.count(RST_STREAM, rst)
    conn.close()
    return res


def a_ping_flood(args):
    n = args.count or 1000
    return run_flood(args, lambda c: [frame(PING, 0, 0, struct.pack(">Q", i)) for i in range(n)], 50)


def a_settings_flood(args):
    n = args.count or 200
    one = struct.pack(">HI", SETTINGS_MAX_CONCURRENT_STREAMS, 100)
    return run_flood(args, lambda c: [frame(SETTINGS, 0, 0, one)] * n, 10)


def a_window_update_flood(args):
    n = args.count or 2000
    return run_flood(args, lambda c: [frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1))] * n, 100)


def a_priority_flood(args):
    n = args.count or 2000
    # PRIORITY for idle streams, each on the root with weight 16.
    return run_flood(
        args,
        lambda c: [frame(PRIORITY, 0, 2 * i + 1, struct.pack(">IB", 0, 15)) for i in range(n)],
        100,
    )


def a_unknown_frame_flood(args):
    n = args.count or 2000
    # Unknown extension frames (type 0xfa), which RFC 9113 says to ignore.
    return run_flood(args, lambda c: [frame(0xFA, 0, 0, b"x" * 8)] * n, 100)


def a_empty_data_flood(args):
    n = args.count or 200

    def build(c):
        # An upload whose body is nothing but empty DATA frames.
        return [c.headers(1, "POST", "/echo", end_stream=False)] + [frame(DATA, 0, 1)] * n

    return run_flood(args, build, 20)


def a_empty_headers_flood(args):
    n = args.count or 200
    # HEADERS frames with an empty header block (zero-length headers,
    # CVE-2019-9516), each on a new stream.
    return run_flood(args, lambda c: [frame(HEADERS, END_HEADERS, 2 * i + 1) for i in range(n)], 20)


def a_empty_continuation_flood(args):
    n = args.count or 200

    def build(c):
        first = c.headers(1, "GET", "/health", end_stream=True, end_headers=False)
        return [first] + [frame(CONTINUATION, 0, 1)] * n

    return run_flood(args, build, n + 1)


def a_continuation_flood(args):
    n = args.count or 200

    def build(c):
        # A header block that never ends (CVE-2024-27316 and kin): one-byte
        # fragments, each a CONTINUATION without END_HEADERS.
        first = c.headers(1, "GET", "/health", end_stream=True, end_headers=False)
        return [first] + [frame(CONTINUATION, 0, 1, b"\x40")] * n

    return run_flood(args, build, 10)


def a_rapid_reset(args):
    """Requests cancelled as soon as they are answered: each stream is
    accepted (its response HEADERS arrive) before its RST_STREAM, so h2's
    queue of streams reset before they were accepted (20) stays empty and
    only sluice's reset rate can catch it."""
    n = args.count or 1000
    conn = Conn(args)
    conn.handshake()
    started = time.monotonic()
    deadline = started + 20
    for i in range(n):
        sid = 2 * i + 1
        if not conn.send(conn.headers(sid, "GET", "/bytes/1000000")):
            break
        conn.wait(lambda: sid in conn.answered or conn.goaway() is not None, 5.0)
        if conn.goaway() or conn.closed() or time.monotonic() > deadline:
            break
        if sid not in conn.answered:
            raise Fail("request %d was not answered within 5 s: %s" % (sid, conn.describe()))
        conn.send(frame(RST_STREAM, 0, sid, struct.pack(">I", CANCEL)))
    res = expect_goaway_and_close(conn, ENHANCE_YOUR_CALM, started)
    res["sent"] = conn.sent_frames
    conn.close()
    return res


def a_rapid_reset_burst(args):
    """CVE-2023-44487 as published: request and RST_STREAM pairs in one
    write, none waiting for an answer. Whichever bound sees it first ends
    it: sluice's reset rate, or h2's queue of reset streams."""
    n = args.count or 300

    def build(c):
        return [c.headers(2 * i + 1, "GET", "/bytes/1000000")
                + frame(RST_STREAM, 0, 2 * i + 1, struct.pack(">I", CANCEL)) for i in range(n)]

    return run_flood(args, build, n)


def made_you_reset(args, one, code):
    """MadeYouReset (CVE-2025-8671): requests the server must reset
    (`one(conn, stream)` makes one), ten a write; the server's RST_STREAMs
    must carry `code` until its reset rate ends the connection."""
    n = args.count or 1000
    res = run_flood(args, lambda c: [one(c, 2 * i + 1) for i in range(n)], 10, pause=0.003)
    if res["rst_stream_in"] == 0 or res["rst_stream_in"] != res["rst_stream_" + CODE_NAMES[code]]:
        raise Fail("expected RST_STREAM %s for every stream: %s" % (CODE_NAMES[code], res))
    return res


def a_made_you_reset_window(args):
    # A request, then a WINDOW_UPDATE that overflows its send window
    # (65535 + 2^31-1): FLOW_CONTROL_ERROR on the stream (RFC 9113 §6.9.1).
    return made_you_reset(args, lambda c, sid: c.headers(sid, "GET", "/bytes/1000000")
                          + frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", 0x7FFFFFFF)),
                          FLOW_CONTROL_ERROR)


def a_made_you_reset_length(args):
    # content-length 5, body 3 bytes: malformed (RFC 9113 §8.1.1),
    # PROTOCOL_ERROR on the stream.
    return made_you_reset(args, lambda c, sid: c.headers(
        sid, "POST", "/echo", end_stream=False, extra=[("content-length", "5")])
        + frame(DATA, END_STREAM, sid, b"abc"), PROTOCOL_ERROR)


def a_made_you_reset_data(args):
    # An upload whose first DATA frame is one byte more than the stream
    # window the server advertised (--stream-window, the server's
    # --h2-stream-window): FLOW_CONTROL_ERROR on the stream (§6.9.1).
    over = args.stream_window + 1
    return made_you_reset(args, lambda c, sid: c.headers(sid, "POST", "/echo", end_stream=False)
                          + frame(DATA, 0, sid, b"u" * over), FLOW_CONTROL_ERROR)


def a_bad_frame_size(args):
    # A PING with a 7-byte payload: FRAME_SIZE_ERROR (RFC 9113 §6.7).
    return run_flood(args, lambda c: [frame(PING, 0, 0, b"1234567")], 1, code=FRAME_SIZE_ERROR)


def a_ping_timeout(args):
    conn = Conn(args)
    conn.answer_pings = False
    conn.handshake()
    started = time.monotonic()
    got_ping = conn.wait(
        lambda: any(t == PING and not f & ACK for t, f, _, _ in conn.frames),
        args.ping_timeout_max,
    )
    if not got_ping:
        raise Fail("no keepalive PING from the server within %s s: %s" % (
            args.ping_timeout_max, conn.describe()))
    ping_at = time.monotonic() - started
    conn.wait(lambda: False, args.ping_timeout_max)
    if not conn.closed():
        raise Fail("an unanswered PING did not end the connection within %s s: %s" % (
            args.ping_timeout_max, conn.describe()))
    if not conn.reset:
        # docs/http2.md: the peer is gone, a GOAWAY would not arrive.
        raise Fail("expected a reset after the unanswered PING: %s" % conn.describe())
    res = {
        "ping_after_s": round(ping_at, 3),
        "close": "reset" if conn.reset else "eof",
        "closed_after_ping_s": round(conn.eof_at - started - ping_at, 3),
        "goaway": CODE_NAMES.get(conn.goaway()[1]) if conn.goaway() else None,
    }
    conn.close()
    return res


class H2Client:
    """python-hyper's h2 state machine over a socket (kernel TCP or TLS)."""

    def __init__(self, args, settings=None):
        self.raw = Conn(args)
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.h2 = h2.connection.H2Connection(config=cfg)
        if settings:
            self.h2.local_settings = h2.settings.Settings(client=True, initial_values=settings)
        self.h2.initiate_connection()
        self.events = []
        self.flush()

    def flush(self):
        data = self.h2.data_to_send()
        if data:
            self.raw.send(data)

    def pump(self, timeout):
        self.raw.sock.settimeout(max(timeout, 0.01))
        try:
            chunk = self.raw.sock.recv(65536)
        except (socket.timeout, TimeoutError, ssl.SSLWantReadError):
            return []
        except OSError as e:  # ECONNRESET, or a TLS error
            self.raw.reset = True
            self.raw.reset_error = repr(e)
            return []
        if not chunk:
            self.raw.eof = True
            return []
        evs = self.h2.receive_data(chunk)
        self.events.extend(evs)
        self.flush()
        return evs

    def request(self, method, path, end_stream=True, priority=False):
        sid = self.h2.get_next_available_stream_id()
        if priority:
            # A PRIORITY frame ahead of the request, as browsers did.
            self.h2.prioritize(sid, weight=32)
        self.h2.send_headers(sid, [
            (":method", method), (":scheme", "https" if self.raw.args.tls else "http"),
            (":authority", self.raw.args.sni), (":path", path)], end_stream=end_stream)
        self.flush()
        return sid


def a_stall(args):
    c = H2Client(args, {SETTINGS_INITIAL_WINDOW_SIZE: 0})
    started = time.monotonic()
    sid = c.request("GET", "/bytes/1000000")
    status = None
    reset = None
    deadline = started + args.stall_max
    while time.monotonic() < deadline and reset is None and not c.raw.closed():
        for ev in c.pump(0.5):
            if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                status = dict(ev.headers).get(":status")
            elif isinstance(ev, h2.events.DataReceived):
                raise Fail("DATA on stream %d through a zero window" % ev.stream_id)
            elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                reset = (ev.error_code, time.monotonic() - started)
            elif isinstance(ev, h2.events.ConnectionTerminated):
                raise Fail("GOAWAY %s instead of a stream reset" % ev.error_code)
    if status != "200":
        raise Fail("no 200 head for the stalled stream (got %r)" % status)
    if reset is None:
        raise Fail("the stalled stream was not reset within %s s (closed %s)" % (
            args.stall_max, c.raw.closed()))
    code, after = reset
    if code != CANCEL:
        raise Fail("stalled stream reset with %s, expected CANCEL" % CODE_NAMES.get(code, code))
    if after < args.stall_min:
        raise Fail("stalled stream reset after %.1f s, before the stall limit (%s s)" % (
            after, args.stall_min))
    # The connection carries on: open the window, ask again.
    c.h2.update_settings({SETTINGS_INITIAL_WINDOW_SIZE: 65535})
    c.flush()
    sid2 = c.request("GET", "/health")
    body, ended = b"", False
    deadline = time.monotonic() + 5
    while not ended and time.monotonic() < deadline and not c.raw.closed():
        for ev in c.pump(0.2):
            if isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid2:
                body += ev.data
                c.h2.acknowledge_received_data(ev.flow_controlled_length, sid2)
            elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid2:
                ended = True
        c.flush()
    if body != b"ok\n":
        raise Fail("the connection did not serve /health after the reset: %r" % body)
    # Closed without a GOAWAY (as curl does), so that the server has no
    # GOAWAY to answer while the test counts those of the other attacks.
    c.raw.close()
    return {"reset": "CANCEL", "reset_after_s": round(after, 3)}


def a_no_read(args):
    """Opens every window, asks for 10 GB, then never reads: the server's
    output backs up until its send timeout resets the connection. PINGs
    every half second keep input flowing (so no idle or keepalive timer
    is what ends it) and tell when the reset came (a send fails)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect((args.host, args.port))
    c = h2.connection.H2Connection()
    c.initiate_connection()
    c.update_settings({SETTINGS_INITIAL_WINDOW_SIZE: 2**31 - 1})
    c.increment_flow_control_window(2**31 - 1 - 65535)
    c.send_headers(1, [(":method", "GET"), (":path", "/bytes/10000000000"),
                       (":scheme", "http"), (":authority", "sluice.test")], end_stream=True)
    s.sendall(c.data_to_send())
    started = time.monotonic()
    deadline = started + args.stall_max
    while time.monotonic() < deadline:
        time.sleep(0.5)
        try:
            s.send(frame(PING, 0, 0, b"stillhere"[:8]))
        except (ConnectionResetError, BrokenPipeError):
            after = time.monotonic() - started
            if after < args.stall_min:
                raise Fail("reset after %.1f s, before the send timeout (%s s)" % (
                    after, args.stall_min))
            s.close()
            return {"close": "reset", "reset_after_s": round(after, 3)}
    raise Fail("a client that never reads was not reset within %s s" % args.stall_max)


def a_busy_client(args):
    """What a busy, honest client does: downloads with a WINDOW_UPDATE for
    the stream and for the connection and a PING for every DATA frame (as
    BDP probers do), PRIORITY with every request, some cancelled."""
    requests, size, concurrent = args.count or 200, 100_000, 4
    c = H2Client(args)
    started = time.monotonic()
    open_streams = {}
    done = cancelled = pings = 0
    deadline = started + 30
    issued = 0
    while (issued < requests or open_streams) and time.monotonic() < deadline:
        while issued < requests and len(open_streams) < concurrent:
            sid = c.request("GET", "/bytes/%d" % size, priority=True)
            open_streams[sid] = bytearray()
            issued += 1
        if c.raw.closed():
            raise Fail("the server closed the connection of an honest client (%d done)" % done)
        for ev in c.pump(0.2):
            if isinstance(ev, h2.events.DataReceived):
                got = open_streams.get(ev.stream_id)
                n = ev.flow_controlled_length
                if got is None:
                    # Already cancelled: give the connection window back.
                    if n:
                        c.h2.increment_flow_control_window(n)
                    continue
                got += ev.data
                if n:
                    try:
                        c.h2.increment_flow_control_window(n, ev.stream_id)
                    except h2.exceptions.StreamClosedError:
                        pass  # it ended later in the same read
                    c.h2.increment_flow_control_window(n)
                c.h2.ping(struct.pack(">Q", pings))
                pings += 1
                # Cancel every fourth request after its first DATA frame.
                if ev.stream_id % 8 == 7 and len(got) < size:
                    c.h2.reset_stream(ev.stream_id, CANCEL)
                    del open_streams[ev.stream_id]
                    cancelled += 1
            elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id in open_streams:
                got = open_streams.pop(ev.stream_id)
                if bytes(got) != pattern(0, size):
                    raise Fail("/bytes/%d on stream %d differs (%d bytes)" % (
                        size, ev.stream_id, len(got)))
                done += 1
            elif isinstance(ev, h2.events.StreamReset) and ev.stream_id in open_streams:
                raise Fail("the server reset stream %d (%s)" % (ev.stream_id, ev.error_code))
            elif isinstance(ev, h2.events.ConnectionTerminated):
                raise Fail("GOAWAY %s to an honest client after %d responses, %d cancels, %d pings"
                           % (CODE_NAMES.get(ev.error_code, ev.error_code), done, cancelled, pings))
        c.flush()
    if issued < requests or open_streams:
        raise Fail("busy client did not finish in 30 s: %d of %d issued, %d open" % (
            issued, requests, len(open_streams)))
    # Goodbye: our GOAWAY, then the server's answer and its FIN.
    c.h2.close_connection()
    c.flush()
    # h2's state machine takes no frame once closed: the raw parser reads
    # the rest (the ACKs of our last PINGs, the GOAWAY).
    c.raw.wait(lambda: False, CLOSE_WITHIN)
    g = c.raw.goaway()
    answer = CODE_NAMES.get(g[1], g[1]) if g else None
    if g and g[1] != NO_ERROR:
        raise Fail("the server answered our goodbye with GOAWAY %s" % answer)
    if not c.raw.eof:
        raise Fail("the server did not close after our GOAWAY (reset %s)" % c.raw.reset)
    c.raw.close()
    return {"responses": done, "cancelled": cancelled, "pings": pings,
            "goaway_answer": answer}


ATTACKS = {name[2:]: fn for name, fn in globals().items() if name.startswith("a_")}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("attack", choices=sorted(ATTACKS))
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tls", action="store_true", help="TLS with ALPN h2")
    p.add_argument("--ca", help="CA file to verify the server with (--tls)")
    p.add_argument("--sni", default="sluice.test")
    p.add_argument("--count", type=int, default=0, help="frames (or requests) to send at most")
    p.add_argument("--stream-window", type=int, default=4096,
                   help="the server's --h2-stream-window (made_you_reset_data)")
    p.add_argument("--stall-min", type=float, default=25.0)
    p.add_argument("--stall-max", type=float, default=45.0)
    p.add_argument("--ping-timeout-max", type=float, default=10.0)
    args = p.parse_args()
    started = time.monotonic()
    summary = {"attack": args.attack, "tls": args.tls}
    try:
        summary.update(ATTACKS[args.attack](args))
        summary["ok"] = True
    except Fail as e:
        summary.update(ok=False, error=str(e))
    except Exception as e:  # noqa: BLE001 -- any surprise is a failure with its message
        summary.update(ok=False, error="%s: %s" % (type(e).__name__, e))
        traceback.print_exc()
    summary["secs"] = round(time.monotonic() - started, 3)
    print(json.dumps(summary), flush=True)
    if not summary["ok"]:
        print("h2_attacks.py %s: FAILED: %s" % (args.attack, summary["error"]), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
