"""A small HTTP server on 127.0.0.1 answering from a table of routes: feeds to poll,
services "inside the network" for the SSRF tests."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Route = tuple[int, dict[str, str], str]  # status, headers, body


class RouteServer:
    """GET and POST answered from `routes` by path, `default` for any other path. A
    route with an ETag answers 304 to a request that sends it back in If-None-Match.
    `hits` counts requests per path; `requests` keeps (path, Host header) in order."""

    def __init__(self, routes: dict[str, Route] | None = None, default: Route = (404, {}, "")):
        self.hits: dict[str, int] = {}
        self.requests: list[tuple[str, str]] = []
        table = routes if routes is not None else {}  # the caller may add routes later
        hits, seen = self.hits, self.requests

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                hits[self.path] = hits.get(self.path, 0) + 1
                seen.append((self.path, self.headers.get("Host", "")))
                status, headers, body = table.get(self.path, default)
                etag = headers.get("ETag")
                if etag and self.headers.get("If-None-Match") == etag:
                    status, body = 304, ""
                data = body.encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
