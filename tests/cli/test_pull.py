"""`galley pull` from the real registry: plain lines, bars on a tty, --quiet, then `images`."""

from __future__ import annotations

import json
import os
import pty
import subprocess

import pytest

from galley.cli.output import human_size
from galley.fixtures import images as fi
from galley.fixtures import registry as reg
from tests.cli.conftest import AMD64, GALLEY, INDEX, Galley

pytestmark = [pytest.mark.root, pytest.mark.registry]


def hosts(galley: Galley, registry: reg.Registry) -> None:
    """A hosts.toml that reaches the plain-HTTP test registry."""
    (galley.hosts_dir / registry.host).mkdir(exist_ok=True)
    (galley.hosts_dir / registry.host / "hosts.toml").write_text(
        f'server = "http://{registry.host}"\n'
    )


def test_pull_then_images_json(galley: Galley, registry: reg.Registry) -> None:
    hosts(galley, registry)
    fi.push_image(registry.host, "team/app", "1", AMD64)
    ref = f"{registry.host}/team/app:1"
    out = galley("pull", ref).stdout.splitlines()
    assert out[-1] == f"pulled {ref} ({AMD64.descriptor.digest})"
    layer = AMD64.layers[0].descriptor.digest
    assert (
        f"layer {layer.algorithm}:{layer.hex[:12]} done {human_size(len(AMD64.layers[0].data))}"
        in out
    )
    [listed] = json.loads(galley("images", "-o", "json").stdout)
    assert listed["name"] == ref
    assert listed["digest"] == str(AMD64.descriptor.digest)
    assert listed["platforms"] == ["linux/amd64"]
    again = galley("pull", "--quiet", ref)
    assert again.stdout == ref + "\n"
    assert galley("check").stdout == "ok\n"


def test_rmi_prune_after_pull_frees_blobs_and_snapshots(
    galley: Galley, registry: reg.Registry
) -> None:
    hosts(galley, registry)
    fi.push_image(registry.host, "team/gone", "1", AMD64)
    ref = f"{registry.host}/team/gone:1"
    galley("pull", "-q", ref)
    rows = {r["kind"]: r for r in json.loads(galley("du", "-o", "json").stdout)}
    assert rows["snapshots (overlayfs)"]["count"] == len(AMD64.layers)
    out = galley("rmi", "--prune", ref).stdout
    assert f"{len(AMD64.blobs())} blobs, {len(AMD64.layers)} snapshots" in out
    rows = {r["kind"]: r for r in json.loads(galley("du", "-o", "json").stdout)}
    assert rows["snapshots (overlayfs)"]["count"] == 0
    assert rows["content blobs"]["count"] == 0


def test_pull_platform_from_index(galley: Galley, registry: reg.Registry) -> None:
    hosts(galley, registry)
    fi.push_image(registry.host, "team/multi", "1", INDEX)
    ref = f"{registry.host}/team/multi:1"
    galley("pull", "-q", "--platform", "linux/arm64/v8", ref)
    [listed] = json.loads(galley("images", "-o", "json").stdout)
    assert listed["platforms"] == ["linux/arm64/v8"]


def test_pull_shows_bars_on_a_tty(galley: Galley, registry: reg.Registry) -> None:
    hosts(galley, registry)
    fi.push_image(registry.host, "team/tty", "1", AMD64)
    parent, child = pty.openpty()
    cmd = [GALLEY, "--root", str(galley.root), "--hosts-dir", str(galley.hosts_dir)]
    proc = subprocess.Popen(
        [*cmd, "pull", f"{registry.host}/team/tty:1"], stdout=child, stderr=subprocess.PIPE
    )
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(parent, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(parent)
    assert proc.wait(timeout=60) == 0
    text = b"".join(chunks).decode()
    assert "\x1b[2K" in text
    assert "[====================]" in text


def test_pull_of_missing_tag_is_one_line(galley: Galley, registry: reg.Registry) -> None:
    hosts(galley, registry)
    done = galley("pull", f"{registry.host}/team/absent:1", check=False)
    assert done.returncode == 1
    assert done.stderr.startswith("galley: ")
    assert len(done.stderr.splitlines()) == 1
