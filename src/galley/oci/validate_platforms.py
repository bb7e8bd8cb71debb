"""The sections config.json has for other platforms: solaris, windows, vm and zos.

A Linux runtime runs none of them, but runc reads the whole document into its Go types, so a
section of the wrong shape (`"windows": "x"`, a vm kernel path that is a number) fails its
create; here it is refused the same way, naming the field. Only shapes are checked: what the
values mean is the other platform's business. Imported only when one of them is present.
"""

from __future__ import annotations

from galley.oci.validate_fields import (
    I64,
    U16,
    U32,
    U64,
    boolean,
    each,
    fields,
    obj,
    string,
    strings,
)

TYPE_CHECKING = False  # typing costs ~3 ms to import; mypy knows this name
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Check = Callable[[str, Any], object]


def _struct(checks: dict[str, Check]) -> Check:
    """A checker of an object whose known members are checked by checks (others ignored)."""
    return lambda path, value: fields(path, obj(path, value), checks)


def _array_of(check: Check) -> Check:
    return lambda path, value: each(path, value, check)


_ANET_FIELDS = (
    "linkname",
    "lowerLink",
    "allowedAddress",
    "configureAllowedAddress",
    "defrouter",
    "linkProtection",
    "macAddress",
)
_SOLARIS = _struct(
    {
        "milestone": string,
        "limitpriv": string,
        "maxShmMemory": string,
        "anet": _array_of(_struct(dict.fromkeys(_ANET_FIELDS, string))),
        "cappedCPU": _struct({"ncpus": string}),
        "cappedMemory": _struct({"physical": string, "swap": string}),
    }
)

_WINDOWS = _struct(
    {
        "layerFolders": strings,
        "devices": _array_of(_struct({"id": string, "idType": string})),
        "resources": _struct(
            {
                "memory": _struct({"limit": U64}),
                "cpu": _struct({"count": U64, "shares": U16, "maximum": U16}),
                "storage": _struct({"iops": U64, "bps": U64, "sandboxSize": U64}),
            }
        ),
        # credentialSpec may be any JSON value
        "servicing": boolean,
        "ignoreFlushesDuringBoot": boolean,
        "hyperv": _struct({"utilityVMPath": string}),
        "network": _struct(
            {
                "endpointList": strings,
                "allowUnqualifiedDNSQuery": boolean,
                "DNSSearchList": strings,
                "networkSharedContainerName": string,
                "networkNamespace": string,
            }
        ),
    }
)

_PROGRAM = _struct({"path": string, "parameters": strings})

_VM = _struct(
    {
        "hypervisor": _PROGRAM,
        "kernel": _struct({"path": string, "parameters": strings, "initrd": string}),
        "image": _struct({"path": string, "format": string}),
    }
)

_ZOS = _struct(
    {
        "devices": _array_of(
            _struct(
                {
                    "path": string,
                    "type": string,
                    "major": I64,
                    "minor": I64,
                    "fileMode": U32,
                    "uid": U32,
                    "gid": U32,
                }
            )
        )
    }
)

SECTIONS: dict[str, Check] = {"solaris": _SOLARIS, "windows": _WINDOWS, "vm": _VM, "zos": _ZOS}


def check_other_platforms(doc: dict[str, Any]) -> None:
    """Refuse a solaris, windows, vm or zos section of the wrong shape, naming the field."""
    fields("", doc, SECTIONS)
