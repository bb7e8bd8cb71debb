"""Decompressing layer streams: gzip and zstd through pigz / zstd when installed, Python otherwise.

The format is read from the stream's magic bytes (gzip 1f 8b, zstd 28 b5 2f fd; anything else is
a plain tar), as registries in the wild label uncompressed layers as gzip and the other way round.

With a binary, the child reads a file stream itself (a new descriptor on the same file), or a
feeder thread copies any other stream into the child's stdin, while the caller reads the plain
stream from its stdout: decompression runs on another core, overlapping the download and the
tar apply. An error from the source stream (a network failure, a digest
mismatch raised by a verifying reader) wins over the decompressor's complaint about truncation.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import stat
import subprocess
import tempfile
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, BinaryIO

from galley.errors import InvalidArgument

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
CHUNK = 1 << 20
SMALL = 4 << 20  # compressed file blobs below this are decompressed in-process

_BINARIES = {"gzip": (("pigz", "-dc"), ("gzip", "-dc")), "zstd": (("zstd", "-dcq"),)}


def detect(head: bytes) -> str:
    """The compression the first bytes of a stream show: "gzip", "zstd" or "" (none)."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return ""


class _Prefixed(io.RawIOBase):
    """A stream whose first bytes were read already (to sniff its format), put back in front."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer)
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(view))
        view[: len(data)] = data
        return len(data)


def command_for(compression: str) -> list[str] | None:
    """The decompressor command installed here for compression, or None."""
    for argv in _BINARIES.get(compression, ()):
        path = shutil.which(argv[0])
        if path:
            return [path, *argv[1:]]
    return None


@contextmanager
def decompressed(stream: BinaryIO, *, use_binaries: bool = True) -> Iterator[IO[bytes]]:
    """The plain bytes of stream, whatever its compression; raises InvalidArgument if corrupt."""
    start = _file_offset(stream)
    head = stream.read(4)
    source = io.BufferedReader(_Prefixed(head, stream), CHUNK)
    compression = detect(head)
    if start is not None and os.fstat(stream.fileno()).st_size - start < SMALL:
        use_binaries = False  # starting a child costs more than it saves on a small blob
    command = command_for(compression) if use_binaries and compression else None
    if command is not None and start is not None:  # a file: the child reads it itself
        with _reopened(stream, start) as fd, _through_process(fd, command, compression) as plain:
            yield plain
    elif command is not None:
        with _through_process(source, command, compression) as plain:
            yield plain
    elif compression == "gzip":
        with _python_errors("gzip"), gzip.GzipFile(fileobj=source, mode="rb") as plain:
            yield plain  # type: ignore[misc]
    elif compression == "zstd":
        import zstandard  # noqa: PLC0415 - only zstd layers need it

        reader = zstandard.ZstdDecompressor().stream_reader(source, read_across_frames=True)
        with _python_errors("zstd"), reader:
            yield reader
    else:
        yield source


def _file_offset(stream: BinaryIO) -> int | None:
    """Where a stream that is a regular file stands, or None for any other stream."""
    try:
        return stream.tell() if stat.S_ISREG(os.fstat(stream.fileno()).st_mode) else None
    except (AttributeError, OSError, ValueError):
        return None


@contextmanager
def _reopened(stream: BinaryIO, offset: int) -> Iterator[int]:
    """A new descriptor on stream's file at offset (the caller's own position is untouched)."""
    fd = os.open(f"/proc/self/fd/{stream.fileno()}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.lseek(fd, offset, os.SEEK_SET)
        yield fd
    finally:
        os.close(fd)


@contextmanager
def _python_errors(compression: str) -> Iterator[None]:
    corrupt: tuple[type[BaseException], ...] = (EOFError, zlib.error, gzip.BadGzipFile)
    if compression == "zstd":
        import zstandard  # noqa: PLC0415 - only zstd layers need it

        corrupt = (*corrupt, zstandard.ZstdError)
    try:
        yield
    except corrupt as exc:
        raise InvalidArgument(f"{compression} layer stream is corrupt: {exc}") from exc


class _Feeder(threading.Thread):
    """Copies a stream into a child's stdin, remembering the source's own error."""

    def __init__(self, source: BinaryIO, sink: BinaryIO) -> None:
        super().__init__(name="layer-decompress-feeder", daemon=True)
        self.source, self.sink = source, sink
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while chunk := self.source.read(CHUNK):
                try:
                    self.sink.write(chunk)
                except (BrokenPipeError, ValueError):
                    return  # the reader stopped early; the caller reports why
        except BaseException as exc:
            self.error = exc
        finally:
            try:
                self.sink.close()
            except OSError:
                pass


@contextmanager
def _through_process(
    source: BinaryIO | int, command: list[str], compression: str
) -> Iterator[IO[bytes]]:
    """command's stdout; source is a stream (fed by a thread) or a descriptor it reads itself."""
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(
            command,
            stdin=source if isinstance(source, int) else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            bufsize=CHUNK,
            pipesize=CHUNK,
        )
        assert proc.stdout is not None
        feeder = None
        if not isinstance(source, int):
            assert proc.stdin is not None
            feeder = _Feeder(source, proc.stdin)  # type: ignore[arg-type]
            feeder.start()
        plain = proc.stdout
        try:
            yield plain
            while plain.read(CHUNK):  # the rest (tar padding) must flow for pigz to finish
                pass
        except BaseException as exc:
            exited = _exit_code(proc, wait=isinstance(exc, InvalidArgument))
            proc.kill()
            plain.close()
            source_error = _join(feeder)
            proc.wait()
            if source_error is not None:
                raise source_error from None
            if exited:  # the decompressor failed first; the reader only saw the stream end
                raise _corrupt(command, compression, exited, errors) from exc
            raise
        plain.close()
        source_error = _join(feeder)
        code = proc.wait()
        if source_error is not None:
            raise source_error
        if code != 0:
            raise _corrupt(command, compression, code, errors)


def _join(feeder: _Feeder | None) -> BaseException | None:
    """Wait for the feeder thread (if any); the error its source raised, if any."""
    if feeder is None:
        return None
    feeder.join()
    return feeder.error


def _exit_code(proc: subprocess.Popen[bytes], *, wait: bool) -> int | None:
    """The child's exit code if it has exited (within a moment, when wait), else None."""
    try:
        return proc.wait(timeout=0.2) if wait else proc.poll()
    except subprocess.TimeoutExpired:
        return None


def _corrupt(command: list[str], compression: str, code: int, errors: IO[bytes]) -> InvalidArgument:
    errors.seek(0)
    message = errors.read().decode(errors="replace").strip().splitlines()
    return InvalidArgument(
        f"{compression} layer stream is corrupt: {os.path.basename(command[0])} exited with {code}"
        + (f": {message[-1]}" if message else "")
    )
