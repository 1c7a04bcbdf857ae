"""Writing a ZIP as a stream of fixed-size parts, and each file in it with its SHA-256.

``zipfile`` writes to a stream it cannot seek (data descriptors after each file,
ZIP64 when asked), so the archive never exists whole anywhere: ``PartSink`` hands
every full ``part_bytes`` to ``store`` (which saves a database row) and keeps less than
one part in memory. ``HashedText`` buffers a file's text into blocks before they reach
the compressor, and keeps the file's SHA-256 for SHA256SUMS.
"""

import hashlib
import zipfile
from collections.abc import Callable
from datetime import datetime

# Text is handed to the compressor in blocks of about this many bytes: one call per
# CSV row would cost more than the compression itself.
BLOCK_BYTES = 256 * 1024


class PartSink:
    """A write-only stream: every ``part_bytes`` written become one ``store(index,
    data)`` call, in order; ``close()`` stores the rest. Counts and hashes the bytes."""

    def __init__(self, *, store: Callable[[int, bytes], None], part_bytes: int) -> None:
        self._store = store
        self._part_bytes = part_bytes
        self._buffer = bytearray()
        self.parts = 0
        self.size = 0
        self._sha256 = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self._buffer += data
        self.size += len(data)
        self._sha256.update(data)
        while len(self._buffer) >= self._part_bytes:
            self._emit(bytes(self._buffer[: self._part_bytes]))
            del self._buffer[: self._part_bytes]
        return len(data)

    def flush(self) -> None:
        """Parts are whole ``part_bytes`` until the end: nothing to do before close."""

    def close(self) -> None:
        if self._buffer:
            self._emit(bytes(self._buffer))
            self._buffer.clear()

    def hexdigest(self) -> str:
        return self._sha256.hexdigest()

    def _emit(self, data: bytes) -> None:
        self._store(self.parts, data)
        self.parts += 1


class HashedText:
    """A file being written into the archive: text in, UTF-8 out, blocks to the entry,
    its SHA-256 kept (``csv.writer`` writes here through ``write``)."""

    def __init__(self, archive: zipfile.ZipFile, name: str, *, when: datetime) -> None:
        info = zipfile.ZipInfo(name, date_time=when.timetuple()[:6])
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        self.name = name
        self._entry = archive.open(info, mode="w", force_zip64=True)
        self._sha256 = hashlib.sha256()
        self._pending: list[str] = []
        self._pending_size = 0

    def write(self, text: str) -> int:
        self._pending.append(text)
        self._pending_size += len(text)
        if self._pending_size >= BLOCK_BYTES:
            self._drain()
        return len(text)

    def write_bytes(self, data: bytes) -> None:
        self._drain()
        self._put(data)

    def close(self) -> str:
        """Finish the entry; its SHA-256 (hex)."""
        self._drain()
        self._entry.close()
        return self._sha256.hexdigest()

    def _drain(self) -> None:
        if self._pending:
            self._put("".join(self._pending).encode())
            self._pending.clear()
            self._pending_size = 0

    def _put(self, data: bytes) -> None:
        self._sha256.update(data)
        self._entry.write(data)
