#!/usr/bin/env python3
"""The zcp example service: a small HTTP server with /health and /version.

Configuration (environment, set by the process manager):
  APP_PORT   TCP port to listen on (default 8080); each instance of a local fleet has its own
  APP_BIND   address to bind (default 127.0.0.1; 0.0.0.0 behind a load balancer)
  APP_NAME   name reported by /version (default zcp-example)

The version is read from the file VERSION in the release root, which the packaging step
writes; without it, the release directory's name (releases/<version>) is used, and "dev"
when the app runs from a checkout.

A release whose root holds a file named BROKEN starts normally but answers 503 on /health:
the switch tests and the demo use to see a release fail its health check and roll back.

GET /slow?ms=N answers after N milliseconds (at most 10000): a request that is still in
flight when the process is told to stop.

Shutdown is graceful: on SIGTERM (what supervisor and systemd send) the server stops
accepting connections, lets every request already accepted finish, then exits 0. Behind a
load balancer that drained the instance first, a restart therefore drops no request.
"""
import json
import os
import pathlib
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RELEASE_ROOT = pathlib.Path(__file__).resolve().parent

try:
    import zcp_example_dep

    DEPENDENCY = zcp_example_dep.__version__
except ImportError:  # running from a checkout without the release's virtual environment
    DEPENDENCY = None


def read_version() -> str:
    version_file = RELEASE_ROOT / "VERSION"
    if version_file.is_file():
        text = version_file.read_text(encoding="utf-8").strip()
        if text:
            return text
    if RELEASE_ROOT.parent.name == "releases":
        return RELEASE_ROOT.name
    return "dev"


VERSION = read_version()
BROKEN = (RELEASE_ROOT / "BROKEN").exists()
APP_NAME = os.environ.get("APP_NAME", "zcp-example")


SLOW_MAX_MS = 10000


class Handler(BaseHTTPRequestHandler):
    server_version = "zcp-example"
    # A client that connects and sends nothing must not hold up a graceful shutdown forever.
    timeout = 10

    def do_GET(self) -> None:  # noqa: N802 (the http.server naming)
        path = self.path.split("?", 1)[0]
        if path == "/health":
            if BROKEN:
                self.reply(503, {"status": "broken", "version": VERSION})
            else:
                self.reply(200, {"status": "ok", "version": VERSION})
        elif path == "/slow":
            query = self.path.partition("?")[2]
            params = dict(p.partition("=")[::2] for p in query.split("&") if p)
            try:
                ms = min(max(int(params.get("ms", "0")), 0), SLOW_MAX_MS)
            except ValueError:
                self.reply(400, {"error": "ms must be a whole number"})
                return
            time.sleep(ms / 1000)
            self.reply(200, {"status": "ok", "version": VERSION, "slept_ms": ms})
        elif path == "/version":
            self.reply(
                200,
                {
                    "app": APP_NAME,
                    "version": VERSION,
                    "dependency": DEPENDENCY,
                    "release": str(RELEASE_ROOT),
                    "pid": os.getpid(),
                },
            )
        else:
            self.reply(404, {"error": "not found"})

    def reply(self, status: int, body: dict) -> None:
        data = (json.dumps(body) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        # Health checks poll often; only errors are worth a log line.
        if len(args) > 1 and str(args[1]).startswith(("4", "5")):
            sys.stderr.write("%s %s\n" % (self.address_string(), format % args))


def main() -> int:
    port = int(os.environ.get("APP_PORT", "8080"))
    bind = os.environ.get("APP_BIND", "127.0.0.1")
    server = ThreadingHTTPServer((bind, port), Handler)
    # Non-daemon request threads, joined by server_close(): a request accepted before SIGTERM
    # is answered before the process exits.
    server.daemon_threads = False
    server.block_on_close = True

    def stop(_signum, _frame) -> None:
        # shutdown() waits for serve_forever() to return, so it cannot run in the signal
        # handler of the thread that is serving.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(
        f"{APP_NAME} {VERSION} listening on {bind}:{port}"
        f" (dependency {DEPENDENCY}, {'BROKEN' if BROKEN else 'healthy'})",
        flush=True,
    )
    server.serve_forever(poll_interval=0.1)
    # Stops listening, then waits for the requests in flight.
    server.server_close()
    print(f"{APP_NAME} {VERSION} stopped after finishing its requests", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
