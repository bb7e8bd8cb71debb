"""runc's conversions of OCI (cgroup v1 shaped) values to cgroup v2 files.

The runtime spec's resources describe v1 knobs; on v2 runc maps them linearly, with Go's
integer division (truncating toward zero), and galley maps them the same way so that the
same config.json gives the same cgroup files under either runtime.
"""

from __future__ import annotations

from galley.errors import InvalidArgument


def shares_to_weight(shares: int) -> int:
    """cpu.shares (2..262144) → cpu.weight (1..10000), runc's linear map; 0 stays unset."""
    return 0 if shares == 0 else 1 + _div(((shares - 2) * 9999), 262142)


def blkio_to_io_weight(weight: int) -> int:
    """blkio weight (10..1000) → io.weight (1..10000), runc's linear map; 0 stays unset."""
    return 0 if weight == 0 else 1 + _div((weight - 10) * 9999, 990)


def _div(a: int, b: int) -> int:
    """Integer division truncating toward zero, as runc's Go arithmetic does."""
    return -(-a // b) if a < 0 else a // b


def swap_max(swap: int, limit: int) -> int:
    """OCI memory.swap (memory+swap) → memory.swap.max (swap only); -1 unlimited, 0 unset."""
    if limit == -1 and swap == 0:
        return -1
    if swap in {-1, 0}:
        return swap
    if limit in {0, -1}:
        raise InvalidArgument(
            "linux.resources.memory.swap: cannot limit swap without a memory limit"
        )
    if swap < limit:
        raise InvalidArgument(
            "linux.resources.memory.swap: memory+swap limit must be >= the memory limit"
        )
    return swap - limit
