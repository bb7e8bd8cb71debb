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
    array_of,
    boolean,
    fields,
    string,
    strings,
    struct,
)

TYPE_CHECKING = False  # typing costs ~3 ms to import; mypy knows this name
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_ANET_FIELDS = (
    "linkname",
    "lowerLink",
    "allowedAddress",
    "configureAllowedAddress",
    "defrouter",
    "linkProtection",
    "macAddress",
)
_SOLARIS = struct(
    {
        "milestone": string,
        "limitpriv": string,
        "maxShmMemory": string,
        "anet": array_of(struct(dict.fromkeys(_ANET_FIELDS, string))),
        "cappedCPU": struct({"ncpus": string}),
        "cappedMemory": struct({"physical": string, "swap": string}),
    }
)

_WINDOWS = struct(
    {
        "layerFolders": strings,
        "devices": array_of(struct({"id": string, "idType": string})),
        "resources": struct(
            {
                "memory": struct({"limit": U64}),
                "cpu": struct({"count": U64, "shares": U16, "maximum": U16}),
                "storage": struct({"iops": U64, "bps": U64, "sandboxSize": U64}),
            }
        ),
        # credentialSpec may be any JSON value
        "servicing": boolean,
        "ignoreFlushesDuringBoot": boolean,
        "hyperv": struct({"utilityVMPath": string}),
        "network": struct(
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

_PROGRAM = struct({"path": string, "parameters": strings})

_VM = struct(
    {
        "hypervisor": _PROGRAM,
        "kernel": struct({"path": string, "parameters": strings, "initrd": string}),
        "image": struct({"path": string, "format": string}),
    }
)

_ZOS = struct(
    {
        "devices": array_of(
            struct(
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

SECTIONS: dict[str, Callable[[str, Any], object]] = {
    "solaris": _SOLARIS,
    "windows": _WINDOWS,
    "vm": _VM,
    "zos": _ZOS,
}


def check_other_platforms(doc: dict[str, Any]) -> None:
    """Refuse a solaris, windows, vm or zos section of the wrong shape, naming the field."""
    fields("", doc, SECTIONS)
