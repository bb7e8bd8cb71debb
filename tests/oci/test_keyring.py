"""Session keyrings: each container joins its own ("_ses.<id>", searchable so that exec'd
processes join it too), not the caller's, which holds the host's keys; --no-new-keyring
keeps the caller's. Compared with runc, through a static probe that describes its session
keyring."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from galley.kernel import keys
from tests.oci.conftest import Bundle, Runtime, in_user_namespace
from tests.oci.process_probe import build_static

pytestmark = pytest.mark.root

SOURCE = r"""
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(void) {
    long id = syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3 /* SESSION */, 0);
    char buf[256];
    long n = id < 0 ? -1 : syscall(SYS_keyctl, 6 /* DESCRIBE */, id, buf, sizeof buf - 1);
    if (n < 0) { perror("keyctl"); return 1; }
    buf[n] = 0;
    printf("%s\n", buf);
    return 0;
}
"""


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A static binary printing "type;uid;gid;perm;description" of its session keyring."""
    return build_static(tmp_path_factory, "keyring", SOURCE)


def with_probe(bundle: Bundle, probe: Path) -> Bundle:
    shutil.copy(probe, bundle.rootfs / "bin" / "keyring")
    bundle.config["process"]["args"] = ["/bin/keyring"]
    return bundle


def described(runtime: Runtime, bundle: Bundle, *options: str) -> tuple[str, str]:
    cid = runtime.new_id()
    res = runtime("run", *options, "-b", str(bundle.write()), cid)
    assert res.returncode == 0, res.stderr
    return cid, res.stdout.strip()


def test_each_container_has_its_own_session_keyring(
    any_runtime: Runtime, bundle: Bundle, probe: Path
) -> None:
    cid, seen = described(any_runtime, with_probe(bundle, probe))
    assert seen == f"keyring;0;0;3f1b0000;_ses.{cid}"  # runc's name, and search for its uid


def test_exec_joins_the_containers_keyring(
    any_runtime: Runtime, bundle: Bundle, probe: Path
) -> None:
    with_probe(bundle, probe).config["process"]["args"] = ["sleep", "60"]
    cid = any_runtime.detached(bundle)
    res = any_runtime("exec", cid, "/bin/keyring")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"keyring;0;0;3f1b0000;_ses.{cid}"


def test_no_new_keyring_keeps_the_callers(
    any_runtime: Runtime, bundle: Bundle, probe: Path
) -> None:
    _, seen = described(any_runtime, with_probe(bundle, probe), "--no-new-keyring")
    assert seen == keys.describe(keys.session_keyring())


def test_in_a_user_namespace_others_may_search_it(
    any_runtime: Runtime,
    open_bundle: Bundle,
    probe: Path,
) -> None:
    in_user_namespace(open_bundle)
    cid, seen = described(any_runtime, with_probe(open_bundle, probe))
    kind, _uid, _gid, perm, name = seen.split(";")
    assert (kind, name) == ("keyring", f"_ses.{cid}")
    assert int(perm, 16) & keys.KEY_OTH_SEARCH, seen
