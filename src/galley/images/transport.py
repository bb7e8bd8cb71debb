"""HTTP to registries on http.client + ssl: pooled connections, TLS per host, auth, redirects.

    Transport.request(host, method, path, scope)
      ├─ connection from the pool for (scheme, netloc), TLS from the host's ca/client/skip_verify
      ├─ Authorization from the Authorizer; on 401 learn the challenge and retry once
      ├─ 301/302/303/307/308 followed (at most MAX_REDIRECTS), credentials only to the same host
      └─ https on a loopback host with no hosts.toml falls back to plain http once

A response's connection goes back to the pool when its body is read to the end.
"""

from __future__ import annotations

import functools
import http.client
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlencode, urljoin, urlsplit

from galley.errors import InvalidArgument, PermissionDenied, Unavailable, reason_text
from galley.images.auth import (
    Authorizer,
    Challenge,
    Credentials,
    CredentialsFor,
    parse_token_response,
    token_request,
)
from galley.images.hosts import RegistryHost


class Upload(Protocol):
    """A request body read from a file (rewound before every send, so retries resend it)."""

    def read(self, n: int = -1, /) -> bytes: ...

    def seek(self, offset: int, whence: int = 0, /) -> int: ...


Body = bytes | Upload
MAX_REDIRECTS = 5
MAX_TOKEN_RESPONSE = 1 << 20
TIMEOUT = 60.0
BLOCK = 1 << 20  # bytes per send() of a file body
USER_AGENT = "galley/0.1"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass
class Response:
    """A response whose body is still to be read (read() returns b"" at the end)."""

    status: int
    headers: http.client.HTTPMessage
    raw: http.client.HTTPResponse
    url: str
    _release: Callable[[], None] | None = None

    def header(self, name: str, default: str = "") -> str:
        """One header's value."""
        return self.headers.get(name, default)

    def read(self, n: int = -1) -> bytes:
        """Up to n bytes of body (all when n < 0)."""
        try:
            data = self.raw.read() if n < 0 else self.raw.read(n)
        except (http.client.HTTPException, OSError) as exc:
            self.close()
            raise Unavailable(f"connection lost reading {self.url}: {exc!r}") from exc
        if self.raw.isclosed() and self._release is not None:
            self._release()
            self._release = None
        return data

    def read_limited(self, limit: int, what: str) -> bytes:
        """The whole body, refusing one larger than limit bytes."""
        length = self.header("Content-Length")
        if length.isascii() and length.isdigit() and int(length) > limit:
            self.close()
            raise InvalidArgument(f"{what} is {length} bytes, more than the limit of {limit}")
        data = self.read(limit + 1)
        if len(data) > limit:
            self.close()
            raise InvalidArgument(f"{what} is larger than the limit of {limit} bytes")
        while not self.raw.isclosed() and len(data) <= limit:
            more = self.read(limit + 1 - len(data))
            if not more:
                break
            data += more
        return data

    def close(self) -> None:
        """Drop the connection (the body was not read to the end)."""
        self.raw.close()
        self._release = None


