"""containerd hosts.toml: mirrors, server, TLS files, headers, override_path, defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from galley.errors import InvalidArgument
from galley.images.hosts import load_hosts


def _write(root: Path, host: str, text: str) -> Path:
    d = root / host
    d.mkdir(parents=True)
    (d / "hosts.toml").write_text(text)
    return d


def test_defaults_without_configuration(tmp_path: Path) -> None:
    hub = load_hosts(str(tmp_path), "docker.io")
    assert [h.url for h in hub] == ["https://registry-1.docker.io/v2"]
    local = load_hosts(str(tmp_path), "127.0.0.1:5000")
    assert local[0].url == "https://127.0.0.1:5000/v2" and local[0].http_fallback
    remote = load_hosts(str(tmp_path), "ghcr.io")
    assert not remote[0].http_fallback


def test_mirrors_then_server(tmp_path: Path) -> None:
    d = _write(
        tmp_path,
        "docker.io",
        """
server = "https://registry-1.docker.io"
[host."http://127.0.0.1:5001"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
  ca = "ca.pem"
  client = [["c.pem", "k.pem"], "both.pem"]
  [host."http://127.0.0.1:5001".header]
    x-one = "1"
    x-two = ["a", "b"]
[host."https://mirror.example/custom/api"]
  override_path = true
  capabilities = ["pull"]
""",
    )
    hosts = load_hosts(str(tmp_path), "index.docker.io")
    assert [h.url for h in hosts] == [
        "http://127.0.0.1:5001/v2",
        "https://mirror.example/custom/api",
        "https://registry-1.docker.io/v2",
    ]
    first = hosts[0]
    assert first.is_mirror and first.can("resolve") and not first.can("push")
    assert first.skip_verify
    assert first.ca == (str(d / "ca.pem"),)
    assert first.client == ((str(d / "c.pem"), str(d / "k.pem")), (str(d / "both.pem"), ""))
    assert first.headers == {"x-one": ("1",), "x-two": ("a", "b")}
    assert not hosts[1].can("resolve")
    assert not hosts[2].is_mirror and hosts[2].can("push")


def test_plain_http_server_and_default_dir(tmp_path: Path) -> None:
    _write(tmp_path, "127.0.0.1:5000", 'server = "http://127.0.0.1:5000"\n')
    _write(tmp_path, "_default", '[host."http://127.0.0.1:9"]\n')
    assert [h.url for h in load_hosts(str(tmp_path), "127.0.0.1:5000")] == [
        "http://127.0.0.1:5000/v2"
    ]
    other = load_hosts(str(tmp_path), "quay.io")
    assert [h.url for h in other] == ["http://127.0.0.1:9/v2", "https://quay.io/v2"]


@pytest.mark.parametrize(
    "text",
    [
        "server = [",
        "server = 3",
        '[host."ftp://x"]\n',
        '[host."http://x"]\ncapabilities = ["fly"]\n',
        '[host."http://x"]\nca = 3\n',
        '[host."http://x"]\nclient = [["a"]]\n',
        # a TypeError or ValueError before session 26
        '[host."http://x"]\ncapabilities = 5\n',
        '[host."http://x"]\ncapabilities = [["pull"]]\n',
        '[host."http://[::1"]\n',
        '[host."http://x:99999"]\n',
    ],
)
def test_bad_files_are_refused_with_their_path(tmp_path: Path, text: str) -> None:
    _write(tmp_path, "r.example", text)
    with pytest.raises(InvalidArgument, match=r"hosts\.toml"):
        load_hosts(str(tmp_path), "r.example")


def test_legacy_certs_dir(tmp_path: Path) -> None:
    d = tmp_path / "r.example"
    d.mkdir()
    for name in ("ca.crt", "client.cert", "client.key"):
        (d / name).write_text("")
    (host,) = load_hosts(str(tmp_path), "r.example")
    assert host.ca == (str(d / "ca.crt"),)
    assert host.client == ((str(d / "client.cert"), str(d / "client.key")),)


def test_mirror_only_file_keeps_the_default_server(tmp_path: Path) -> None:
    _write(tmp_path, "127.0.0.1:5000", 'skip_verify = true\n[host."http://127.0.0.1:5001"]\n')
    mirror, server = load_hosts(str(tmp_path), "127.0.0.1:5000")
    assert mirror.is_mirror and mirror.url == "http://127.0.0.1:5001/v2" and not mirror.skip_verify
    assert server.url == "https://127.0.0.1:5000/v2" and server.http_fallback
    assert server.skip_verify
