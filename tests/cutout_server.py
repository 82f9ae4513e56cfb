"""A local cutout service on 127.0.0.1 that renders simulated cutouts, for tests and measurements.

It answers ``GET /cutout.jpg?ra=..&dec=..&size=..`` (also ``width``) with a JPEG whose
pixels are a deterministic function of (ra, dec, size): a coloured elliptical blob on
noise.  ``server.mode`` switches its behaviour: "ok", "slow" (waits ``delay`` s before
answering), "drip" (sends the headers, then the body a byte at a time every ``delay`` s),
"404", "500", "garbage" (200 image/jpeg that is not an image), "html" (200 text/html),
"huge" (an image/jpeg body of ``huge_bytes``), "chunked" (the image gzipped, in chunks).  It counts requests and the most in flight.

    python -m tests.cutout_server --port 8765    # serve until Ctrl-C
"""
from __future__ import annotations

import gzip
import hashlib
import io
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import numpy as np
from PIL import Image

MODES = ("ok", "slow", "drip", "404", "500", "garbage", "html", "huge", "chunked")


def render_cutout(ra: float, dec: float, size: int) -> bytes:
    """JPEG bytes of the simulated cutout at (ra, dec), size x size px (deterministic)."""
    seed = int.from_bytes(hashlib.sha256(f"{ra:.7f},{dec:.7f}".encode()).digest()[:8], "little")
    rng = np.random.default_rng(seed)
    yy, xx = (np.mgrid[:size, :size] - (size - 1) / 2) / max(size, 1)
    angle, axis = rng.uniform(0, np.pi), rng.uniform(0.3, 1.0)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = (-xx * np.sin(angle) + yy * np.cos(angle)) / axis
    blob = np.exp(-(u ** 2 + v ** 2) / (2 * rng.uniform(0.04, 0.12) ** 2))
    colour = rng.uniform(0.4, 1.0, 3)
    img = blob[..., None] * colour * 230 + rng.normal(12, 4, (size, size, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=88)
    return buf.getvalue()


class CutoutServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.mode, self.delay, self.huge_bytes = "ok", 1.0, 8 * 1024 * 1024
        self.requests: list[str] = []
        self.in_flight = self.max_in_flight = 0
        self.generation = 0  # reset() starts a new one; stragglers of the old one are not counted
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                with server._lock:
                    server.requests.append(self.path)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    generation = server.generation
                try:
                    server._answer(self, generation)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with server._lock:
                        if generation == server.generation:
                            server.in_flight -= 1

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.template = self.base + "/cutout.jpg?ra={ra}&dec={dec}&size={size}&layer={layer}&pixscale={pixscale}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> "CutoutServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def reset(self, mode: str = "ok") -> None:
        assert mode in MODES, mode
        with self._lock:
            self.mode, self.requests, self.max_in_flight, self.in_flight = mode, [], 0, 0
            self.generation += 1

    def _answer(self, h: BaseHTTPRequestHandler, generation: int) -> None:
        mode = self.mode
        if mode in ("404", "500"):
            return self._send(h, int(mode), b"no such cutout", "text/plain")
        if mode == "html":
            return self._send(h, 200, b"<html><body>Service temporarily unavailable</body></html>", "text/html")
        if mode == "garbage":
            return self._send(h, 200, b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8, "image/jpeg")
        if mode == "huge":
            return self._send(h, 200, b"\xff\xd8" + b"\0" * self.huge_bytes, "image/jpeg")
        query = parse_qs(urlparse(h.path).query)
        try:
            ra, dec = float(query["ra"][0]), float(query["dec"][0])
            size = int((query.get("size") or query.get("width"))[0])
        except (KeyError, TypeError, ValueError):
            return self._send(h, 400, b"ra, dec and size are required", "text/plain")
        body = render_cutout(ra, dec, size)
        if mode == "slow":
            time.sleep(self.delay)
        if mode == "chunked":
            data = gzip.compress(body)
            h.send_response(200)
            h.send_header("Content-Type", "image/jpeg")
            h.send_header("Content-Encoding", "gzip")
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            for i in range(0, len(data), 1000):
                h.wfile.write(b"%x\r\n" % len(data[i:i + 1000]) + data[i:i + 1000] + b"\r\n")
            h.wfile.write(b"0\r\n\r\n")
            return
        if mode == "drip":
            h.send_response(200)
            h.send_header("Content-Type", "image/jpeg")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            for i in range(len(body)):
                if generation != self.generation:  # the test that asked has moved on
                    return
                h.wfile.write(body[i:i + 1])
                h.wfile.flush()
                time.sleep(self.delay)
            return
        self._send(h, 200, body, "image/jpeg")

    @staticmethod
    def _send(h, status: int, body: bytes, ctype: str) -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    port = parser.parse_args().port
    srv = CutoutServer(port=port)
    print(f"serving simulated cutouts: {srv.template}")
    try:
        srv.httpd.serve_forever()
    except KeyboardInterrupt:
        srv.httpd.server_close()
