"""gRPC through the gateway: a grpcio server (backend namespace) and client
(client namespace), raw bytes as messages (no generated code).

  grpc_echo.py server ADDR:PORT   serves /echo.Echo/{Say,Fail,Slow,Count}
  grpc_echo.py client ADDR:PORT   calls each through the gateway, prints a
                                  JSON summary on stdout

Say echoes the request and sets trailing metadata; Fail returns NOT_FOUND
with a message; Slow sleeps 2 s (the gateway's route timeout is shorter);
Count streams 100 messages of 1 KiB.
"""

import json
import sys
import time
from concurrent import futures

import grpc


def say(request, context):
    context.set_trailing_metadata((("x-trailer", "kept"),))
    return request


def fail(request, context):
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")


def slow(request, context):
    time.sleep(2)
    return request


def count(request, context):
    for i in range(100):
        yield bytes([i % 256]) * 1024


def serve(addr):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    handlers = {
        "Say": grpc.unary_unary_rpc_method_handler(say),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
        "Count": grpc.unary_stream_rpc_method_handler(count),
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("echo.Echo", handlers),)
    )
    server.add_insecure_port(addr)
    server.start()
    print("listening on", addr, flush=True)
    server.wait_for_termination()


def client(target):
    out = {}
    with grpc.insecure_channel(target) as ch:
        grpc.channel_ready_future(ch).result(timeout=10)
        say_rpc = ch.unary_unary("/echo.Echo/Say")
        payload = bytes(range(256)) * 400
        ok = 0
        for _ in range(50):
            resp, call = say_rpc.with_call(payload, timeout=10)
            if resp == payload and ("x-trailer", "kept") in call.trailing_metadata():
                ok += 1
        out["say_ok"] = ok
        try:
            ch.unary_unary("/echo.Echo/Fail")(b"x", timeout=10)
            out["fail"] = "OK"
        except grpc.RpcError as e:
            out["fail"] = e.code().name
            out["fail_details"] = e.details()
        started = time.monotonic()
        try:
            ch.unary_unary("/echo.Echo/Slow")(b"x", timeout=10)
            out["slow"] = "OK"
        except grpc.RpcError as e:
            out["slow"] = e.code().name
        out["slow_ms"] = int((time.monotonic() - started) * 1000)
        msgs = list(ch.unary_stream("/echo.Echo/Count")(b"", timeout=10))
        out["count"] = len(msgs)
        out["count_ok"] = all(m == bytes([i % 256]) * 1024 for i, m in enumerate(msgs))
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("server", "client"):
        sys.exit(__doc__)
    (serve if sys.argv[1] == "server" else client)(sys.argv[2])
