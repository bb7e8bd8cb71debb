"""galley pull+unpack against containerd's own `ctr images pull`, same registry, same images.

    python -m bench.bench_pull [-n RUNS] [--big-runs RUNS] [--zstd] [--keep]

Starts Debian's docker-registry on 127.0.0.1 and a private containerd (own root, state and
socket; CRI disabled), pushes two images built by galley.fixtures.images:

    small     ~5 MB    busybox + two 2 MB random-data layers
    big       ~100 MB  busybox + two 25 MB random layers + two 25 MB text layers + 3000 small files
    big-zstd           the same, zstd-compressed (with --zstd)

then times, interleaved run by run, `galley --root R --hosts-dir H pull REF` (a fresh root each
run: download, verify, unpack into overlayfs snapshots) and `ctr images pull --plain-http REF`
(which unpacks into containerd's overlayfs snapshotter; the image is removed with --sync GC
between runs so that every pull is cold). Prints medians and the ratio containerd / galley
(above 1: galley is faster). Everything it started is killed and removed at the end.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from galley.fixtures import registry as reg
from galley.fixtures.containerd import Containerd
from galley.fixtures.images import (
    BuiltImage,
    TarEntry,
    build_image,
    busybox_layer,
    push_image,
    random_layer,
    tar_layer,
)

REPO = Path(__file__).resolve().parent.parent
GALLEY = str(REPO / ".venv" / "bin" / "galley")
NAMESPACE = "galley-bench"


def text_layer(size: int, seed: int, files: int = 1, prefix: str = "text") -> bytes:
    """A layer of compressible text files (words drawn at random) totalling about size bytes."""
    rng = random.Random(seed)
    words = [
        bytes(rng.choices(b"abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 9))) for _ in range(4000)
    ]
    entries = [TarEntry(prefix, "dir", mode=0o755)]
    per_file = max(1, size // files)
    for i in range(files):
        data = bytearray()
        while len(data) < per_file:
            data += b" ".join(rng.choices(words, k=200)) + b"\n"
        entries.append(TarEntry(f"{prefix}/f{i:05d}.txt", data=bytes(data[:per_file])))
    return tar_layer(entries)


def images(zstd: bool = False) -> dict[str, BuiltImage]:
    """The benchmark images (and the big one again with zstd layers, when asked)."""
    small = [
        busybox_layer(),
        random_layer(2 << 20, seed=1),
        random_layer(2 << 20, seed=2, prefix="d2"),
    ]
    big = [
        busybox_layer(),
        random_layer(25 << 20, seed=3, prefix="r1"),
        random_layer(25 << 20, seed=4, prefix="r2"),
        text_layer(25 << 20, seed=5, prefix="t1"),
        text_layer(25 << 20, seed=6, prefix="t2"),
        text_layer(24 << 20, seed=7, files=3000, prefix="many"),
    ]
    built = {"small": build_image(small), "big": build_image(big)}
    if zstd:
        built["big-zstd"] = build_image(big, compression="zstd")
    return built


def galley_pull(workdir: Path, hosts: Path, ref: str) -> Callable[[], None]:
    """One cold galley pull into a fresh root."""

    def run() -> None:
        root = workdir / "galley-root"
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run(
            [GALLEY, "--root", str(root), "--hosts-dir", str(hosts), "pull", "--quiet", ref],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    return run


def ctr_pull(containerd: Containerd, ref: str) -> Callable[[], None]:
    """One cold ctr pull (the image and, by synchronous GC, its blobs and snapshots removed)."""

    def run() -> None:
        containerd.ctr("images", "pull", "--plain-http", ref)

    return run


def timed(call: Callable[[], None]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def measure(
    name: str, ref: str, runs: int, galley: Callable[[], None], containerd: Containerd
) -> None:
    """Interleave galley and ctr pulls of ref; print medians and the ratio."""
    times: dict[str, list[float]] = {"galley": [], "containerd": []}
    ctr = ctr_pull(containerd, ref)
    for _ in range(runs):
        times["galley"].append(timed(galley))
        times["containerd"].append(timed(ctr))
        containerd.ctr("images", "rm", "--sync", ref)
    g, c = (statistics.median(times[k]) for k in ("galley", "containerd"))
    runs_text = ", ".join(f"{t:.2f}" for t in times["galley"])
    ctr_text = ", ".join(f"{t:.2f}" for t in times["containerd"])
    print(f"{name:6} galley median {g:6.3f}s  [{runs_text}]")
    print(f"{'':6} ctr    median {c:6.3f}s  [{ctr_text}]")
    verdict = "galley faster" if c > g else "containerd faster"
    print(f"{'':6} containerd/galley = {c / g:.2f}  ({verdict})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-n", "--runs", type=int, default=5, help="runs of the small image")
    parser.add_argument("--big-runs", type=int, default=3, help="runs of the big image")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--zstd", action="store_true", help="also the big image with zstd layers")
    args = parser.parse_args(argv)
    for tool in ("containerd", "ctr", reg.REGISTRY_BIN):
        if shutil.which(tool) is None:
            print(f"bench_pull: {tool} is not installed", file=sys.stderr)
            return 2
    workdir = Path(tempfile.mkdtemp(prefix="galley-bench-pull-", dir="/var/tmp"))
    registry = containerd = None
    try:
        built = images(zstd=args.zstd)
        registry = reg.start_registry(workdir / "registry")
        hosts = workdir / "hosts"
        (hosts / registry.host).mkdir(parents=True)
        (hosts / registry.host / "hosts.toml").write_text(f'server = "http://{registry.host}"\n')
        for name, image in built.items():
            push_image(registry.host, f"bench/{name}", "1", image)
        (workdir / "containerd").mkdir()
        containerd = Containerd(workdir / "containerd", NAMESPACE)
        for name, image in built.items():
            ref = f"{registry.host}/bench/{name}:1"
            size = sum(layer.descriptor.size for layer in image.layers) / 1e6
            print(f"{name}: {len(image.layers)} layers, {size:.1f} MB compressed")
            runs = args.runs if name == "small" else args.big_runs
            measure(name, ref, runs, galley_pull(workdir, hosts, ref), containerd)
        return 0
    finally:
        if containerd is not None:
            containerd.stop()
        if registry is not None:
            registry.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
