"""linux.netDevices (runtime-spec 1.3): host interfaces moved into the container's network
namespace, renamed, with their global addresses, MTU and MAC; put back when create fails.

runc 1.1 does not know the field, so these run on galley-runc alone; the cases follow runc
1.3's netdev tests. A veth pair stands in for a host NIC (this kernel has no dummy driver):
the end moved in is what the container sees; deleting the other end removes both.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.oci.conftest import Bundle, Runtime

pytestmark = [
    pytest.mark.root,
    # setup.sh installs iproute2; the device machine (docs/testing.md) has none
    pytest.mark.skipif(shutil.which("ip") is None, reason="no ip command (iproute2)"),
]


def ip(*args: str, check: bool = True) -> str:
    res = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and res.returncode:
        raise AssertionError(f"ip {' '.join(args)}: {res.stderr}")
    return res.stdout


@dataclass
class Veth:
    name: str  # the end that moves
    peer: str  # the end left on the host


@pytest.fixture
def veth() -> Iterator[Veth]:
    tag = uuid.uuid4().hex[:8]
    pair = Veth(f"gn{tag}a", f"gn{tag}b")
    ip("link", "add", pair.name, "type", "veth", "peer", "name", pair.peer)
    try:
        yield pair
    finally:
        ip("link", "del", pair.peer, check=False)  # takes the other end, wherever it is


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"galley-{uuid.uuid4().hex[:8]}"
    ip("netns", "add", name)
    try:
        yield name
    finally:
        ip("netns", "del", name, check=False)


def with_devices(bundle: Bundle, devices: dict[str, dict[str, str]], *args: str) -> Bundle:
    bundle.config["linux"]["netDevices"] = devices
    if args:
        bundle.config["process"]["args"] = list(args)
    return bundle


def join(bundle: Bundle, path: str) -> None:
    for namespace in bundle.config["linux"]["namespaces"]:
        if namespace["type"] == "network":
            namespace["path"] = path


def on_host(name: str) -> bool:
    return (
        subprocess.run(["ip", "link", "show", name], capture_output=True, check=False).returncode
        == 0
    )


def test_moves_in_renamed_with_global_addresses_mtu_and_mac(
    runtime: Runtime, bundle: Bundle, veth: Veth
) -> None:
    ip("link", "set", veth.name, "mtu", "1789", "address", "00:11:22:33:44:55")
    ip("address", "add", "169.254.169.77/32", "dev", veth.name)
    ip("address", "add", "127.0.0.33/8", "dev", veth.name)  # scope host: stays behind
    ip("address", "add", "fd00::77/64", "dev", veth.name, "nodad")
    with_devices(bundle, {veth.name: {"name": "ctr0"}}, "ip", "address", "show", "dev", "ctr0")
    res = runtime("run", "-b", str(bundle.write()), runtime.new_id())
    assert res.returncode == 0, res.stderr
    shown = res.stdout
    assert "mtu 1789" in shown and "link/ether 00:11:22:33:44:55" in shown, shown
    assert "inet 169.254.169.77/32 scope global ctr0" in shown, shown
    assert "inet6 fd00::77/64 scope global" in shown, shown
    assert "127.0.0.33" not in shown
    assert ",UP" in shown.splitlines()[0], shown  # set up inside
    assert not on_host(veth.name)


def test_a_joined_namespace_keeps_the_device_after_delete(
    runtime: Runtime, bundle: Bundle, veth: Veth, netns: str
) -> None:
    ip("address", "add", "169.254.169.78/32", "dev", veth.name)
    join(bundle, f"/run/netns/{netns}")
    cid = runtime.detached(with_devices(bundle, {veth.name: {}}, "sleep", "60"))
    assert runtime("delete", "--force", cid).returncode == 0
    inside = ip("netns", "exec", netns, "ip", "address", "show", "dev", veth.name)
    assert "169.254.169.78/32" in inside, inside
    assert not on_host(veth.name)


def test_failed_create_puts_the_device_back(runtime: Runtime, bundle: Bundle, veth: Veth) -> None:
    ip("address", "add", "169.254.169.79/32", "dev", veth.name)
    with_devices(bundle, {veth.name: {"name": "ctr0"}})
    bundle.config["hooks"] = {"createRuntime": [{"path": "/bin/false"}]}  # after the move
    res = runtime("run", "-b", str(bundle.write()), runtime.new_id())
    assert res.returncode == 1
    assert "error running hook #0: error running hook: exit status 1" in res.stderr, res.stderr
    back = ip("address", "show", "dev", veth.name)
    assert "169.254.169.79/32 scope global" in back, back
    assert "state DOWN" in back, back
    assert runtime("list", "-q").stdout == ""


def test_a_name_taken_inside_is_refused_before_the_move(
    runtime: Runtime, bundle: Bundle, veth: Veth
) -> None:
    with_devices(bundle, {veth.name: {"name": "lo"}})
    res = runtime("run", "-b", str(bundle.write()), runtime.new_id())
    assert res.returncode == 1
    assert f"linux.netDevices.{veth.name}: the container's network namespace has an" in res.stderr
    assert on_host(veth.name)  # the kernel would have moved it, then refused the rename


def test_a_missing_device_fails_create_naming_it(runtime: Runtime, bundle: Bundle) -> None:
    with_devices(bundle, {"gnmissing0": {}})
    res = runtime("run", "-b", str(bundle.write()), runtime.new_id())
    assert res.returncode == 1
    assert "linux.netDevices.gnmissing0: the host has no network interface" in res.stderr
    assert runtime("list", "-q").stdout == ""


def test_the_hosts_own_namespace_is_refused(runtime: Runtime, bundle: Bundle, veth: Veth) -> None:
    join(bundle, f"/proc/{os.getpid()}/ns/net")
    with_devices(bundle, {veth.name: {}})
    res = runtime("run", "-b", str(bundle.write()), runtime.new_id())
    assert res.returncode == 1
    assert "linux.netDevices: the container has the host's network namespace" in res.stderr
    assert on_host(veth.name)


def test_only_permanent_addresses_move(runtime: Runtime, bundle: Bundle, veth: Veth) -> None:
    """A dynamic address's lifetime belongs to whoever gave it (DHCP, SLAAC): runc 1.3 and
    youki carry only the permanent global ones."""
    ip("address", "add", "169.254.169.81/32", "dev", veth.name)
    ip(
        "address",
        "add",
        "169.254.169.82/32",
        "dev",
        veth.name,
        "valid_lft",
        "300",
        "preferred_lft",
        "300",
    )
    with_devices(bundle, {veth.name: {}}, "ip", "address", "show", "dev", veth.name)
    res = runtime("run", "-b", str(bundle.write()), runtime.new_id())
    assert res.returncode == 0, res.stderr
    assert "169.254.169.81/32" in res.stdout
    assert "169.254.169.82" not in res.stdout


def test_a_failed_move_touches_nothing_in_a_joined_namespace(
    runtime: Runtime, bundle: Bundle, netns: str
) -> None:
    """A bridge cannot leave its namespace. The joined namespace has an interface of the
    same name of its own: the rollback once found it by name, set it down and tried to move
    it to the host."""
    name = f"gn{uuid.uuid4().hex[:8]}"
    ip("link", "add", name, "type", "bridge")
    try:
        ip("netns", "exec", netns, "ip", "link", "add", name, "type", "veth", "peer", "name", "p0")
        ip("netns", "exec", netns, "ip", "link", "set", name, "up")
        join(bundle, f"/run/netns/{netns}")
        with_devices(bundle, {name: {"name": "ctr0"}})
        res = runtime("run", "-b", str(bundle.write()), runtime.new_id())
        assert res.returncode == 1
        assert f"linux.netDevices.{name}: cannot move it" in res.stderr, res.stderr
        theirs = ip("netns", "exec", netns, "ip", "link", "show", name)
        assert "state DOWN" not in theirs and ",UP" in theirs, theirs
        assert on_host(name)
    finally:
        ip("link", "del", name, check=False)
