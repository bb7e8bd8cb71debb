"""Registry hosts from containerd's `certs.d/<host>/hosts.toml`: mirrors, TLS, headers, paths.

    <hosts_dir>/
    ├── docker.io/hosts.toml          for references to docker.io
    ├── 127.0.0.1:5000/hosts.toml     a host with a port keeps it in the directory name
    └── _default/hosts.toml           for hosts without a directory of their own

    server = "https://registry.example"          # the upstream (default: https://<host>)
    [host."http://127.0.0.1:5001"]               # mirrors, tried first, in file order
      capabilities = ["pull", "resolve"]         # default: pull, resolve, push
      ca = "ca.pem"                              # string or list; relative to the host dir
      client = [["cert.pem", "key.pem"]]         # string, list, or list of [cert, key]
      skip_verify = false
      override_path = false                      # true: the URL path is the API root (no /v2)
      [host."http://127.0.0.1:5001".header]
        x-custom = ["a", "b"]

An `http://` URL means plain HTTP. Without any configuration, docker.io resolves to
https://registry-1.docker.io, and a loopback host falls back to plain HTTP when TLS fails.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from galley.errors import InvalidArgument, reason_text

PULL, RESOLVE, PUSH = "pull", "resolve", "push"
ALL_CAPABILITIES = frozenset({PULL, RESOLVE, PUSH})
DOCKER_HUB_SERVER = "https://registry-1.docker.io"
_LOOPBACK = ("127.", "localhost", "[::1]", "::1")


@dataclass(frozen=True)
class RegistryHost:
    """One endpoint to try for a registry: where, how to talk TLS, and what it may do."""

    scheme: str
    host: str
    path: str = "/v2"
    capabilities: frozenset[str] = ALL_CAPABILITIES
    ca: tuple[str, ...] = ()
    client: tuple[tuple[str, str], ...] = ()
    skip_verify: bool = False
    headers: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    http_fallback: bool = False
    is_mirror: bool = False

    @property
    def url(self) -> str:
        """The API root URL, e.g. "https://registry-1.docker.io/v2"."""
        return f"{self.scheme}://{self.host}{self.path}"

    def can(self, capability: str) -> bool:
        """True if this host may be used for capability (pull, resolve, push)."""
        return capability in self.capabilities


def host_dir_name(host: str) -> str:
    """The certs.d directory name for a registry host (docker.io for every Docker Hub alias)."""
    return "docker.io" if host in ("index.docker.io", "registry-1.docker.io") else host


def _is_loopback(host: str) -> bool:
    return host.startswith(_LOOPBACK)


def default_hosts(host: str) -> list[RegistryHost]:
    """The hosts used when no hosts.toml names this registry."""
    if host == "docker.io":
        return [RegistryHost("https", "registry-1.docker.io")]
    return [RegistryHost("https", host, http_fallback=_is_loopback(host))]


def load_hosts(hosts_dir: str, host: str) -> list[RegistryHost]:
    """The hosts to try for registry host, mirrors first then the server (pull order)."""
    for name in (host_dir_name(host), "_default"):
        directory = os.path.join(hosts_dir, name) if hosts_dir else ""
        path = os.path.join(directory, "hosts.toml")
        if directory and os.path.isfile(path):
            return parse_hosts_toml(path, host)
        if directory and os.path.isdir(directory) and name != "_default":
            return _legacy_certs(directory, host)
    return default_hosts(host)


def parse_hosts_toml(path: str, host: str) -> list[RegistryHost]:
    """Read one hosts.toml for registry host; InvalidArgument names the file on errors."""
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidArgument(f"hosts file {path!r} cannot be read: {reason_text(exc)}") from exc
    base = os.path.dirname(path)
    hosts: list[RegistryHost] = []
    table = doc.get("host", {})
    if not isinstance(table, dict):
        raise InvalidArgument(f"hosts file {path!r}: [host] must be a table")
    for url, cfg in table.items():
        if not isinstance(cfg, dict):
            raise InvalidArgument(f"hosts file {path!r}: host {url!r} must be a table")
        hosts.append(_host_entry(url, cfg, base, path, mirror=True))
    server = doc.get("server")
    if server is not None:
        if not isinstance(server, str):
            raise InvalidArgument(f"hosts file {path!r}: server must be a string")
        hosts.append(_host_entry(server, doc, base, path, mirror=False, server=True))
    elif not any(h.host == host for h in hosts):
        defaults = default_hosts(host)
        hosts += [_with_tls(defaults[0], doc, base, path)]
    return hosts


def _with_tls(entry: RegistryHost, cfg: dict[str, Any], base: str, path: str) -> RegistryHost:
    """The default server with the file's top-level TLS and header settings."""
    url = f"{entry.scheme}://{entry.host}"
    configured = _host_entry(url, cfg, base, path, mirror=False, server=True)
    return replace(configured, http_fallback=entry.http_fallback)


