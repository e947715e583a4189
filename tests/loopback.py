"""A loopback HTTP server for the download tests: plain files and the few Hugging Face Hub routes
``hf_hub_download`` uses (HEAD/GET ``/{repo}/resolve/{revision}/{file}`` with ``X-Repo-Commit``, ``ETag`` and
``Content-Length``; errors as ``X-Error-Code``). It runs on 127.0.0.1 in a daemon thread; nothing leaves the
machine. ``only_loopback`` refuses every other connection, so a test cannot reach the real network by mistake.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import re
import socket
import threading
from collections.abc import Iterator
from urllib.parse import unquote

_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")


def commit_of(repo: str, revision: str) -> str:
    """The (fake) 40-hex commit a branch or tag of a served repository points to."""
    return hashlib.sha1(f"{repo}@{revision}".encode()).hexdigest()


class Loopback:
    """Serves ``files`` (URL path -> bytes) and ``repos`` (repo id -> revision -> {filename: bytes})."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.repos: dict[str, dict[str, dict[str, bytes]]] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) in arrival order
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add_repo_file(self, repo: str, filename: str, data: bytes, revision: str = "main") -> None:
        self.repos.setdefault(repo, {}).setdefault(revision, {})[filename] = data

    def _lookup(self, repo: str, revision: str) -> tuple[str, dict[str, bytes]] | None:
        for name, content in self.repos.get(repo, {}).items():
            if revision in (name, commit_of(repo, name)):
                return commit_of(repo, name), content
        return None

    def _answer(self, handler: http.server.BaseHTTPRequestHandler, head: bool) -> None:
        self.requests.append((handler.command, handler.path))
        path = handler.path.split("?", 1)[0]
        headers: dict[str, str] = {}
        body: bytes | None = None
        status = 404
        match = _RESOLVE.match(path)
        if path in self.files:
            status, body = 200, self.files[path]
        elif match is not None:
            repo, rev, name = unquote(match["repo"]), unquote(match["rev"]), unquote(match["file"])
            found = self._lookup(repo, rev)
            if repo not in self.repos:
                status, headers["X-Error-Code"] = 401, "RepoNotFound"
            elif found is None:
                headers["X-Error-Code"] = "RevisionNotFound"
            elif name not in found[1]:
                headers.update({"X-Error-Code": "EntryNotFound", "X-Repo-Commit": found[0]})
            else:
                status, body = 200, found[1][name]
                headers.update({"X-Repo-Commit": found[0], "ETag": f'"{hashlib.sha256(body).hexdigest()}"'})
        handler.send_response(status)
        payload = body if body is not None else b"not found"
        headers.update({"Content-Length": str(len(payload)), "Content-Type": "application/octet-stream"})
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.end_headers()
        if not head:
            handler.wfile.write(payload)

    @contextlib.contextmanager
    def running(self) -> Iterator[Loopback]:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                owner._answer(self, head=False)

            def do_HEAD(self) -> None:  # noqa: N802
                owner._answer(self, head=True)

            def log_message(self, *args) -> None:  # keep test output clean
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.timeout = 5
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True
        self._thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=10)


@contextlib.contextmanager
def only_loopback() -> Iterator[None]:
    """Refuse every socket connection that is not to 127.0.0.1 / ::1 (for the duration)."""
    real_connect = socket.socket.connect

    def connect(sock: socket.socket, address) -> None:
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise OSError(f"test refused a connection to {address!r}: tests never use the network")
        return real_connect(sock, address)

    socket.socket.connect = connect  # type: ignore[method-assign]
    try:
        yield
    finally:
        socket.socket.connect = real_connect  # type: ignore[method-assign]
