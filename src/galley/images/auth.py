"""Registry authentication: credentials, WWW-Authenticate challenges, Basic and Bearer tokens.

    request ──▶ 401 + WWW-Authenticate: Bearer realm=…,service=…,scope=…
       ▲            │
       │            ▼
       │     Authorizer.challenge(host, header, scope)
       │            │ Basic: remember the credentials for host
       │            │ Bearer: GET realm?service=&scope= (Basic creds, or anonymous), or POST
       │            │         grant_type=refresh_token when an identity token is known
       └── Authorizer.header(host, scope) ◀── cached per (host, realm, service, scope) until expiry

Credentials come from a CRI AuthConfig-like `Credentials`, or a Docker `config.json`: `auths`
entries with `auth` (base64 user:password), `username`/`password`, or `identitytoken`, and the
`credHelpers` / `credsStore` helper programs (`docker-credential-<name> get`).
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from galley.errors import InvalidArgument, PermissionDenied, reason_text

TOKEN_MIN_TTL = 60
_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*,?')


@dataclass(frozen=True)
class Credentials:
    """What a client may present (CRI AuthConfig fields): a user/password or tokens."""

    username: str = ""
    password: str = ""
    auth: str = ""
    identity_token: str = ""
    registry_token: str = ""
    server_address: str = ""

    def basic(self) -> tuple[str, str] | None:
        """(user, password) from username/password or the base64 `auth` field, if any."""
        if self.username or self.password:
            return self.username, self.password
        if self.auth:
            try:
                user, sep, password = base64.b64decode(self.auth).decode().partition(":")
            except (ValueError, UnicodeDecodeError) as exc:
                raise InvalidArgument(f"credentials for {self.server_address!r}: {exc}") from exc
            if not sep:
                raise InvalidArgument(f"credentials for {self.server_address!r}: bad auth field")
            return user, password
        return None


CredentialsFor = Callable[[str], Credentials | None]


@dataclass(frozen=True)
class Challenge:
    """One WWW-Authenticate challenge: scheme (lowercase) and its parameters."""

    scheme: str
    params: dict[str, str]


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a WWW-Authenticate value (several challenges, quoted parameters)."""
    out: list[Challenge] = []
    rest = header.strip()
    while rest:
        match = re.match(r"([A-Za-z][A-Za-z0-9_-]*)\s*", rest)
        if not match:
            break
        scheme, rest = match.group(1).lower(), rest[match.end() :]
        params: dict[str, str] = {}
        while True:
            pm = _PARAM.match(rest)
            if not pm:
                break
            value = pm.group(2) if pm.group(2) is not None else pm.group(3)
            params[pm.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
            rest = rest[pm.end() :]
        out.append(Challenge(scheme, params))
        rest = rest.lstrip(", ")
    return out


_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io")


def _read_docker_config(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            doc = json.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise InvalidArgument(f"docker config {path!r} cannot be read: {reason_text(exc)}") from exc
    return doc if isinstance(doc, dict) else {}


def load_docker_config(path: str) -> dict[str, Credentials]:
    """The `auths` of a Docker config.json, keyed by host (URLs reduced to their host)."""
    auths = _read_docker_config(path).get("auths", {})
    out: dict[str, Credentials] = {}
    for key, entry in auths.items() if isinstance(auths, dict) else ():
        if not isinstance(entry, dict):
            continue
        out[_host_of(key)] = Credentials(
            username=str(entry.get("username", "")),
            password=str(entry.get("password", "")),
            auth=str(entry.get("auth", "")),
            identity_token=str(entry.get("identitytoken", "")),
            registry_token=str(entry.get("registrytoken", "")),
            server_address=key,
        )
    return out


def _host_of(key: str) -> str:
    if key in _HUB_KEYS:
        return "docker.io"
    host = key.split("://", 1)[-1].split("/", 1)[0]
    return "docker.io" if host in _HUB_KEYS else host


def credential_helper(helper: str, host: str) -> Credentials | None:
    """Ask `docker-credential-<helper> get` for host's credentials (None if it has none)."""
    server = _HUB_KEYS[0] if host == "docker.io" else host
    try:
        out = subprocess.run(
            [f"docker-credential-{helper}", "get"],
            input=server.encode(),
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PermissionDenied(
            f"credential helper {helper!r} for {host!r} failed: {reason_text(exc)}"
        ) from exc
    if out.returncode != 0:
        if b"not found" in out.stdout + out.stderr:
            return None
        text = (out.stdout + out.stderr).decode(errors="replace").strip()[:200]
        raise PermissionDenied(f"credential helper {helper!r} for {host!r} failed: {text}")
    try:
        doc = json.loads(out.stdout)
        user, secret = str(doc["Username"]), str(doc["Secret"])
    except (ValueError, KeyError, TypeError) as exc:
        raise PermissionDenied(f"credential helper {helper!r} answered badly: {exc}") from exc
    if user == "<token>":
        return Credentials(identity_token=secret, server_address=server)
    return Credentials(username=user, password=secret, server_address=server)


def docker_config_credentials(path: str | None = None) -> CredentialsFor:
    """A lookup from a Docker config.json (default $DOCKER_CONFIG or ~/.docker/config.json):
    `credHelpers` for the host, else its `auths` entry, else the `credsStore` helper."""
    if path is None:
        base = os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker")
        path = os.path.join(base, "config.json")
    doc = _read_docker_config(path)
    table = load_docker_config(path)
    helpers = doc.get("credHelpers") if isinstance(doc.get("credHelpers"), dict) else {}
    store = doc.get("credsStore") if isinstance(doc.get("credsStore"), str) else ""
    asked: dict[str, Credentials | None] = {}

    def lookup(host: str) -> Credentials | None:
        key = _host_of(host)
        if key in asked:
            return asked[key]
        helper = str(helpers.get(key, "")) if helpers else ""
        found = table.get(key)
        if helper:
            found = credential_helper(helper, key)
        elif found is None and store:
            found = credential_helper(store, key)
        asked[key] = found
        return found

    return lookup


def static_credentials(creds: Credentials | None) -> CredentialsFor:
    """A lookup that gives the same credentials for every host."""
    return lambda _host: creds


@dataclass
class _Token:
    value: str
    expires_at: float


TokenFetcher = Callable[[Challenge, str, Credentials | None], tuple[str, int]]


class Authorizer:
    """Answers 'what Authorization header for this host and scope', learning from challenges."""

    def __init__(self, credentials: CredentialsFor, fetch_token: TokenFetcher) -> None:
        self._credentials = credentials
        self._fetch_token = fetch_token
        self._lock = threading.Lock()
        self._challenges: dict[str, Challenge] = {}
        self._tokens: dict[tuple[str, str], _Token] = {}

    def header(self, host: str, scope: str) -> str:
        """The Authorization value to send (empty if none is known yet)."""
        creds = self._credentials(host)
        if creds is not None and creds.registry_token:
            return f"Bearer {creds.registry_token}"
        with self._lock:
            challenge = self._challenges.get(host)
            token = self._tokens.get((host, scope))
        if challenge is None:
            return ""
        if challenge.scheme == "basic":
            return _basic_header(host, creds)
        if token is not None and token.expires_at > time.monotonic():
            return f"Bearer {token.value}"
        return self._refresh(host, challenge, scope, creds)

    def challenge(self, host: str, header: str, scope: str) -> str:
        """Learn from a 401's WWW-Authenticate; returns the header to retry with."""
        challenges = parse_challenges(header)
        chosen = next((c for c in challenges if c.scheme == "bearer"), None) or next(
            (c for c in challenges if c.scheme == "basic"), None
        )
        if chosen is None:
            raise PermissionDenied(f"registry {host!r} asks for unsupported auth {header!r}")
        with self._lock:
            self._challenges[host] = chosen
            self._tokens.pop((host, scope), None)
        if chosen.scheme == "basic":
            return _basic_header(host, self._credentials(host))
        return self._refresh(host, chosen, scope, self._credentials(host))

    def _refresh(
        self, host: str, challenge: Challenge, scope: str, creds: Credentials | None
    ) -> str:
        value, ttl = self._fetch_token(challenge, scope, creds)
        expires = time.monotonic() + max(ttl, TOKEN_MIN_TTL) - 10
        with self._lock:
            self._tokens[(host, scope)] = _Token(value, expires)
        return f"Bearer {value}"


def _basic_header(host: str, creds: Credentials | None) -> str:
    pair = creds.basic() if creds is not None else None
    if pair is None:
        raise PermissionDenied(f"registry {host!r} requires credentials and none were given")
    return "Basic " + base64.b64encode(f"{pair[0]}:{pair[1]}".encode()).decode()


def token_request(
    challenge: Challenge, scope: str, creds: Credentials | None
) -> tuple[str, dict[str, str], bytes]:
    """The (method, headers, body) of a token request; URL query is added by the caller."""
    if creds is not None and creds.identity_token:
        form = {
            "grant_type": "refresh_token",
            "refresh_token": creds.identity_token,
            "service": challenge.params.get("service", ""),
            "scope": scope,
            "client_id": "galley",
        }
        body = urlencode(form).encode()
        return "POST", {"Content-Type": "application/x-www-form-urlencoded"}, body
    headers: dict[str, str] = {}
    pair = creds.basic() if creds is not None else None
    if pair is not None:
        headers["Authorization"] = _basic_header("", creds)
    return "GET", headers, b""


def parse_token_response(body: bytes, realm: str) -> tuple[str, int]:
    """(token, expires_in) from a token endpoint's JSON answer."""
    try:
        doc: Any = json.loads(body)
    except ValueError as exc:
        raise PermissionDenied(f"token endpoint {realm!r} answered non-JSON: {exc}") from exc
    token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
    if not isinstance(token, str) or not token:
        raise PermissionDenied(f"token endpoint {realm!r} answered without a token")
    expires = doc.get("expires_in", 60)
    if isinstance(expires, float) and math.isfinite(expires):  # not NaN or Infinity
        expires = int(expires)
    return token, expires if isinstance(expires, int) and not isinstance(expires, bool) else 60