def _host_entry(
    url: str, cfg: dict[str, Any], base: str, path: str, *, mirror: bool, server: bool = False
) -> RegistryHost:
    if "://" not in url:
        url = "https://" + url
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - read only to have a port out of range refused here
    except ValueError as exc:  # an unclosed "[" of an IPv6 address, a port out of range
        raise InvalidArgument(f"hosts file {path!r}: {url!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidArgument(f"hosts file {path!r}: {url!r} is not an http(s) URL")
    override = bool(cfg.get("override_path", False))
    api_path = parts.path.rstrip("/")
    if not override and not api_path.endswith("/v2"):
        api_path += "/v2"
    caps = cfg.get("capabilities")
    listed = frozenset(_strings(caps, "capabilities", path))
    capabilities = ALL_CAPABILITIES if caps is None or server else listed
    if not capabilities <= ALL_CAPABILITIES:
        raise InvalidArgument(f"hosts file {path!r}: unknown capability in {sorted(capabilities)}")
    return RegistryHost(
        scheme=parts.scheme,
        host=parts.netloc,
        path=api_path,
        capabilities=capabilities,
        ca=tuple(_resolve(base, p) for p in _strings(cfg.get("ca"), "ca", path)),
        client=_clients(cfg.get("client"), base, path),
        skip_verify=bool(cfg.get("skip_verify", False)),
        headers=_headers(cfg.get("header"), path),
        is_mirror=mirror,
    )


def _strings(value: Any, what: str, path: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise InvalidArgument(f"hosts file {path!r}: {what} must be a string or a list of strings")


def _resolve(base: str, name: str) -> str:
    return name if os.path.isabs(name) else os.path.join(base, name)


def _clients(value: Any, base: str, path: str) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise InvalidArgument(f"hosts file {path!r}: client must be a string or a list")
    out = []
    for item in items:
        if isinstance(item, str):
            out.append((_resolve(base, item), ""))
        elif isinstance(item, list) and len(item) == 2 and all(isinstance(p, str) for p in item):
            out.append((_resolve(base, item[0]), _resolve(base, item[1])))
        else:
            raise InvalidArgument(f"hosts file {path!r}: client entry {item!r} is malformed")
    return tuple(out)


def _headers(value: Any, path: str) -> dict[str, tuple[str, ...]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"hosts file {path!r}: header must be a table")
    return {str(k): tuple(_strings(v, f"header {k}", path)) for k, v in value.items()}


def _legacy_certs(directory: str, host: str) -> list[RegistryHost]:
    """A certs.d directory without hosts.toml: *.crt are CAs, *.cert/*.key client pairs."""
    names = sorted(os.listdir(directory))
    cas = tuple(os.path.join(directory, n) for n in names if n.endswith(".crt"))
    clients = tuple(
        (os.path.join(directory, n), os.path.join(directory, n[:-5] + ".key"))
        for n in names
        if n.endswith(".cert")
    )
    entry = default_hosts(host)[0]
    return [RegistryHost(entry.scheme, entry.host, ca=cas, client=clients)]
