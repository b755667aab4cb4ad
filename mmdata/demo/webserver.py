"""A local image server with injected faults: the demo's web part and the download tests.

It serves on 127.0.0.1 only, so recipes that use it set ``allow_private_networks`` (or
``allowed_networks: [127.0.0.1/32]``) on the download stage.

Every path is one behaviour a crawler meets on the web; ``FAULTS`` maps each to the
reject reason the download stage must give it (None: downloaded).
"""

from __future__ import annotations

import io
import struct
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image

ROBOTS_TXT = b"User-agent: *\nDisallow: /private/\n"

#: path -> expected reject reason (None: a good image).
FAULTS: dict[str, str | None] = {
    "/img/red.jpg": None,
    "/img/green.png": None,
    "/img/blue.webp": None,
    "/status/404": "http_404",
    "/status/500": "http_500",
    "/flaky/429": None,  # 429 the first time, then the image
    "/slow.jpg": "timeout",
    "/truncated.jpg": "truncated",
    "/html-as-jpeg.jpg": "not_an_image",
    "/loop/a": "redirect_loop",
    "/redirect/blocked": "blocked_address",
    "/redirect/ftp": "blocked_scheme",
    "/bomb.png": "decompression_bomb",
    "/huge.jpg": "too_large",
    "/huge-chunked.jpg": "too_large",
    "/noai.jpg": "opt_out",
    "/private/secret.jpg": "robots_disallow",
}


def encoded_image(fmt: str, size: tuple[int, int] = (96, 64), color: str = "red") -> bytes:
    """A real encoded image of ``size`` in Pillow format ``fmt``."""
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, fmt)
    return out.getvalue()


