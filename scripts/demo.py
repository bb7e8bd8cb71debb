"""The main job, until the CRI server exists: image → snapshot → bundle → container, offline.

1. build a busybox image from Debian's busybox-static (galley.fixtures.images) as an OCI layout tar;
2. `galley import` it into a fresh store (content store + metadata + overlayfs snapshots);
3. `galley images` lists it;
4. prepare an active overlayfs snapshot on the image's top ChainID, mounted as the bundle's rootfs;
5. write config.json from the image config (Cmd/Env/WorkingDir) and `galley-runc run` it;
6. unmount, remove the snapshot and every temporary file.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from galley.content.digest import Digest
from galley.fixtures.busybox import default_config
from galley.fixtures.images import build_image, busybox_layer, write_oci_layout
from galley.images.mediatypes import Descriptor
from galley.images.store import Store, read_document
from galley.images.unpack import chain_ids
from galley.snapshots.api import Mount

IMAGE = "localhost/galley/busybox:demo"
SCRIPT = (
    "echo hello from a galley container; echo hostname=$(hostname) pid=$$ uid=$(id -u); "
    "echo rootfs: $(ls /); grep -c . /proc/self/mountinfo | sed 's/^/mounts inside: /'"
)


def show(*cmd: str) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="galley-demo.") as tmp:
        work = Path(tmp)
        root = str(work / "store")
        layout = write_oci_layout(work / "layout", build_image([busybox_layer()]), IMAGE)
        archive = work / "busybox.tar"
        with tarfile.open(archive, "w") as tar:
            for entry in sorted(layout.iterdir()):
                tar.add(entry, arcname=entry.name)
        show("galley", "--root", root, "import", str(archive))
        show("galley", "--root", root, "images")
        return run_container(root, work / "bundle")


def run_container(root: str, bundle: Path) -> int:
    with Store.open(root) as store:
        image = store.find_image("default", IMAGE)
        manifest = read_document(store.content, image.target)
        config = read_document(store.content, Descriptor.from_json(manifest["config"]))
        diff_ids = [Digest.parse(d) for d in config["rootfs"]["diff_ids"]]
        snapshotter = store.snapshotter("overlayfs")
        mounts = snapshotter.prepare("demo-rootfs", parent=str(chain_ids(diff_ids)[-1]))
        rootfs = bundle / "rootfs"
        rootfs.mkdir(parents=True)
        for m in mounts:
            m.mount(str(rootfs))
        try:
            spec = default_config(["sh", "-c", SCRIPT])
            image_config = config.get("config", {})
            spec["process"]["env"] = image_config.get("Env", spec["process"]["env"])  # type: ignore[index]
            spec["hostname"] = "galley-demo"
            (bundle / "config.json").write_text(json.dumps(spec, indent=2))
            print(f"+ galley-runc run --bundle {bundle} galley-demo", flush=True)
            return subprocess.run(
                ["galley-runc", "run", "--bundle", str(bundle), "galley-demo"], check=False
            ).returncode
        finally:
            Mount.unmount(str(rootfs))
            snapshotter.remove("demo-rootfs")


if __name__ == "__main__":
    sys.exit(main())
