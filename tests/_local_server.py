"""A threaded HTTP server on 127.0.0.1 for the download tests: files the test builds, nothing from the internet.

It can cut a transfer halfway (the connection closes early), honour or ignore ``Range``, and stand in for the
few Hugging Face Hub endpoints ``snapshot_download`` uses (repo info, file tree, ``resolve``), so the real
``huggingface_hub`` code runs against it through ``HF_ENDPOINT``.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

__all__ = ["LocalServer"]


@dataclass
class _File:
    data: bytes
    cut: str = ""  # "": never; "first": the first GET sends half and closes; "always": every GET does
    ignore_range: bool = False
    seconds: float = 0.0  # spread the transfer over about this long (to watch progress in a browser)
    gets: int = 0


@dataclass
class _Repo:
    sha: str
    files: dict[str, bytes] = field(default_factory=dict)


class LocalServer:
    """``with LocalServer() as server: server.add("/a.zip", data); server.url("/a.zip")``."""

    def __init__(self) -> None:
        self.files: dict[str, _File] = {}
        self.repos: dict[str, _Repo] = {}
        self.log: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_HEAD(self) -> None:
                server._handle(self, head=True)

            def do_GET(self) -> None:
                server._handle(self, head=False)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> LocalServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def add(self, path: str, data: bytes, *, cut: str = "", ignore_range: bool = False, seconds: float = 0.0) -> str:
        self.files[path] = _File(data, cut, ignore_range, seconds)
        return self.url(path)

    def add_repo(self, repo_id: str, folder: Path) -> str:
        """Serve every file of ``folder`` as model repo ``repo_id``; returns the commit sha it announces."""
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        sha = hashlib.sha1(repr(sorted(files)).encode()).hexdigest()
        self.repos[repo_id] = _Repo(sha, files)
        return sha

    def ranges(self, path: str) -> list[str | None]:
        return [rng for method, p, rng in self.log if p == path and method == "GET"]

    # ------------------------------------------------------------------------------------------ handling

    def _handle(self, handler: BaseHTTPRequestHandler, *, head: bool) -> None:
        path = handler.path.split("?")[0]
        with self._lock:
            self.log.append(("HEAD" if head else "GET", path, handler.headers.get("Range")))
        if path in self.files:
            return self._send_file(handler, self.files[path], head)
        match = re.match(r"^/api/models/(.+?)(?:/(revision|tree)/([^/]+))?$", path)
        if match and match.group(1) in self.repos:
            repo = self.repos[match.group(1)]
            if match.group(2) != "tree":
                body = {
                    "id": match.group(1),
                    "modelId": match.group(1),
                    "sha": repo.sha,
                    "private": False,
                    "siblings": [{"rfilename": name} for name in repo.files],
                }
            else:
                body = [
                    {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                    for name, data in repo.files.items()
                ]
            return self._send(handler, 200, json.dumps(body).encode(), {"Content-Type": "application/json"}, head)
        match = re.match(r"^/(.+?)/resolve/([^/]+)/(.+)$", path)
        if match and match.group(1) in self.repos and match.group(3) in self.repos[match.group(1)].files:
            repo = self.repos[match.group(1)]
            data = repo.files[match.group(3)]
            headers = {"X-Repo-Commit": repo.sha, "ETag": f'"{hashlib.sha256(data).hexdigest()}"'}
            return self._send(handler, 200, data, headers, head)
        self._send(handler, 404, b'{"error": "not found"}', {"X-Error-Code": "EntryNotFound"}, head)

    def _send(
        self, handler: BaseHTTPRequestHandler, status: int, data: bytes, headers: dict[str, str], head: bool
    ) -> None:
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if not head:
            handler.wfile.write(data)

    def _send_file(self, handler: BaseHTTPRequestHandler, item: _File, head: bool) -> None:
        data = item.data
        start = 0
        match = re.match(r"bytes=(\d+)-$", handler.headers.get("Range") or "")
        if match and not item.ignore_range:
            start = int(match.group(1))
            if start >= len(data):
                handler.send_response(416)
                handler.send_header("Content-Range", f"bytes */{len(data)}")
                handler.send_header("Content-Length", "0")
                handler.end_headers()
                return
            handler.send_response(206)
            handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            handler.send_response(200)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.send_header("Content-Length", str(len(data) - start))
        handler.send_header("Accept-Ranges", "bytes")
        handler.end_headers()
        if head:
            return
        with self._lock:
            item.gets += 1
            cut = item.cut == "always" or (item.cut == "first" and item.gets == 1)
        body = data[start:]
        if cut:
            handler.wfile.write(body[: len(body) // 2])
            handler.wfile.flush()
            handler.close_connection = True
            return
        if not item.seconds:
            handler.wfile.write(body)
            return
        steps = 50
        size = -(-len(body) // steps)
        for offset in range(0, len(body), size):
            handler.wfile.write(body[offset : offset + size])
            time.sleep(item.seconds / steps)
