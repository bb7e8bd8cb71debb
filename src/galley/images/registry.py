"""The distribution API for one repository: resolve, fetch manifests and blobs, push.

    GET  /v2/<name>/manifests/<tag|digest>     resolve (Accept: index, manifest, list, schema2)
    GET  /v2/<name>/blobs/<digest>             fetch (redirects followed, Range to resume)
    HEAD /v2/<name>/blobs/<digest>             exists?
    POST /v2/<name>/blobs/uploads/[?mount=&from=]  start an upload, or mount from another repo
    PATCH <location>  (Content-Range)          chunked upload
    PUT  <location>?digest=<d>                 finish (monolithic: the whole blob here)
    PUT  /v2/<name>/manifests/<tag|digest>     push a manifest

Hosts are tried in order (mirrors first) among those with the capability; a mirror that fails
or lacks the object passes to the next. Everything fetched is checked against its digest and size
(manifests here, blobs by the content store's writer as they are written).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar
from urllib.parse import parse_qsl, urlsplit

from galley.content.digest import Digest
from galley.errors import (
    GalleyError,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from galley.images.hosts import PULL, PUSH, RESOLVE, RegistryHost
from galley.images.mediatypes import MANIFEST_ACCEPT, Descriptor, detect_media_type
from galley.images.reference import Reference
from galley.images.transport import Body, Response, Transport, Upload

MAX_MANIFEST = 4 << 20
MAX_ERROR_BODY = 64 << 10
CHUNK = 1 << 20
T = TypeVar("T")


class BlobStream:
    """A blob body being read; refuses more bytes than the descriptor's size."""

    def __init__(self, resp: Response, desc: Descriptor, offset: int) -> None:
        self._resp = resp
        self.desc = desc
        self.offset = offset

    def read(self, n: int = CHUNK) -> bytes:
        """Up to n more bytes; b"" at the end. InvalidArgument if the registry sends too much."""
        left = self.desc.size - self.offset
        data = self._resp.read(min(n, left + 1))  # Unavailable if the connection drops
        if len(data) > left:
            self.close()
            raise InvalidArgument(
                f"blob {self.desc.digest} is longer than its declared size {self.desc.size}"
            )
        self.offset += len(data)
        if not data and self.offset < self.desc.size:
            raise Unavailable(
                f"blob {self.desc.digest} ended at {self.offset} of {self.desc.size} bytes"
            )
        return data

    def chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        """The rest of the body in chunks."""
        while True:
            data = self.read(size)
            if not data:
                return
            yield data

    def close(self) -> None:
        """Abandon the body."""
        self._resp.close()


def _range_start(resp: Response, what: str) -> int:
    """The first byte of a 206 answer, from its Content-Range ("bytes 100-199/200")."""
    unit, _, rest = resp.header("Content-Range").partition(" ")
    first = rest.split("-", 1)[0]
    if unit != "bytes" or not (first.isascii() and first.isdigit()):
        resp.close()
        raise InvalidArgument(f"{what}: partial answer with bad Content-Range {rest!r}")
    return int(first)


