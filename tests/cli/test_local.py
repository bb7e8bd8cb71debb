"""`galley` verbs on a local store: images, inspecti, tag, rmi, du, and one-line errors."""

from __future__ import annotations

import json
import socket

import yaml

from galley.cli.output import human_size
from galley.images.store import Store
from tests.cli.conftest import AMD64, ARM64, INDEX, Galley, seed


def test_images_table_json_and_yaml(galley: Galley) -> None:
    seed(galley.root, "docker.io/library/multi:1", INDEX)
    seed(galley.root, "127.0.0.1:5000/team/app:1", AMD64)
    lines = galley("images").stdout.splitlines()
    assert lines[0].split() == ["REF", "DIGEST", "SIZE", "PLATFORM"]
    rows = [line.split() for line in lines[1:]]
    assert rows[0][0] == "127.0.0.1:5000/team/app:1"
    assert rows[0][1] == AMD64.descriptor.digest.hex[:12]
    assert rows[0][-1] == "linux/amd64"
    assert rows[1][0] == "multi:1"
    assert rows[1][-1] == "linux/amd64,linux/arm64/v8"
    listed = json.loads(galley("images", "-o", "json").stdout)
    assert [i["name"] for i in listed] == ["127.0.0.1:5000/team/app:1", "docker.io/library/multi:1"]
    assert listed[0]["size"] == sum(len(b) for b in AMD64.blobs().values())
    assert listed[1]["digest"] == str(INDEX.descriptor.digest)
    assert yaml.safe_load(galley("images", "-o", "yaml").stdout) == listed
    assert galley("images", "-q").stdout.split() == [i["name"] for i in listed]
    assert galley("-n", "k8s.io", "images", "-q").stdout == ""


def test_inspecti_shows_record_manifest_and_config(galley: Galley) -> None:
    seed(galley.root, "docker.io/library/app:1", AMD64)
    info = json.loads(galley("inspecti", "app:1").stdout)
    assert info["name"] == "docker.io/library/app:1"
    assert info["target"]["digest"] == str(AMD64.descriptor.digest)
    docs = info["documents"]
    assert docs[str(AMD64.descriptor.digest)] == json.loads(AMD64.manifest)
    assert docs[str(AMD64.config_descriptor.digest)]["rootfs"]["type"] == "layers"


def test_tag_then_rmi_prune_frees_only_unshared_blobs(galley: Galley) -> None:
    seed(galley.root, "docker.io/library/multi:1", INDEX)
    assert galley("tag", "multi:1", "multi:2", "other/name:3").stdout.split() == [
        "docker.io/library/multi:2",
        "docker.io/other/name:3",
    ]
    seed(galley.root, "docker.io/library/arm:1", ARM64)
    out = galley("rmi", "multi:1", "multi:2", "other/name:3", "--prune").stdout
    assert "deleted docker.io/library/multi:2" in out
    with Store.open(str(galley.root)) as store:
        left = {b.digest for b in store.content.walk()}
    assert left == set(ARM64.blobs())
    assert f"{len(set(INDEX.blobs()) - left)} blobs" in out


def test_du_counts_blobs_and_metadata(galley: Galley) -> None:
    seed(galley.root, "docker.io/library/app:1", AMD64)
    rows = {r["kind"]: r for r in json.loads(galley("du", "-o", "json").stdout)}
    assert rows["content blobs"]["count"] == len(AMD64.blobs())
    assert rows["content blobs"]["bytes"] == sum(len(b) for b in AMD64.blobs().values())
    assert rows["ingests"]["count"] == 0
    assert rows["metadata"]["bytes"] > 0
    assert rows["reclaimable"] == {"kind": "reclaimable", "count": 0, "bytes": 0}
    galley("rmi", "app:1")
    rows = {r["kind"]: r for r in json.loads(galley("du", "-o", "json").stdout)}
    assert rows["reclaimable"]["count"] == len(AMD64.blobs())
    assert rows["reclaimable"]["bytes"] == rows["content blobs"]["bytes"]
    assert galley("prune").stdout.startswith(f"freed {human_size(rows['content blobs']['bytes'])}")
    rows = {r["kind"]: r for r in json.loads(galley("du", "-o", "json").stdout)}
    assert rows["content blobs"]["count"] == 0
    assert galley("du").stdout.splitlines()[-1].startswith("total")


MISSING = "galley: image 'docker.io/library/nope:latest' not found in namespace 'default'"


def test_errors_are_one_line_and_exit_1(galley: Galley) -> None:
    for args, message in [
        (("inspecti", "nope"), MISSING),
        (("rmi", "nope"), MISSING),
        (("tag", "nope", "x"), MISSING),
        (("pull", "Bad Ref"), "galley: image reference 'Bad Ref'"),
        (("-n", "bad/ns", "images"), "galley: namespace 'bad/ns' is not a valid namespace"),
        (("pull", "-u", "nopassword", "x"), "galley: --user wants USER:PASSWORD"),
        (("pull", f"127.0.0.1:{closed_port()}/x:y"), "galley: registry '127.0.0.1:"),
        (("import", "/nonexistent.tar"), "galley: archive '/nonexistent.tar' cannot be read:"),
    ]:
        done = galley(*args, check=False)
        assert done.returncode == 1, args
        assert done.stderr.startswith(message), done.stderr
        assert len(done.stderr.splitlines()) == 1, done.stderr
        assert "Errno" not in done.stderr, done.stderr


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then let go)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unusable_root_is_one_line(galley: Galley) -> None:
    galley.root.parent.joinpath("file").write_text("not a directory")
    done = Galley(galley.root.parent / "file" / "root", galley.hosts_dir)("images", check=False)
    assert done.returncode == 1
    assert done.stderr.startswith(f"galley: {galley.root.parent / 'file'}"), done.stderr
    assert ": not a directory" in done.stderr, done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_inspecti_and_rmi_by_digest_prefix(galley: Galley) -> None:
    seed(galley.root, "docker.io/library/app:1", AMD64)
    seed(galley.root, "docker.io/library/arm:1", ARM64)
    galley("tag", "app:1", "app:2")
    short = AMD64.descriptor.digest.hex[:12]
    assert json.loads(galley("inspecti", short).stdout)["digest"] == str(AMD64.descriptor.digest)
    out = galley("rmi", f"sha256:{short}").stdout.split("\n")
    assert out[:2] == ["deleted docker.io/library/app:1", "deleted docker.io/library/app:2"]
    assert galley("images", "-q").stdout.split() == ["docker.io/library/arm:1"]
    done = galley("rmi", "abcdef0123", check=False)
    assert done.returncode == 1
    assert done.stderr.startswith("galley: image 'docker.io/library/abcdef0123:latest' not found")
