"""Helpers shared by the image tests: certs.d directories and images put straight into a store."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from galley.fixtures import images as fi
from galley.images.store import Store
from galley.metadata.images import Image
from galley.snapshots.api import Mount

NS = "default"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh galley root under tmp_path."""
    opened = Store.open(str(tmp_path / "root"))
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    """Two fresh galley roots (one to send from, one to receive into)."""
    a, b = Store.open(str(tmp_path / "a")), Store.open(str(tmp_path / "b"))
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def write_hosts(root: Path, host: str, text: str | None = None) -> str:
    """root/certs.d with one hosts.toml for host (by default: its server, plain HTTP)."""
    certs = root / "certs.d"
    (certs / host).mkdir(parents=True, exist_ok=True)
    body = f'server = "http://{host}"\n' if text is None else text
    (certs / host / "hosts.toml").write_text(body)
    return str(certs)


def put_image(
    store: Store, name: str, image: fi.BuiltImage | fi.BuiltIndex, namespace: str = NS
) -> Image:
    """Store image's blobs and record it under name, as if it had been pulled (no unpack)."""
    put_blobs(store, image)
    return store.meta.put_image(namespace, Image(name=name, target=image.descriptor))


def put_blobs(store: Store, image: fi.BuiltImage | fi.BuiltIndex) -> None:
    """Put every blob of image into store's content store, verified by digest."""
    for digest, data in image.blobs().items():
        store.content.put(data, digest)


def read_view(store: Store, sn_name: str, chain: str) -> dict[str, os.stat_result]:
    """lstat of every path in a view of the committed snapshot chain (mounted read-only)."""
    sn = store.snapshotter(sn_name)
    key = f"test-view-{os.getpid()}"
    mounts = sn.view(key, chain)
    target = tempfile.mkdtemp()
    try:
        for m in mounts:
            m.mount(target)
        try:
            out = {}
            for dirpath, dirnames, filenames in os.walk(target):
                for name in dirnames + filenames:
                    full = os.path.join(dirpath, name)
                    out[os.path.relpath(full, target)] = os.lstat(full)
            return out
        finally:
            Mount.unmount(target)
    finally:
        os.rmdir(target)
        sn.remove(key)