class Repository:
    """One repository on one registry (with its mirrors), for pulling and pushing."""

    def __init__(self, ref: Reference, hosts: list[RegistryHost], transport: Transport) -> None:
        self.ref = ref
        self.hosts = hosts
        self.transport = transport
        self.pull_scope = f"repository:{ref.path}:pull"
        self.push_scope = f"repository:{ref.path}:pull,push"

    def _query(self, host: RegistryHost) -> dict[str, str]:
        return {"ns": self.ref.domain} if host.is_mirror else {}

    def _each_host(self, capability: str, call: Callable[[RegistryHost], T]) -> T:
        usable = [h for h in self.hosts if h.can(capability)]
        if not usable:
            raise InvalidArgument(f"no host for registry {self.ref.domain!r} may {capability}")
        error: GalleyError | None = None
        for host in usable:
            try:
                return call(host)
            except (NotFound, Unavailable, PermissionDenied) as exc:
                error = exc
                if not host.is_mirror:
                    break
        assert error is not None
        raise error

    def _check(self, resp: Response, what: str, *expected: int) -> None:
        if resp.status in expected:
            return
        body = resp.read_limited(MAX_ERROR_BODY, f"error body for {what}") if resp.status else b""
        detail = body.decode(errors="replace").strip()[:300]
        if resp.status == 404:
            raise NotFound(f"{what} not found ({detail or 'HTTP 404'})")
        if resp.status in (401, 403):
            raise PermissionDenied(f"{what}: access denied (HTTP {resp.status}) {detail}")
        if resp.status >= 500 or resp.status == 429:
            raise Unavailable(f"{what}: registry error HTTP {resp.status} {detail}")
        raise Internal(f"{what}: unexpected HTTP {resp.status} {detail}")

    def resolve(self, ref: Reference | None = None) -> tuple[Descriptor, bytes]:
        """The top manifest or index of ref (default: this repository's), verified."""
        ref = ref or self.ref
        capability = PULL if ref.digest is not None else RESOLVE
        return self._each_host(capability, lambda h: self._get_manifest(h, ref.object, ref))

    def fetch_manifest(self, desc: Descriptor) -> bytes:
        """A manifest or index by descriptor, checked against its digest and size."""
        if desc.size > MAX_MANIFEST:
            raise InvalidArgument(
                f"manifest {desc.digest} is {desc.size} bytes, more than the limit {MAX_MANIFEST}"
            )
        got, data = self._each_host(PULL, lambda h: self._get_manifest(h, str(desc.digest), None))
        if got.size != desc.size:
            raise InvalidArgument(
                f"manifest {desc.digest} has {got.size} bytes, the descriptor says {desc.size}"
            )
        return data

    def _get_manifest(
        self, host: RegistryHost, obj: str, ref: Reference | None
    ) -> tuple[Descriptor, bytes]:
        what = f"manifest {self.ref.path}:{obj} on {host.host}"
        resp = self._manifest_request(host, "GET", obj, headers={"Accept": MANIFEST_ACCEPT})
        self._check(resp, what, 200)
        data = resp.read_limited(MAX_MANIFEST, what)
        digest = Digest.of_bytes(data)
        if obj.startswith("sha256:") and str(digest) != obj:
            raise InvalidArgument(f"{what} has digest {digest}, expected {obj}")
        media_type, _ = detect_media_type(data, resp.header("Content-Type").split(";")[0], what)
        return Descriptor(media_type, digest, len(data)), data

    def _manifest_request(
        self,
        host: RegistryHost,
        method: str,
        obj: str,
        *,
        headers: dict[str, str],
        body: Body = b"",
    ) -> Response:
        """method on manifests/<obj> (a tag or digest) of this repository; PUT needs push scope."""
        scope = self.push_scope if method == "PUT" else self.pull_scope
        path = f"/{self.ref.path}/manifests/{obj}"
        return self.transport.request(
            host, method, path, scope=scope, headers=headers, body=body, query=self._query(host)
        )

    def open_blob(self, desc: Descriptor, offset: int = 0) -> BlobStream:
        """A stream of the blob from offset (HTTP Range), with redirects followed."""
        return self._each_host(PULL, lambda h: self._open_blob(h, desc, offset))

    def _open_blob(self, host: RegistryHost, desc: Descriptor, offset: int) -> BlobStream:
        what = f"blob {desc.digest} of {self.ref.path} on {host.host}"
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        resp = self.transport.request(
            host,
            "GET",
            f"/{self.ref.path}/blobs/{desc.digest}",
            scope=self.pull_scope,
            headers=headers,
            query=self._query(host),
        )
        self._check(resp, what, 200, 206)
        start = _range_start(resp, what) if resp.status == 206 else 0
        if start != (offset if resp.status == 206 else 0):
            resp.close()
            raise InvalidArgument(f"{what}: asked for bytes from {offset}, got from {start}")
        length = resp.header("Content-Length")
        if length.isascii() and length.isdigit() and int(length) != desc.size - start:
            resp.close()
            raise InvalidArgument(
                f"{what}: registry sends {int(length) + start} bytes, the descriptor says "
                f"{desc.size}"
            )
        stream = BlobStream(resp, desc, start)
        while stream.offset < offset:
            if not stream.read(min(CHUNK, offset - stream.offset)):
                break
        return stream

    def blob_exists(self, digest: Digest) -> bool:
        """True if the registry has the blob in this repository."""

        def head(host: RegistryHost) -> bool:
            resp = self.transport.request(
                host, "HEAD", f"/{self.ref.path}/blobs/{digest}", scope=self.push_scope
            )
            if resp.status == 404:
                return False
            self._check(resp, f"blob {digest} of {self.ref.path}", 200)
            return True

        return self._each_host(PUSH, head)

    def mount_blob(self, digest: Digest, source_path: str) -> bool:
        """Cross-repository mount from source_path; False if the registry wants an upload."""

        def post(host: RegistryHost) -> bool:
            scope = f"{self.push_scope} repository:{source_path}:pull"
            resp = self.transport.request(
                host,
                "POST",
                f"/{self.ref.path}/blobs/uploads/",
                scope=scope,
                query={"mount": str(digest), "from": source_path},
            )
            self._check(resp, f"mount of blob {digest} into {self.ref.path}", 201, 202)
            resp.read()
            return resp.status == 201

        return self._each_host(PUSH, post)

    def upload_blob(self, desc: Descriptor, source: Upload, chunk_size: int | None = None) -> None:
        """Upload a blob read from source: one PUT, or PATCHes of chunk_size then a PUT."""
        self._each_host(PUSH, lambda h: self._upload(h, desc, source, chunk_size))

    def _upload(
        self, host: RegistryHost, desc: Descriptor, source: Upload, chunk_size: int | None
    ) -> None:
        what = f"upload of blob {desc.digest} to {self.ref.path}"
        resp = self.transport.request(
            host, "POST", f"/{self.ref.path}/blobs/uploads/", scope=self.push_scope
        )
        self._check(resp, what, 202)
        resp.read()
        location = resp.header("Location")
        source.seek(0)
        body: Body = source
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(desc.size)}
        if chunk_size:
            location = self._patch_chunks(host, location, source, chunk_size, what)
            body, headers["Content-Length"] = b"", "0"
        query = {"digest": str(desc.digest)}
        resp = self._at(host, "PUT", location, headers=headers, body=body, query=query)
        self._check(resp, what, 201)
        resp.read()

    def _patch_chunks(
        self, host: RegistryHost, location: str, source: Upload, chunk_size: int, what: str
    ) -> str:
        """PATCH source to the upload in chunk_size pieces; returns the last Location."""
        offset = 0
        while chunk := source.read(chunk_size):
            headers = {
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
            }
            resp = self._at(host, "PATCH", location, headers=headers, body=chunk, query={})
            self._check(resp, what, 202)
            resp.read()
            location = resp.header("Location") or location
            offset += len(chunk)
        return location

    def _at(
        self,
        host: RegistryHost,
        method: str,
        location: str,
        *,
        headers: dict[str, str],
        body: Body,
        query: dict[str, str],
    ) -> Response:
        """A request to an upload Location (absolute or relative to the host)."""
        parts = urlsplit(location)
        api = host.path
        path = parts.path[len(api) :] if parts.path.startswith(api) else parts.path
        query = {**dict(parse_qsl(parts.query)), **query}
        return self.transport.request(
            host, method, path, scope=self.push_scope, headers=headers, body=body, query=query
        )

    def put_manifest(self, tag_or_digest: str, media_type: str, data: bytes) -> Digest:
        """Push a manifest or index under a tag (or its digest); returns its digest."""

        def put(host: RegistryHost) -> Digest:
            headers = {"Content-Type": media_type}
            resp = self._manifest_request(host, "PUT", tag_or_digest, headers=headers, body=data)
            self._check(resp, f"manifest {self.ref.path}:{tag_or_digest}", 201)
            resp.read()
            return Digest.of_bytes(data)

        return self._each_host(PUSH, put)
