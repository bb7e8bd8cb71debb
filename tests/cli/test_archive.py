"""`galley export` then `galley import` into another root, in both archive formats; push."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from galley.fixtures import registry as reg
from tests.cli.conftest import AMD64, Galley, seed


@pytest.mark.parametrize("fmt", ["oci", "docker"])
def test_export_import_roundtrip(galley: Galley, tmp_path: Path, fmt: str) -> None:
    seed(galley.root, "docker.io/library/app:1", AMD64)
    tar = tmp_path / f"app-{fmt}.tar"
    out = galley("export", "--format", fmt, str(tar), "app:1").stdout
    assert out == f"exported 1 image(s) to {tar}\n"
    other = Galley(tmp_path / "other", galley.hosts_dir)
    names = other("import", str(tar)).stdout.split()
    assert "docker.io/library/app:1" in names
    [listed] = json.loads(other("images", "-o", "json").stdout)
    assert listed["platforms"] == ["linux/amd64"]
    assert other("check").stdout == "ok\n"


def test_import_of_a_non_archive_is_one_line(galley: Galley, tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar at all")
    done = galley("import", str(junk), check=False)
    assert done.returncode == 1
    assert done.stderr == f"galley: archive '{junk}' is not a tar (plain, gzip, bzip2 or xz)\n"


@pytest.mark.registry
def test_push_then_pull_elsewhere(galley: Galley, tmp_path: Path, registry: reg.Registry) -> None:
    (galley.hosts_dir / registry.host).mkdir()
    (galley.hosts_dir / registry.host / "hosts.toml").write_text(
        f'server = "http://{registry.host}"\n'
    )
    seed(galley.root, "docker.io/library/app:1", AMD64)
    remote = f"{registry.host}/cli/pushed:2"
    out = galley("push", "app:1", remote).stdout.splitlines()
    assert out[-1] == f"pushed {remote}"
    other = Galley(tmp_path / "other", galley.hosts_dir)
    other("pull", "-q", "--no-unpack", remote)
    [listed] = json.loads(other("images", "-o", "json").stdout)
    assert listed["digest"] == str(AMD64.descriptor.digest)
