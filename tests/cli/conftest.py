"""CLI test fixtures: the real `galley` entry point as a subprocess, a store root, a registry."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from galley.fixtures.images import BuiltImage, BuiltIndex, build_image, build_index, random_layer
from galley.images.mediatypes import Platform
from galley.images.store import Store
from galley.metadata.images import Image
from tests.conftest import REPO
from tests.images.conftest import registry  # noqa: F401 - the shared registry fixture

GALLEY = str(REPO / ".venv" / "bin" / "galley")


@dataclass(frozen=True)
class Galley:
    """Runs `galley --root ROOT --hosts-dir HOSTS ...` and returns the finished process."""

    root: Path
    hosts_dir: Path

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [GALLEY, "--root", str(self.root), "--hosts-dir", str(self.hosts_dir), *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        assert "Traceback" not in done.stderr, done.stderr
        if check:
            assert done.returncode == 0, done.stderr
        return done


@pytest.fixture
def galley(tmp_path: Path) -> Galley:
    """The galley command on a fresh root."""
    (tmp_path / "certs.d").mkdir()
    return Galley(tmp_path / "root", tmp_path / "certs.d")


AMD64 = build_image([random_layer(2048, seed=1), random_layer(4096, seed=2)])
ARM64 = build_image([random_layer(2048, seed=1)], platform=Platform("linux", "arm64", "v8"))
INDEX = build_index([AMD64, ARM64])


def seed(root: Path, name: str, image: BuiltImage | BuiltIndex, namespace: str = "default") -> None:
    """Put an image's blobs and record into the store at root, as a pull would."""
    with Store.open(str(root)) as store:
        for blob in image.blobs().values():
            store.content.put(blob)
        store.meta.put_image(namespace, Image(name, image.descriptor))
