"""Image references with Docker's normalisation: `busybox` is `docker.io/library/busybox:latest`.

    reference  := [domain "/"] path [":" tag] ["@" digest]
    domain     := a first component with "." or ":" in it, or "localhost" (else docker.io)
    path       := component ("/" component)*        (lowercase; docker.io adds "library/")
    component  := [a-z0-9]+ ((\\.|_|__|-+) [a-z0-9]+)*
    tag        := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest     := "sha256:" 64 lowercase hex

A reference with neither tag nor digest gets the tag "latest".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from galley.content.digest import Digest
from galley.errors import InvalidArgument

DOCKER_HUB = "docker.io"
DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"
MAX_NAME_LENGTH = 255

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DOMAIN = re.compile(
    r"(?:localhost|[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]+)?"
)


@dataclass(frozen=True)
class Reference:
    """A normalised image reference: domain, path, and a tag and/or a digest."""

    domain: str
    path: str
    tag: str = ""
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        """Parse and normalise text, raising InvalidArgument naming what is wrong."""
        if not text or text != text.strip():
            raise InvalidArgument(f"image reference {text!r} is empty or has surrounding spaces")
        rest, digest = _split_digest(text)
        name, tag = _split_tag(rest, text)
        domain, path = _split_domain(name)
        _check_path(path, text)
        if not tag and digest is None:
            tag = DEFAULT_TAG
        return cls(domain, path, tag, digest)

    @property
    def repository(self) -> str:
        """domain/path, e.g. "docker.io/library/busybox"."""
        return f"{self.domain}/{self.path}"

    @property
    def object(self) -> str:
        """What to ask the registry's manifests endpoint for: the digest if any, else the tag."""
        return str(self.digest) if self.digest is not None else self.tag

    def with_digest(self, digest: Digest) -> Reference:
        """The same repository pinned to digest (the tag is kept for display)."""
        return Reference(self.domain, self.path, self.tag, digest)

    def with_tag(self, tag: str) -> Reference:
        """The same repository with another tag (and no digest)."""
        if not _TAG.fullmatch(tag):
            raise InvalidArgument(f"tag {tag!r} is not a valid image tag")
        return Reference(self.domain, self.path, tag, None)

    def familiar(self) -> str:
        """The short form people type: "busybox:latest", "user/app:1", "host:5000/a/b:2"."""
        path = self.path
        if self.domain == DOCKER_HUB:
            path = path.removeprefix(OFFICIAL_PREFIX)
            return path + self._suffix()
        return f"{self.domain}/{path}{self._suffix()}"

    def _suffix(self) -> str:
        return (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def __str__(self) -> str:
        return self.repository + self._suffix()


def _split_digest(text: str) -> tuple[str, Digest | None]:
    rest, sep, digest_text = text.partition("@")
    if not sep:
        return text, None
    if "@" in digest_text:
        raise InvalidArgument(f"image reference {text!r} has more than one '@'")
    try:
        return rest, Digest.parse(digest_text)
    except InvalidArgument as exc:
        raise InvalidArgument(f"image reference {text!r} has a bad digest: {exc}") from exc


def _split_tag(rest: str, text: str) -> tuple[str, str]:
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon <= slash:
        return rest, ""
    name, tag = rest[:colon], rest[colon + 1 :]
    if not _TAG.fullmatch(tag):
        raise InvalidArgument(f"image reference {text!r} has an invalid tag {tag!r}")
    return name, tag


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, remainder = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        if not _DOMAIN.fullmatch(first):
            raise InvalidArgument(f"image reference {name!r} has an invalid registry {first!r}")
        domain, path = first, remainder
    else:
        domain, path = DOCKER_HUB, name
    if domain in DOCKER_HUB_ALIASES:
        domain = DOCKER_HUB
    if domain == DOCKER_HUB and "/" not in path:
        path = OFFICIAL_PREFIX + path
    return domain, path


def _check_path(path: str, text: str) -> None:
    if not path:
        raise InvalidArgument(f"image reference {text!r} has no repository name")
    if path.lower() != path:
        raise InvalidArgument(f"image reference {text!r}: repository names must be lowercase")
    for component in path.split("/"):
        if not _COMPONENT.fullmatch(component):
            raise InvalidArgument(
                f"image reference {text!r} has an invalid path component {component!r}"
            )
    if len(path) > MAX_NAME_LENGTH:
        raise InvalidArgument(f"image reference {text!r}: name longer than {MAX_NAME_LENGTH}")


def parse(text: str) -> Reference:
    """Reference.parse(text)."""
    return Reference.parse(text)
