"""A pull in a child process that SIGKILLs itself once KILL_AFTER bytes of layers have arrived.

python -m tests.images.pull_child ROOT HOSTS_DIR REF KILL_AFTER
"""

from __future__ import annotations

import os
import signal
import sys

from galley.images.pull import Progress, pull
from galley.images.store import Store


def main(root: str, hosts_dir: str, ref: str, kill_after: int) -> None:
    seen: dict[str, int] = {}

    def progress(p: Progress) -> None:
        if p.kind == "layer" and p.status == "downloading":
            seen[p.digest] = p.offset
            if sum(seen.values()) >= kill_after:
                os.kill(os.getpid(), signal.SIGKILL)

    store = Store.open(root)
    pull(store, ref, namespace="default", hosts_dir=hosts_dir, unpack=False, progress=progress)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