def bomb_png(width_px: int = 40_000, height_px: int = 40_000) -> bytes:
    """A PNG whose header claims ``width x height`` pixels in a few hundred bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width_px, height_px, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (width_px + 1) * 4)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


class FaultHandler(BaseHTTPRequestHandler):
    """Serves FAULTS plus ``/gen/<n>.jpg`` (a distinct image per n), ``/fail-twice/<n>.jpg``
    (503 twice, then that image) and robots.txt."""

    server: FaultServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base name
        """Quiet: tests read the stage's reasons, not the access log."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.server.count(self.path)
        first = self.path.strip("/").split("/")[0].split(".")[0]
        route = getattr(self, "_" + first.replace("-", "_"), None)
        if route is None:
            self._send(404, b"not found", "text/plain")
        else:
            route()

    def _send(self, status: int, body: bytes, kind: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_redirect(self, location: str) -> None:
        self._send(302, b"", "text/plain", {"Location": location})

    def _robots(self) -> None:
        self._send(200, ROBOTS_TXT, "text/plain")

    def _img(self) -> None:
        name = self.path.rsplit("/", 1)[-1]
        color, fmt = name.split(".")
        self._send(
            200,
            encoded_image({"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}[fmt], color=color),
            f"image/{fmt}",
        )

    def _gen(self) -> None:
        """``/gen/<n>.jpg``; ``?q=<quality>`` re-encodes it (same picture, other bytes)."""
        name, _, query = self.path.rsplit("/", 1)[-1].partition("?")
        body = self.server.generated(int(name.split(".")[0]))
        if query.startswith("q="):
            out = io.BytesIO()
            Image.open(io.BytesIO(body)).save(out, "JPEG", quality=int(query[2:]))
            body = out.getvalue()
        self._send(200, body, "image/jpeg")

    def _status(self) -> None:
        self._send(int(self.path.rsplit("/", 1)[-1]), b"error page", "text/html")

    def _flaky(self) -> None:
        if self.server.hits(self.path) == 1:
            self._send(429, b"slow down", "text/plain", {"Retry-After": "0"})
        else:
            self._send(200, encoded_image("JPEG"), "image/jpeg")

    def _fail_twice(self) -> None:
        """``/fail-twice/<n>.jpg``: 503 the first two times each path is asked for, then
        the image of ``/gen/<n>.jpg`` (``mmdata retry``'s tests: a URL that recovers)."""
        if self.server.hits(self.path) <= 2:
            self._send(503, b"try again later", "text/plain")
        else:
            name = self.path.rsplit("/", 1)[-1].partition("?")[0]
            self._send(200, self.server.generated(int(name.split(".")[0])), "image/jpeg")

    def _slow(self) -> None:
        time.sleep(self.server.slow_s)
        self._send(200, encoded_image("JPEG"), "image/jpeg")

    def _truncated(self) -> None:
        body = encoded_image("JPEG", (320, 240))
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.close_connection = True

    def _html_as_jpeg(self) -> None:
        self._send(200, b"<!DOCTYPE html><html><body>Not found</body></html>", "image/jpeg")

    def _loop(self) -> None:
        self._send_redirect("/loop/b" if self.path.endswith("/a") else "/loop/a")

    def _redirect(self) -> None:
        target = {
            "blocked": f"http://127.0.0.2:{self.server.server_port}/img/red.jpg",
            "ftp": "ftp://127.0.0.1/red.jpg",
            # a DNS name, for tests whose resolver sends it somewhere the guard refuses
            # (not in FAULTS: without such a resolver the name does not resolve at all)
            "named": f"http://rebind.test:{self.server.server_port}/img/red.jpg",
        }[self.path.rsplit("/", 1)[-1]]
        self._send_redirect(target)

    def _bomb(self) -> None:
        self._send(200, bomb_png(), "image/png")

    def _huge(self) -> None:
        size = 64 * 1024 * 1024
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        if "chunked" in self.path:  # no Content-Length: only counting the body can tell
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(size))
            self.end_headers()
        try:
            for _ in range(size // 65536):
                self.wfile.write(b"\xff" * 65536)
        except OSError:  # the client hung up once it had seen enough
            self.close_connection = True

    _huge_chunked = _huge

    def _noai(self) -> None:
        self._send(200, encoded_image("JPEG"), "image/jpeg", {"X-Robots-Tag": "noai, noimageai"})

    def _private(self) -> None:
        self._send(200, encoded_image("JPEG"), "image/jpeg")


class FaultServer(ThreadingHTTPServer):
    """The server; ``url(path)`` builds URLs, ``requests`` counts hits per path."""

    daemon_threads = True
    request_queue_size = 1024  # socketserver's 5 drops SYNs under load: clients time out

    def __init__(self, slow_s: float = 3.0, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), FaultHandler)
        self.slow_s = slow_s
        self.requests: dict[str, int] = {}
        self._lock = threading.Lock()
        self._generated: dict[int, bytes] = {}
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def __enter__(self) -> FaultServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients hanging up early is the point of several routes: no tracebacks."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_port}{path}"

    def count(self, path: str) -> None:
        with self._lock:
            self.requests[path] = self.requests.get(path, 0) + 1

    def hits(self, path: str) -> int:
        with self._lock:
            return self.requests.get(path, 0)

    def generated(self, number: int) -> bytes:
        """A distinct real-looking JPEG per number (cached)."""
        if number not in self._generated:
            self._generated[number] = generated_jpeg(number)
        return self._generated[number]


def generated_jpeg(number: int, size: tuple[int, int] = (320, 240)) -> bytes:
    """A photo-like JPEG (gradient plus shapes) that differs for every ``number``."""
    from PIL import ImageDraw

    image = Image.linear_gradient("L").resize(size).convert("RGB")
    draw = ImageDraw.Draw(image)
    for k in range(4):
        seed = number * 7919 + k * 104729
        x, y = seed % size[0], (seed // 7) % size[1]
        color = ((seed * 3) % 256, (seed * 5) % 256, (seed * 11) % 256)
        draw.ellipse([x - 30, y - 30, x + 30, y + 30], fill=color)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()
