"""GC running in a loop while other processes ingest under leases: nothing held is lost."""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from galley.content.digest import Digest
from galley.images.check import check
from galley.images.mediatypes import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, Descriptor
from galley.images.store import Store
from galley.metadata.gc import collect
from galley.metadata.images import Image
from galley.metadata.leases import CONTENT

IMAGES = 8


def _ingest_images(args: tuple[str, int]) -> int:
    """Write IMAGES small images the way a pull does: lease first, blobs, then the record."""
    root, worker = args
    with Store.open(root) as store:
        for i in range(IMAGES):
            with store.meta.lease("default") as lease:
                layer = f"layer {worker}-{i}".encode()
                config = json.dumps({"rootfs": {"diff_ids": []}, "n": [worker, i]}).encode()
                descs = [
                    Descriptor(OCI_CONFIG, Digest.of_bytes(config), len(config)),
                    Descriptor(OCI_LAYER, Digest.of_bytes(layer), len(layer)),
                ]
                manifest = json.dumps(
                    {"config": descs[0].to_json(), "layers": [descs[1].to_json()]}
                ).encode()
                for data in (config, layer, manifest):
                    digest = str(Digest.of_bytes(data))
                    store.meta.add_lease_resource("default", lease.id, CONTENT, digest)
                    with store.content.writer(f"w-{digest}", Digest.of_bytes(data)) as w:
                        if not w.done:
                            w.write(data)
                        w.commit()
                target = Descriptor(OCI_MANIFEST, Digest.of_bytes(manifest), len(manifest))
                store.meta.put_image("default", Image(f"w{worker}/img:{i}", target))
    return IMAGES


def _collect_until(root: str, stop: threading.Event) -> int:
    """stop: a Manager's Event, a proxy typeshed types as threading.Event's."""
    runs = 0
    with Store.open(root) as store:
        while not stop.is_set() or runs == 0:
            collect(store)
            runs += 1
            time.sleep(0.005)
    return runs


def test_gc_during_ingests_frees_nothing_leased(tmp_path: Path) -> None:
    root = str(tmp_path / "root")
    Store.open(root).close()
    manager = multiprocessing.Manager()
    stop = manager.Event()
    with ProcessPoolExecutor(3) as pool:
        gc = pool.submit(_collect_until, root, stop)
        try:
            done = list(pool.map(_ingest_images, [(root, 0), (root, 1)]))
        finally:
            stop.set()
        assert gc.result() > 0
    manager.shutdown()
    assert done == [IMAGES, IMAGES]
    with Store.open(root) as store:
        assert len(store.meta.list_images("default")) == 2 * IMAGES
        assert check(store) == []
        assert collect(store).removed_blobs == ()
        assert store.meta.list_leases("default") == []
