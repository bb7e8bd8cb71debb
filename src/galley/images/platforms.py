"""Platform specifiers ("linux/arm64/v8"), the host's platform, and choosing from an index.

Matching follows containerd's rules: os and architecture must be equal after normalisation
(x86_64 → amd64, aarch64 → arm64, armhf → arm/v7); the variant must be equal when both
sides name one, with arm64's variant defaulting to v8. Among matches, an exact variant wins.
"""

from __future__ import annotations

import platform as _host
from collections.abc import Iterable

from galley.errors import InvalidArgument, NotFound
from galley.images.mediatypes import Descriptor, Platform

_ARCH_ALIASES = {
    "x86_64": ("amd64", ""),
    "x86-64": ("amd64", ""),
    "aarch64": ("arm64", ""),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v6"),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "i386": ("386", ""),
    "i686": ("386", ""),
}
_DEFAULT_VARIANT = {"arm64": "v8", "arm": "v7"}


def normalize(platform: Platform) -> Platform:
    """The platform with os lowercased, the architecture aliased and the default variant set."""
    arch, variant = _ARCH_ALIASES.get(platform.architecture.lower(), (platform.architecture, ""))
    variant = platform.variant or variant or _DEFAULT_VARIANT.get(arch, "")
    if arch == "amd64" and variant == "v1":
        variant = ""
    return Platform(
        platform.os.lower(), arch, variant, platform.os_version, tuple(platform.os_features)
    )


def parse(spec: str) -> Platform:
    """Parse "os/arch[/variant]" or "arch" (os linux), raising InvalidArgument when malformed."""
    parts = spec.strip().split("/")
    if not spec.strip() or len(parts) > 3 or not all(parts):
        raise InvalidArgument(f"platform {spec!r} is not of the form os/arch[/variant]")
    if len(parts) == 1:
        parts = ["linux", parts[0]]
    return normalize(Platform(parts[0], parts[1], parts[2] if len(parts) == 3 else ""))


def host() -> Platform:
    """The platform of this machine (always linux)."""
    return normalize(Platform("linux", _host.machine()))


def matches(want: Platform, have: Platform) -> bool:
    """True if an image for have runs where want is asked for."""
    w, h = normalize(want), normalize(have)
    if (w.os, w.architecture) != (h.os, h.architecture):
        return False
    return not w.variant or not h.variant or w.variant == h.variant


def select(manifests: Iterable[Descriptor], want: Platform | None = None) -> Descriptor:
    """The best manifest of an index for want (default: this host); NotFound lists the others."""
    want = normalize(want or host())
    candidates = list(manifests)
    found = [d for d in candidates if d.platform is not None and matches(want, d.platform)]
    if not found:
        available = ", ".join(sorted({str(d.platform) for d in candidates if d.platform}))
        raise NotFound(
            f"no manifest for platform {want} in the index (it has: {available or 'none'})"
        )
    exact = [d for d in found if d.platform is not None and normalize(d.platform) == want]
    return (exact or found)[0]
