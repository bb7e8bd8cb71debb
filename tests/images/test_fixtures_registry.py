"""The registry fixtures themselves: each variant answers /v2/ the way its auth says."""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import urllib.parse

from galley.fixtures import images as fi
from galley.fixtures import registry as reg
from galley.images import mediatypes as mt


def _get(host: str, path: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection(host, timeout=10)
    conn.request("GET", path, headers=headers or {})
    return conn.getresponse()


def test_plain_registry_serves_pushed_image(registry: reg.Registry) -> None:
    image = fi.busybox_image(seed=1)
    fi.push_image(registry.host, "fixtures/plain", "v1", image)
    resp = _get(registry.host, "/v2/fixtures/plain/manifests/v1", {"Accept": mt.OCI_MANIFEST})
    assert resp.status == 200
    assert resp.read() == image.manifest
    assert registry.blob_path(image.layers[0].descriptor.digest.hex).read_bytes() == (
        image.layers[0].data
    )


def test_tls_registry_needs_the_ca(tls_registry: reg.Registry) -> None:
    assert tls_registry.ca is not None
    ctx = ssl.create_default_context(cafile=str(tls_registry.ca))
    conn = http.client.HTTPSConnection(tls_registry.host, context=ctx, timeout=10)
    conn.request("GET", "/v2/")
    assert conn.getresponse().status == 200
    bare = http.client.HTTPSConnection(
        tls_registry.host, context=ssl.create_default_context(), timeout=10
    )
    try:
        bare.request("GET", "/v2/")
        raise AssertionError("TLS without the test CA must fail")
    except ssl.SSLError:
        pass


def test_basic_registry_checks_password(basic_registry: reg.Registry) -> None:
    assert _get(basic_registry.host, "/v2/").status == 401
    good = base64.b64encode(b"alice:wonderland").decode()
    bad = base64.b64encode(b"alice:nope").decode()
    assert _get(basic_registry.host, "/v2/", {"Authorization": f"Basic {good}"}).status == 200
    assert _get(basic_registry.host, "/v2/", {"Authorization": f"Basic {bad}"}).status == 401


def test_token_registry_accepts_issued_token(
    registry: reg.Registry, token_registry: reg.Registry, token_server: reg.TokenServer
) -> None:
    image = fi.busybox_image(seed=2)
    fi.push_image(registry.host, "fixtures/token", "v1", image)
    path = "/v2/fixtures/token/manifests/v1"
    resp = _get(token_registry.host, path)
    assert resp.status == 401
    challenge = resp.getheader("WWW-Authenticate") or ""
    assert challenge.startswith("Bearer ") and 'scope="repository:fixtures/token:pull"' in challenge
    query = urllib.parse.urlencode(
        {"service": reg.SERVICE, "scope": "repository:fixtures/token:pull"}
    )
    token_resp = _get(urllib.parse.urlsplit(token_server.realm).netloc, f"/token?{query}")
    token = json.loads(token_resp.read())["token"]
    headers = {"Authorization": f"Bearer {token}", "Accept": mt.OCI_MANIFEST}
    resp = _get(token_registry.host, path, headers)
    assert resp.status == 200 and resp.read() == image.manifest
    forged = token[:-8] + ("A" * 8 if not token.endswith("A" * 8) else "B" * 8)
    assert _get(token_registry.host, path, {"Authorization": f"Bearer {forged}"}).status == 401
