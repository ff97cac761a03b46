"""Rewrite what ties a configuration to its environment, and nothing else.

Through the configuration model (:mod:`poetkb.edgeconfig`) every directive that
names a place outside the run is found by name and source line, and only that
directive's text on its line is replaced:

- upstream servers (NGINX ``server`` in ``upstream``, an address in
  ``proxy_pass``; HAProxy ``server``) -> one instrumented upstream each, so the
  user's balancing, hashing, backup and health settings stay the user's;
- listeners (``listen``, ``bind``) -> free loopback ports (one per original port,
  shared by the virtual hosts that shared it);
- certificates and keys -> test certificates made for the configuration's own
  server names (a leaf-only file stays leaf-only, a chain stays a chain), client
  CAs -> the test CA chain;
- log, cache, temp, pid and socket paths -> the run directory; ``user``,
  ``daemon``, ``pid``, ``chroot`` lines -> set by poetkb for a process on
  loopback; ``resolver`` lines are kept (upstream addresses are literals now).

NGINX ``include`` files are rewritten the same way and written beside the main
copy. Everything else stays byte for byte, and every change is listed as a
:class:`Rewrite` with its file, line, before and after. The user's files are
only read.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ConfigDict, Field

from poetkb.edgeconfig import Directive, EdgeConfig
from poetkb.errors import InputError
from poetkb.models import PoetModel
from poetkb.ownedge.plan import listen_port
from poetkb.safefile import read_text

MAX_CONFIG_BYTES = 4 * 1024 * 1024


class Rewrite(PoetModel):
    """One change: where, the line before and after, and why."""

    file: str
    line: int
    directive: str
    before: str
    after: str
    why: str


class Listener(PoetModel):
    """A listening port of the original configuration and the loopback port it became."""

    model_config = ConfigDict(**{**PoetModel.model_config, "frozen": False})  # filled as listen lines are read

    original: str
    port: int
    tls: bool = False
    mtls: bool = False
    server_names: list[str] = Field(default_factory=list)


class InstrumentedServer(PoetModel):
    """An original upstream server and the instrumented upstream standing in for it."""

    group: str
    original: str
    name: str
    port: int
    backup: bool = False


class Rewritten(PoetModel):
    """The rewritten configuration: its files in the run directory, and what changed."""

    proxy: str
    original: str
    main: str
    files: dict[str, str]
    rewrites: list[Rewrite]
    listeners: list[Listener]
    servers: list[InstrumentedServer]
    access_logs: list[str]
    json_access_log: str | None = None
    server_names: list[str] = Field(default_factory=list)


@dataclass
class Env:
    """Where the rewritten configuration lives and how it gets ports and certificates."""

    run_dir: Path
    alloc_port: Callable[[], int]
    cert: Callable[[bool], tuple[str, str, str]]  # fullchain? -> (cert, key, haproxy pem)
    ca_chain: str
    ports: dict[str, int] = field(default_factory=dict)




def _quote(arg: str) -> str:
    return f'"{arg}"' if re.search(r"[\s;{}#'\"]", arg) or not arg else arg


class _Editor:
    """Line edits of one configuration, recorded as :class:`Rewrite` entries."""

    def __init__(self) -> None:
        self.lines: dict[str, list[str]] = {}
        self.rewrites: list[Rewrite] = []

    def load(self, file: str) -> list[str]:
        if file not in self.lines:
            self.lines[file] = read_text(Path(file), limit=MAX_CONFIG_BYTES).splitlines(keepends=True)
        return self.lines[file]

    def nginx(self, d: Directive, args: list[str] | None, why: str) -> None:
        """Replace the text of NGINX directive ``d`` on its line with ``args`` (None: take it out)."""
        lines = self.load(d.file)
        before = lines[d.line - 1]
        pattern = re.compile(r"(?<![\w$.-])" + re.escape(d.name) + r"(\s[^;{]*)?;")
        match = pattern.search(before)
        if match is None:
            raise InputError(f"cannot rewrite {d.name!r}: the directive does not end on its line", file=d.file,
                             line=d.line, hint="write the directive on one line")
        new = f"{d.name} {' '.join(_quote(a) for a in args)};" if args is not None else ""
        after = before[:match.start()] + new + before[match.end():]
        if args is None:
            after = after.rstrip("\n") + f"  # poet: removed `{match.group(0)}`\n"
        lines[d.line - 1] = after
        self.rewrites.append(Rewrite(file=d.file, line=d.line, directive=d.name, before=before.strip(),
                                     after=after.strip(), why=why))

    def haproxy(self, d: Directive, words: list[str] | None, why: str) -> None:
        """Replace HAProxy line ``d`` with ``words`` (None: comment it out), keeping its indentation."""
        lines = self.load(d.file)
        before = lines[d.line - 1]
        indent = before[: len(before) - len(before.lstrip())]
        end = "\n" if before.endswith("\n") else ""
        after = (indent + " ".join(_quote(w) for w in words) if words is not None
                 else indent + "# poet: removed: " + before.strip()) + end
        lines[d.line - 1] = after
        self.rewrites.append(Rewrite(file=d.file, line=d.line, directive=d.name, before=before.strip(),
                                     after=after.strip(), why=why))


def _server_names(config: EdgeConfig) -> list[str]:
    names: list[str] = []
    if config.proxy == "nginx":
        for d in config.find("server_name"):
            names += [n for n in d.args if n not in names and re.fullmatch(r"[A-Za-z0-9.-]+", n) and "." in n]
    else:
        for d in config.walk():
            for word in d.args:
                for n in re.findall(r"^([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)$", word):
                    if not re.fullmatch(r"[\d.]+", n) and n not in names and d.name == "acl":
                        names.append(n)
    return names


def _cert_is_leaf(path: str) -> bool:
    """A certificate file the user has holds one certificate (leaf only); unknown files count as chains."""
    try:
        text = read_text(Path(path), limit=1024 * 1024)
    except (InputError, OSError):
        return False
    return text.count("BEGIN CERTIFICATE") == 1


def rewrite_config(config: EdgeConfig, env: Env) -> Rewritten:
    """Rewrite ``config`` for the run directory of ``env``; the original files are only read."""
    editor = _Editor()
    result = _nginx(config, env, editor) if config.proxy == "nginx" else _haproxy(config, env, editor)
    return result


# -- NGINX ----------------------------------------------------------------------------------------
_NGINX_PATHS = {
    "client_body_temp_path": "tmp/body", "proxy_temp_path": "tmp/proxy", "fastcgi_temp_path": "tmp/fastcgi",
    "uwsgi_temp_path": "tmp/uwsgi", "scgi_temp_path": "tmp/scgi",
}
_NGINX_DROP = {"user": "set by poetkb for a process on loopback", "daemon": "poetkb runs nginx in the foreground",
               "pid": "the pid file lives in the run directory", "master_process": "poetkb needs the master process",
               "working_directory": "the run directory is the working directory",
               "lock_file": "lives in the run directory"}
_CERT_DIRECTIVES = {"ssl_certificate", "ssl_certificate_key", "ssl_client_certificate", "ssl_trusted_certificate",
                    "ssl_stapling_file", "ssl_dhparam", "ssl_crl", "ssl_password_file", "ssl_session_ticket_key"}


def _nginx(config: EdgeConfig, env: Env, ed: _Editor) -> Rewritten:
    run = env.run_dir
    listeners: dict[str, Listener] = {}
    servers: list[InstrumentedServer] = []
    logs: dict[str, str] = {}
    json_formats = {d.args[0] for d in config.find("log_format") if "{" in " ".join(d.args[1:])}
    json_log: str | None = None
    names = _server_names(config)

    def instrument(group: str, address: str, backup: bool) -> int:
        port = env.alloc_port()
        servers.append(InstrumentedServer(group=group, original=address, name=f"{group}-{len(servers) + 1}",
                                          port=port, backup=backup))
        return port

    cache_n = 0
    for d in list(config.walk()):
        ctx = d.context[-1] if d.context else ""
        if d.name in _NGINX_DROP and not d.context:
            ed.nginx(d, None, _NGINX_DROP[d.name])
        elif d.name == "error_log" and d.args and d.args[0] not in ("stderr",) and \
                not d.args[0].startswith(("syslog:", "memory:")):
            ed.nginx(d, [str(run / "logs" / "error.log"), *d.args[1:]], "error log into the run directory")
        elif d.name == "access_log" and d.args and d.args[0] != "off":
            if d.args[0].startswith("syslog:"):
                raise InputError("access_log to syslog cannot be read by a gate", file=d.file, line=d.line,
                                 hint="log to a file for the gate, or pass --access-log")
            fmt = d.args[1] if len(d.args) > 1 else "combined"
            new = logs.setdefault(d.args[0], str(run / "logs" / f"access-{len(logs) + 1}.log"))
            if fmt in json_formats and json_log is None:
                json_log = new
            ed.nginx(d, [new, *d.args[1:]], "access log into the run directory")
        elif d.name == "listen" and d.args:
            addr = d.args[0]
            if addr.startswith("unix:"):
                raise InputError("a unix-socket listener cannot be gated on loopback", file=d.file, line=d.line)
            port_s = listen_port(addr) or "80"
            is_v6 = addr.startswith("[")
            server = _enclosing_server(config, d)
            if is_v6 and server is not None and any(
                    not o.args[0].startswith("[") and _port_of(o.args[0]) == port_s for o in server.block or []
                    if o.name == "listen" and o.args):
                ed.nginx(d, None, "the IPv4 listener on the same port stands for it on loopback")
                continue
            tls = "ssl" in d.args[1:] or "quic" in d.args[1:]
            lis = listeners.get(port_s)
            if lis is None:
                lis = listeners[port_s] = Listener(original=port_s, port=env.alloc_port(), tls=tls)
            if tls and not lis.tls:
                lis.tls = True
            if server is not None:
                if any(o.name == "ssl_verify_client" and o.args[:1] in (["on"], ["optional"]) for o in
                       server.block or []):
                    lis.mtls = True
                for o in server.block or []:
                    if o.name == "server_name":
                        lis.server_names += [n for n in o.args if n not in lis.server_names]
            rest = [a for a in d.args[1:] if a not in ("ipv6only=on", "ipv6only=off", "reuseport")]
            ed.nginx(d, [f"127.0.0.1:{lis.port}", *rest], f"listener {addr} on a free loopback port")
        elif d.name in ("ssl_certificate", "ssl_certificate_key") and d.args:
            leaf = _cert_is_leaf(d.args[0]) if d.name == "ssl_certificate" else _leaf_for_key(config, d)
            cert, key, _ = env.cert(not leaf)
            ed.nginx(d, [cert if d.name == "ssl_certificate" else key],
                     f"test {'certificate' if d.name == 'ssl_certificate' else 'key'} for "
                     f"{', '.join(names) or 'the server'} ({'leaf only' if leaf else 'leaf and intermediate'})")
        elif d.name in ("ssl_client_certificate", "ssl_trusted_certificate") and d.args:
            ed.nginx(d, [env.ca_chain], "the test CA chain that signed poetkb's client certificate")
        elif d.name in _CERT_DIRECTIVES and d.args:
            ed.nginx(d, None, f"{d.name} names a file of the original environment")
        elif d.name in ("proxy_cache_path", "fastcgi_cache_path", "uwsgi_cache_path", "scgi_cache_path") and d.args:
            cache_n += 1
            ed.nginx(d, [str(run / "cache" / str(cache_n)), *d.args[1:]], "cache files into the run directory")
        elif d.name in _NGINX_PATHS and d.args:
            ed.nginx(d, [str(run / _NGINX_PATHS[d.name]), *d.args[1:]], "temp files into the run directory")
        elif d.name == "server" and ctx.startswith("upstream") and d.args:
            if d.args[0].startswith("unix:"):
                raise InputError("an upstream on a unix socket cannot be instrumented", file=d.file, line=d.line)
            group = ctx.split(" ", 1)[1] if " " in ctx else "upstream"
            port = instrument(group, d.args[0], "backup" in d.args)
            rest = [a for a in d.args[1:] if a != "resolve" and not a.startswith("service=")]
            ed.nginx(d, [f"127.0.0.1:{port}", *rest], f"upstream server {d.args[0]} -> instrumented upstream")
        elif d.name in ("proxy_pass", "grpc_pass") and d.args:
            target = d.args[0]
            m2 = re.match(r"^(https?|grpcs?)://([^/$]+)(.*)$", target)
            upstream_names = {u.args[0] for u in config.find("upstream") if u.args}
            if m2 and m2.group(2) not in upstream_names and "$" not in target:
                port = instrument(m2.group(2), m2.group(2), False)
                ed.nginx(d, [f"http://127.0.0.1:{port}{m2.group(3)}"],
                         f"proxied address {m2.group(2)} -> instrumented upstream")
            elif m2 and m2.group(1) in ("https", "grpcs"):
                ed.nginx(d, [f"http://{m2.group(2)}{m2.group(3)}"],
                         "instrumented upstreams speak plain HTTP on loopback")
    files = _write_nginx(config, env, ed)
    return Rewritten(proxy="nginx", original=config.path, main=files[config.path], files=files,
                     rewrites=ed.rewrites, listeners=list(listeners.values()), servers=servers,
                     access_logs=list(logs.values()), json_access_log=json_log, server_names=names)


def _port_of(addr: str) -> str | None:
    return listen_port(addr)


def _enclosing_server(config: EdgeConfig, d: Directive) -> Directive | None:
    for top in config.walk():
        if top.name == "server" and top.block is not None and any(c is d for c in top.block):
            return top
    return None


def _leaf_for_key(config: EdgeConfig, key: Directive) -> bool:
    """The key goes with the certificate of the same block: leaf-only when that certificate is."""
    for cert in config.find("ssl_certificate"):
        if cert.context == key.context and cert.args:
            return _cert_is_leaf(cert.args[0])
    return False


def _write_nginx(config: EdgeConfig, env: Env, ed: _Editor) -> dict[str, str]:
    """Write every file into ``RUN/conf``; ``include`` lines point at the rewritten copies."""
    conf = env.run_dir / "conf"
    conf.mkdir(parents=True, exist_ok=True)
    for name in ("logs", "cache", "tmp"):
        (env.run_dir / name).mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    copies: dict[str, str] = {}
    for index, original in enumerate(config.files):
        copies[str(Path(original).resolve())] = str(conf / (f"{index:02d}-{Path(original).name}" if index else
                                                            "nginx.conf"))
    base = Path(config.path).parent
    include = re.compile(r"(?<![\w$.-])include\s+([^;\s]+)\s*;")
    for original in config.files:
        lines = ed.load(original)
        for number, text in enumerate(lines):
            for m in include.finditer(text):
                pattern = m.group(1).strip("'\"")
                full = pattern if Path(pattern).is_absolute() else str(base / pattern)
                matches = [str(Path(p).resolve()) for p in sorted(glob.glob(full))]
                news = [copies[p] for p in matches if p in copies]
                if len(news) != len(matches):
                    raise InputError(f"include {pattern!r} matched files the configuration model did not read",
                                     file=original, line=number + 1)
                if len(news) == 1 and not glob.has_magic(pattern):
                    new = f"include {news[0]};"
                else:
                    group = conf / f"inc{number + 1}-{Path(original).stem}"
                    group.mkdir(exist_ok=True)
                    for src, dst in zip(matches, news, strict=True):
                        (group / Path(src).name).symlink_to(dst)
                    new = f"include {group}/{Path(pattern).name};"
                before = lines[number]
                lines[number] = before.replace(m.group(0), new, 1)
                ed.rewrites.append(Rewrite(file=original, line=number + 1, directive="include",
                                           before=before.strip(), after=lines[number].strip(),
                                           why="the included file's rewritten copy"))
        target = copies[str(Path(original).resolve())]
        Path(target).write_text("".join(lines), encoding="utf-8")
        written[original] = target
    return written


# -- HAProxy --------------------------------------------------------------------------------------
#: the longest unix socket path HAProxy accepts for ``stats socket`` (it says "max 97": the 108 bytes of
#: ``sun_path`` less room for the temporary name it binds first)
HAPROXY_SOCKET_PATH_MAX = 97


def _haproxy(config: EdgeConfig, env: Env, ed: _Editor) -> Rewritten:
    run = env.run_dir
    listeners: dict[str, Listener] = {}
    servers: list[InstrumentedServer] = []
    names = _server_names(config)
    json_log: str | None = None
    for section in config.directives:
        for d in section.block or []:
            if section.name == "global":
                if d.name in ("daemon", "chroot", "user", "group", "uid", "gid", "master-worker", "nbproc"):
                    ed.haproxy(d, None, "set by poetkb for a process on loopback")
                elif d.name == "pidfile":
                    ed.haproxy(d, ["pidfile", str(run / "haproxy.pid")], "pid file in the run directory")
                elif d.name == "log":
                    ed.haproxy(d, ["log", "stdout", "format", "raw", *_log_rest(d.args[1:])],
                               "logs to the run directory (stdout of the process) instead of syslog")
                elif d.name == "stats" and d.args[:1] == ["socket"] and len(d.args) > 1:
                    sock = str(run / "admin.sock")
                    if len(sock) <= HAPROXY_SOCKET_PATH_MAX:
                        ed.haproxy(d, ["stats", "socket", sock, *d.args[2:]], "admin socket in the run directory")
                    else:
                        ed.haproxy(d, None, "the run directory's path is too long for a unix socket; the gate "
                                            "does not use the admin socket")
                elif d.name in ("ca-base", "crt-base"):
                    ed.haproxy(d, None, "certificate paths are absolute test files now")
                elif d.name in ("ssl-dh-param-file", "lua-load", "server-state-file"):
                    ed.haproxy(d, None, f"{d.name} names a file of the original environment")
            elif d.name == "bind" and d.args:
                addr = d.args[0]
                m = re.match(r"^(?:[^:]*|\[[^\]]*\]):(\d+)$", addr.split(",")[0])
                if m is None:
                    raise InputError(f"cannot rewrite listener {addr!r}", file=d.file, line=d.line,
                                     hint="write bind ADDRESS:PORT")
                port_s = m.group(1)
                rest = list(d.args[1:])
                tls = "ssl" in rest
                lis = listeners.get(port_s)
                if lis is None:
                    lis = listeners[port_s] = Listener(original=port_s, port=env.alloc_port(), tls=tls)
                out = [f"127.0.0.1:{lis.port}"]
                i = 0
                while i < len(rest):
                    word = rest[i]
                    if word in ("crt", "crt-list") and i + 1 < len(rest):
                        leaf = _cert_is_leaf(rest[i + 1])
                        out += ["crt", env.cert(not leaf)[2]]
                        i += 2
                        continue
                    if word in ("ca-file", "crl-file") and i + 1 < len(rest):
                        if word == "ca-file":
                            out += ["ca-file", env.ca_chain]
                        i += 2
                        continue
                    if word == "verify" and i + 1 < len(rest) and rest[i + 1] in ("required", "optional"):
                        lis.mtls = True
                    if word in ("v4v6", "v6only", "transparent"):
                        i += 1
                        continue
                    out.append(word)
                    i += 1
                ed.haproxy(d, ["bind", *out], f"listener {addr} on a free loopback port")
            elif d.name == "server" and len(d.args) >= 2 and section.name in ("backend", "listen"):
                group = section.args[0] if section.args else "backend"
                port = env.alloc_port()
                servers.append(InstrumentedServer(group=group, original=d.args[1], name=f"{group}-{d.args[0]}",
                                                  port=port, backup="backup" in d.args))
                rest = [w for w in d.args[2:]]
                cleaned: list[str] = []
                i = 0
                while i < len(rest):
                    if rest[i] in ("ssl", "check-ssl"):
                        i += 1
                        continue
                    if rest[i] in ("ca-file", "crt", "verify", "sni", "resolvers", "init-addr", "verifyhost") \
                            and i + 1 < len(rest):
                        i += 2
                        continue
                    cleaned.append(rest[i])
                    i += 1
                ed.haproxy(d, ["server", d.args[0], f"127.0.0.1:{port}", *cleaned],
                           f"upstream server {d.args[1]} -> instrumented upstream (plain HTTP on loopback)")
            elif d.name == "server-template":
                raise InputError("server-template cannot be instrumented one server at a time", file=d.file,
                                 line=d.line, hint="list the servers with `server` lines for the gate")
            elif d.name == "errorfile" and len(d.args) >= 2 and not Path(d.args[1]).is_file():
                ed.haproxy(d, None, f"error file {d.args[1]} is not on this machine")
            elif d.name == "log-format" and json_log is None and "".join(d.args).lstrip().startswith("{"):
                json_log = str(run / "logs" / "access.log")
            elif d.name == "log" and d.args and d.args[0] != "global":
                ed.haproxy(d, ["log", "stdout", "format", "raw", *_log_rest(d.args[1:])],
                           "logs to the run directory (stdout of the process) instead of syslog")
    files = _write_haproxy(config, env, ed)
    return Rewritten(proxy="haproxy", original=config.path, main=files[config.path], files=files,
                     rewrites=ed.rewrites, listeners=list(listeners.values()), servers=servers,
                     access_logs=[str(run / "logs" / "access.log")], json_access_log=json_log, server_names=names)


def _log_rest(args: list[str]) -> list[str]:
    """The facility and levels of a ``log`` line, without its address, length or format options."""
    out: list[str] = []
    i = 0
    while i < len(args):
        if args[i] in ("len", "format", "sample"):
            i += 2
            continue
        out.append(args[i])
        i += 1
    return out or ["local0"]


def _write_haproxy(config: EdgeConfig, env: Env, ed: _Editor) -> dict[str, str]:
    conf = env.run_dir / "conf"
    conf.mkdir(parents=True, exist_ok=True)
    (env.run_dir / "logs").mkdir(parents=True, exist_ok=True)
    lines = ed.load(config.path)
    target = conf / "haproxy.cfg"
    target.write_text("".join(lines), encoding="utf-8")
    return {config.path: str(target)}
