#!/usr/bin/env python3
"""Layer fuzzer: random layer tars applied by galley's unpacker (galley.fixtures.tarfuzz).

Hostile cases (the default) mix every tar entry type, whiteouts, names that climb out or are
absolute, links out of the tree, and metadata no file can have; each must be applied or
refused with InvalidArgument, and leave everything outside its target as it was. Legal
cases (--legal) are layers a registry could serve, applied natively and as overlay layers:
the native tree and the overlay layers mounted as one overlayfs must show the same files.

    .venv/bin/python scripts/tarfuzz.py --seed 1 -n 5000              # hostile layers
    .venv/bin/python scripts/tarfuzz.py --seed 1 -n 2000 --legal      # native against overlay
    .venv/bin/python scripts/tarfuzz.py --seed 1 --case 17 --legal    # replay one case

Needs root (device nodes, trusted.* attributes, an overlayfs mount). A case runs in ~3 ms
(hostile) or ~10 ms (legal) in its own directory under --workdir, removed after it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from galley.fixtures import tarfuzz


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("-n", "--cases", type=int, default=1000)
    parser.add_argument("--case", type=int, help="run this case alone")
    parser.add_argument("--legal", action="store_true", help="legal layers, native vs overlay")
    parser.add_argument("--workdir", default="/tmp", help="where the cases' directories go")
    args = parser.parse_args()
    check = tarfuzz.check_legal_case if args.legal else tarfuzz.check_case
    numbers = [args.case] if args.case is not None else range(args.cases)
    failed = 0
    with tempfile.TemporaryDirectory(prefix="tarfuzz-", dir=args.workdir) as work:
        for number in numbers:
            problems = check(args.seed, number, Path(work))
            if problems:
                failed += 1
                print(f"case {number} (--seed {args.seed} --case {number}):")
                for problem in problems:
                    print(f"  {problem}")
    print(f"{len(numbers)} cases, {failed} with problems")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
