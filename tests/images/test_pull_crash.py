"""Crash test: a pulling process killed at random points, then a pull that resumes and succeeds."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from galley.content.digest import Digest
from galley.fixtures import images as fi
from galley.fixtures import registry as reg
from galley.images.pull import Progress, pull
from galley.images.store import Store
from tests.conftest import REPO

NS = "default"
LAYER = 3 << 20


def _check_clean(store: Store, image: fi.BuiltImage) -> None:
    assert store.content.ingests() == []
    for info in store.content.walk():
        with store.content.open(info.digest) as fh:
            assert Digest.of_chunks(iter(lambda: fh.read(1 << 20), b"")) == info.digest
    for digest in image.blobs():
        assert store.content.exists(digest)


def _child(root: Path, hosts: str, ref: str, kill_after: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": f"{REPO}/src:{REPO}"}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.images.pull_child", str(root), hosts, ref, str(kill_after)],
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
    )


def _setup(tmp_path: Path, registry: reg.Registry) -> tuple[fi.BuiltImage, str, str]:
    layers = [fi.random_layer(LAYER, seed=100 + i, files=3) for i in range(3)]
    image = fi.build_image(layers, compression="")
    fi.push_image(registry.host, "crash/app", "t", image)
    certs = tmp_path / "certs.d" / registry.host
    certs.mkdir(parents=True)
    (certs / "hosts.toml").write_text(f'server = "http://{registry.host}"\n')
    return image, f"{registry.host}/crash/app:t", str(tmp_path / "certs.d")


def _pull_and_check(root: Path, hosts: str, ref: str, image: fi.BuiltImage) -> dict[str, int]:
    """Pull in this process; returns the first offset downloaded per blob."""
    store = Store.open(str(root))
    try:
        events: list[Progress] = []
        got = pull(store, ref, namespace=NS, hosts_dir=hosts, unpack=False, progress=events.append)
        assert got.target.digest == image.descriptor.digest
        _check_clean(store, image)
    finally:
        store.close()
    first: dict[str, int] = {}
    for e in events:
        if e.status == "downloading":
            first.setdefault(e.digest, e.offset)
    return first


def test_killed_pulls_resume_and_leave_a_clean_store(
    tmp_path: Path, registry: reg.Registry
) -> None:
    image, ref, hosts = _setup(tmp_path, registry)
    rng = random.Random()
    total = sum(len(x.data) for x in image.layers)
    root = tmp_path / "root"
    for attempt in range(2):
        proc = _child(root, hosts, ref, rng.randrange(2 << 20, total - (1 << 20)))
        _, err = proc.communicate(timeout=60)
        # The second child resumes, so it may finish before its byte count is reached.
        assert proc.returncode == -signal.SIGKILL or attempt == 1, err.decode()
    store = Store.open(str(root))
    partial = {i.ref.removeprefix("fetch-"): i for i in store.content.ingests()}
    store.close()
    assert partial or proc.returncode == 0, "the killed pulls left partial ingests"
    first = _pull_and_check(root, hosts, ref, image)
    for digest, ingest in partial.items():
        if (1 << 20) <= ingest.offset < (ingest.total or 0):
            assert first[digest] > ingest.offset, f"partial ingest of {digest} not resumed"


def test_pulls_killed_at_random_moments(tmp_path: Path, registry: reg.Registry) -> None:
    image, ref, hosts = _setup(tmp_path, registry)
    rng = random.Random()
    root = tmp_path / "root"
    for _ in range(3):
        proc = _child(root, hosts, ref, 1 << 40)
        time.sleep(rng.uniform(0.05, 0.5))
        proc.kill()
        proc.wait(timeout=30)
    _pull_and_check(root, hosts, ref, image)