class _Pool:
    """Idle keep-alive connections per (scheme, netloc)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[tuple[str, str], list[http.client.HTTPConnection]] = {}

    def get(
        self, scheme: str, netloc: str, ctx: ssl.SSLContext | None
    ) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            idle = self._idle.get((scheme, netloc))
            if idle:
                return idle.pop(), True
        if scheme == "https":
            conn = http.client.HTTPSConnection(
                netloc, timeout=TIMEOUT, context=ctx, blocksize=BLOCK
            )
            return conn, False
        return http.client.HTTPConnection(netloc, timeout=TIMEOUT, blocksize=BLOCK), False

    def put(self, scheme: str, netloc: str, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault((scheme, netloc), [])
            if len(idle) < 16:
                idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for conn in conns:
            conn.close()


def ssl_context(host: RegistryHost) -> ssl.SSLContext:
    """The TLS context for a host: system CAs plus its ca files, its client pairs, skip_verify."""
    ctx = ssl.create_default_context()
    try:
        for ca in host.ca:
            ctx.load_verify_locations(cafile=ca)
        for cert, key in host.client:
            ctx.load_cert_chain(cert, key or None)
    except (OSError, ssl.SSLError) as exc:
        raise InvalidArgument(f"TLS files for registry {host.host!r}: {reason_text(exc)}") from exc
    if host.skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Transport:
    """Sends requests to registry hosts, with authentication, redirects and connection reuse."""

    def __init__(self, credentials: CredentialsFor, authorizer: Authorizer | None = None) -> None:
        self.authorizer = authorizer or Authorizer(credentials, self._fetch_token)
        self._pool = _Pool()
        self._contexts: dict[RegistryHost, ssl.SSLContext] = {}
        self._lock = threading.Lock()
        self._plain: set[str] = set()

    def close(self) -> None:
        """Close idle connections."""
        self._pool.close()

    def _context(self, host: RegistryHost) -> ssl.SSLContext:
        with self._lock:
            ctx = self._contexts.get(host)
            if ctx is None:
                ctx = self._contexts[host] = ssl_context(host)
            return ctx

    def request(
        self,
        host: RegistryHost,
        method: str,
        path: str,
        *,
        scope: str,
        headers: dict[str, str] | None = None,
        body: Body = b"",
        query: dict[str, str] | None = None,
    ) -> Response:
        """Send method to host's API root + path; follows redirects and answers auth challenges."""
        url = self._url(host, path, query)
        hdrs = {"User-Agent": USER_AGENT, **{k: ", ".join(v) for k, v in host.headers.items()}}
        hdrs.update(headers or {})
        retried_auth = False
        for _hop in range(MAX_REDIRECTS + 1):
            same_host = urlsplit(url).netloc == host.host
            send = dict(hdrs)
            if same_host:
                auth = self.authorizer.header(host.host, scope)
                if auth:
                    send["Authorization"] = auth
            resp = self._send(host, method, url, send, body)
            if resp.status == 401 and same_host and not retried_auth:
                challenge = resp.header("WWW-Authenticate")
                resp.read()
                if not challenge:
                    raise PermissionDenied(f"registry {host.host!r} refused {method} {url}")
                self.authorizer.challenge(host.host, challenge, scope)
                retried_auth = True
                continue
            if resp.status in _REDIRECTS and method in ("GET", "HEAD"):
                location = resp.header("Location")
                resp.read()
                if not location:
                    raise InvalidArgument(f"registry {host.host!r} redirected without a Location")
                url = urljoin(url, location)
                continue
            return resp
        raise InvalidArgument(
            f"registry {host.host!r}: more than {MAX_REDIRECTS} redirects for {method} {path}"
        )

    def _url(self, host: RegistryHost, path: str, query: dict[str, str] | None) -> str:
        scheme = "http" if host.host in self._plain else host.scheme
        url = f"{scheme}://{host.host}{host.path}{path}"
        if query:
            url += ("&" if "?" in url else "?") + urlencode(query)
        return url

    def _send(
        self, host: RegistryHost, method: str, url: str, headers: dict[str, str], body: Body
    ) -> Response:
        try:
            return self._send_once(host, method, url, headers, body)
        except (ssl.SSLError, ConnectionResetError) as exc:
            parts = urlsplit(url)
            if not (host.http_fallback and parts.scheme == "https" and parts.netloc == host.host):
                raise Unavailable(f"registry {parts.netloc!r}: TLS failed: {exc}") from exc
            with self._lock:
                self._plain.add(host.host)
            return self._send_once(host, method, "http" + url[5:], headers, body)

    def _send_once(
        self, host: RegistryHost, method: str, url: str, headers: dict[str, str], body: Body
    ) -> Response:
        parts = urlsplit(url)
        ctx = self._context(host) if parts.scheme == "https" else None
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        for attempt in range(2):
            conn, reused = self._pool.get(parts.scheme, parts.netloc, ctx)
            if not isinstance(body, bytes):
                body.seek(0)
            try:
                conn.request(method, target, body=body or None, headers=headers)
                raw = conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                conn.close()
                if reused and attempt == 0:
                    continue
                raise Unavailable(f"registry {parts.netloc!r} closed the connection") from None
            except ssl.SSLError:
                conn.close()
                raise
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                if isinstance(exc, socket.timeout):
                    raise Unavailable(f"registry {parts.netloc!r} timed out") from exc
                raise Unavailable(
                    f"registry {parts.netloc!r} cannot be reached: {reason_text(exc)}"
                ) from exc
            resp = Response(raw.status, raw.msg, raw, url)
            if method == "HEAD" or raw.isclosed():
                raw.close()
                if not raw.will_close:
                    self._pool.put(parts.scheme, parts.netloc, conn)
            elif not raw.will_close:
                resp._release = functools.partial(self._pool.put, parts.scheme, parts.netloc, conn)
            return resp
        raise Unavailable(f"registry {parts.netloc!r} closed the connection")

    def _fetch_token(
        self, challenge: Challenge, scope: str, creds: Credentials | None
    ) -> tuple[str, int]:
        realm = challenge.params.get("realm", "")
        parts = urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise PermissionDenied(f"registry token realm {realm!r} is not an http(s) URL")
        method, headers, body = token_request(challenge, scope, creds)
        query = [("service", challenge.params.get("service", ""))]
        query += [("scope", s) for s in scope.split()]
        url = realm + ("&" if "?" in realm else "?") + urlencode(query)
        realm_host = RegistryHost(parts.scheme, parts.netloc, path="")
        resp = self._send_once(realm_host, method, url, {"User-Agent": USER_AGENT, **headers}, body)
        data = resp.read_limited(MAX_TOKEN_RESPONSE, f"token response from {realm!r}")
        if resp.status != 200:
            raise PermissionDenied(
                f"token endpoint {realm!r} refused scope {scope!r}: HTTP {resp.status}"
            )
        return parse_token_response(data, realm)
