"""The viewer's HTTP server: read-only, loopback by default, strict headers, bounded requests.

Built on the standard library's :class:`~http.server.ThreadingHTTPServer` (a
viewer for one person needs no asyncio; the demo's own server in
``poetkb/demo/httpserver.py`` is tuned for load instead). What it enforces:

- only GET and HEAD; every other method gets 405 with ``Allow: GET, HEAD``;
- a bounded request line, path and query; request bodies are never read; each
  connection closes after one response and times out when idle; at most
  :data:`MAX_CONCURRENT` requests are served at once;
- the ``Host`` header must name the address served (a web page elsewhere cannot
  reach the viewer through a DNS name rebound to 127.0.0.1);
- every response carries a Content-Security-Policy that lets nothing run and
  nothing load, plus ``nosniff``, ``no-referrer`` and ``no-store``;
- each request opens the knowledge base afresh with ``PRAGMA query_only``, so a
  gate run recorded meanwhile shows up and the viewer cannot write;
- an unknown path or id is a 404 page; anything unexpected is a 500 page that
  says so, with the traceback only on the server's stderr.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from poetkb.errors import EnvironmentProblem, InputError, PoetError
from poetkb.view.evidence import RunCache

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8470
MAX_REQUEST_LINE = 8 * 1024
MAX_PATH = 4 * 1024
MAX_QUERY = 2 * 1024
MAX_QUERY_FIELDS = 16
MAX_CONCURRENT = 16
IDLE_TIMEOUT_S = 15.0
ALLOWED = "GET, HEAD"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ViewServer(ThreadingHTTPServer):
    """Serves the viewer's pages over one knowledge base file."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 32

    def __init__(self, address: tuple[str, int], kb_path: Path, *, allow_remote: bool = False,
                 quiet: bool = False) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.kb_path = Path(kb_path)
        self.allow_remote = allow_remote
        self.quiet = quiet
        self.runs = RunCache()
        self._slots = threading.BoundedSemaphore(MAX_CONCURRENT)
        super().__init__(address, ViewHandler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        host = str(self.server_address[0])
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}/"

    def host_allowed(self, header: str | None) -> bool:
        """The Host header names this server (any name when remote access was allowed)."""
        if self.allow_remote:
            return True
        if not header:
            return False
        name, _, port = header.rpartition(":") if not header.endswith("]") else (header, "", "")
        return port == str(self.port) and is_loopback(name)

    def process_request(self, request: Any, client_address: Any) -> None:
        self._slots.acquire()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class ViewHandler(BaseHTTPRequestHandler):
    """One request: route it, render the page, send it with the security headers."""

    server: ViewServer
    server_version = "poet-view"
    sys_version = ""
    protocol_version = "HTTP/1.0"
    timeout = IDLE_TIMEOUT_S

    def version_string(self) -> str:
        return self.server_version

    def parse_request(self) -> bool:
        if len(self.raw_requestline) > MAX_REQUEST_LINE:
            self.requestline, self.request_version, self.command = "", "HTTP/1.0", ""
            self.send_error(414, "Request line too long")
            return False
        return super().parse_request()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors http.server raises itself (bad request line, 414, 505) as our page, with our headers."""
        self.close_connection = True
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Error"
        self._send(code, self._error_page(code, phrase, message or phrase), head=self.command == "HEAD")

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        self._serve(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(head=True)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):
            return self._not_allowed
        raise AttributeError(name)

    def _not_allowed(self) -> None:
        self._send(405, self._error_page(405, "Method not allowed",
                                         f"{self.command} is not served here: the viewer is read-only ({ALLOWED})."),
                   head=False, extra={"Allow": ALLOWED})

    def _serve(self, *, head: bool) -> None:
        if not self.server.host_allowed(self.headers.get("Host")):
            self._send(400, self._error_page(400, "Unexpected Host", "This viewer answers only requests addressed "
                                             "to the loopback address it listens on."), head=head)
            return
        parts = urlsplit(self.path)
        if len(parts.path) > MAX_PATH or len(parts.query) > MAX_QUERY:
            self._send(414, self._error_page(414, "URI too long", "The address is longer than any page here."),
                       head=head)
            return
        status, body = self._render(parts.path, parts.query)
        self._send(status, body, head=head)

    def _render(self, path: str, query: str) -> tuple[int, str]:
        from poetkb.kb import KnowledgeBase
        from poetkb.view.pages import Context, NotFound, Request, route

        stripped = path.strip("/")
        segments = [unquote(s, errors="replace") for s in stripped.split("/")] if stripped else []
        try:
            args = {k: v[0] for k, v in parse_qs(query, max_num_fields=MAX_QUERY_FIELDS).items()}
        except ValueError:
            return 400, self._error_page(400, "Bad query", "The query string has too many fields.")
        try:
            page = route(segments)
            kb = KnowledgeBase(self.server.kb_path)
            try:
                kb.read_only()
                return 200, page(Context(kb=kb, runs=self.server.runs), Request(segments=segments, query=args))
            finally:
                kb.close()
        except NotFound as exc:
            return 404, self._error_page(404, "Not found", str(exc), suggestions=exc.suggestions)
        except PoetError as exc:
            return 503, self._error_page(503, "Knowledge base unavailable", str(exc))
        except Exception:  # noqa: BLE001 - a page must never show a traceback; the server's stderr gets it
            traceback.print_exc(file=sys.stderr)
            return 500, self._error_page(500, "Internal error", "This page failed to render; this is a bug in "
                                         "poetkb. The server's output has the details.")

    def _error_page(self, status: int, heading: str, message: str, *, suggestions: list[str] | None = None) -> str:
        from poetkb._version import __version__
        from poetkb.view.templating import render

        return render("error.html.j2", section="", status=status, heading=heading, message=message,
                      suggestions=suggestions or [], kb_path=str(self.server.kb_path), version=__version__)

    def _send(self, status: int, body: str, *, head: bool, extra: dict[str, str] | None = None) -> None:
        from poetkb.view.templating import content_security_policy

        data = body.encode("utf-8")
        self.send_response(status)
        headers = {
            "Content-Type": "text/html; charset=utf-8", "Content-Length": str(len(data)),
            "Content-Security-Policy": content_security_policy(), "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY", "Cache-Control": "no-store",
            "Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Resource-Policy": "same-origin",
            "Connection": "close", **(extra or {}),
        }
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the signature http.server calls
        if not self.server.quiet:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")


def make_server(kb_path: Path, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, allow_remote: bool = False,
                quiet: bool = False) -> ViewServer:
    """A bound (not yet serving) viewer; refuses a non-loopback ``host`` unless ``allow_remote``."""
    if not is_loopback(host) and not allow_remote:
        raise InputError(f"{host} is not a loopback address; the viewer shows the whole knowledge base and its "
                         "evidence to whoever can reach it", field="--host",
                         hint="keep the default 127.0.0.1, or pass --allow-remote to serve other machines on purpose")
    try:
        return ViewServer((host.strip("[]"), port), kb_path, allow_remote=allow_remote, quiet=quiet)
    except OSError as exc:
        raise EnvironmentProblem(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                                 hint="pick another port with --port (0 picks a free one)") from exc
