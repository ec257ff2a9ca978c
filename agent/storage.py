"""A crash-safe tinydb storage: an append-only, fsync'd log of changes, replayed on open.

tinydb's own JSONStorage rewrites the whole file on every change (~26 ms per insert at
10,000 records) and a kill in mid-write leaves half a file. Here every change is one
line `CRC32 JSON\\n` appended with a single write() and fsync'd, so a change is either
in the log or not. A torn last line (power loss in mid-append) fails its CRC and is cut
off on open; a bad line anywhere else means the file is damaged and opening fails.
Compaction writes the live state to a new file, fsyncs it, renames it over the log and
fsyncs the directory, so at every instant one complete log is on disk.

`LogTable` gives tinydb's insert/update/remove by document id an O(1) path that appends
just the changed document instead of handing tinydb's whole-database write to the storage.
"""

from __future__ import annotations

import json
import os
import re
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from tinydb import TinyDB
from tinydb.storages import Storage
from tinydb.table import Document, Table

#: What the start of a record line cut short by a crash can look like.
_TORN = re.compile(rb"[0-9a-f]{0,8}( .*)?", re.DOTALL)


class StorageCorrupt(RuntimeError):
    """The log holds a damaged record that is not a torn final append."""


def _line(record: Mapping[str, Any]) -> bytes:
    body = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()
    return b"%08x %s\n" % (zlib.crc32(body), body)


def _parse(raw: bytes) -> dict[str, Any] | None:
    """The record of one log line, or None when it is damaged."""
    if len(raw) < 10 or raw[8:9] != b" ":
        return None
    body = raw[9:]
    try:
        if int(raw[:8], 16) != zlib.crc32(body):
            return None
        rec = json.loads(body)
    except ValueError:
        return None
    if not isinstance(rec, dict) or not isinstance(rec.get("t"), str) or "i" not in rec:
        return None
    return rec


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_LEN_BITS = 24  # a record line is < 16 MiB; its offset and length share one int


class _LazyTable(Mapping[str, dict[str, Any]]):
    """One table as tinydb sees it: document ids in memory, documents read from the log."""

    __slots__ = ("_index", "_storage")

    def __init__(self, storage: AppendLogStorage, index: dict[str, int]) -> None:
        self._storage = storage
        self._index = index

    def __getitem__(self, doc_id: str) -> dict[str, Any]:
        return self._storage._load(self._index[doc_id])

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._index))

    def __len__(self) -> int:
        return len(self._index)


class AppendLogStorage(Storage):
    """tinydb storage over an append-only change log (see module docstring).

    Only each live document's position in the log is kept in memory (a few dozen bytes
    a document); documents are read back with pread when tinydb asks for them.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        compact_min: int = 2000,
        sync: bool = True,
    ) -> None:
        self.path = Path(path)
        self.compact_min = compact_min
        self.sync = sync
        self._lock = threading.RLock()
        self._index: dict[str, dict[str, int]] = {}
        self._lines = 0
        self._size = 0
        self._replay()
        self._file = open(self.path, "ab")  # noqa: SIM115 - kept open for appends
        self._rfd = os.open(self.path, os.O_RDONLY)

    # --- opening -------------------------------------------------------------------
    def _replay(self) -> None:
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch()
            _fsync_dir(self.path.parent)
            return
        data = self.path.read_bytes()
        good_end = 0
        lines = data.split(b"\n")
        for n, raw in enumerate(lines):
            last = n == len(lines) - 1
            if last and raw == b"":
                break
            rec = _parse(raw)
            if rec is None:
                rest = b"\n".join(lines[n + 1 :]).strip(b"\x00\n")
                if rest or not _TORN.fullmatch(raw.strip(b"\x00")):
                    raise StorageCorrupt(f"{self.path}: damaged record at line {n + 1}")
                break  # a torn final append: never acknowledged, so dropped
            self._apply(rec, good_end, len(raw))
            if last:  # a complete record whose newline was lost: keep it, end the line
                good_end = len(data)
                break
            good_end += len(raw) + 1
        if good_end != len(data) or (good_end and not data.endswith(b"\n")):
            with open(self.path, "r+b") as f:
                f.truncate(good_end)
                if good_end and not data[:good_end].endswith(b"\n"):
                    f.seek(good_end)
                    f.write(b"\n")
                    good_end += 1
                f.flush()
                os.fsync(f.fileno())
        self._size = good_end

    def _apply(self, rec: Mapping[str, Any], offset: int, length: int) -> None:
        table, doc_id = rec["t"], str(rec["i"])
        self._lines += 1
        if "d" in rec:
            self._index.setdefault(table, {})[doc_id] = offset << _LEN_BITS | length
        else:
            self._index.get(table, {}).pop(doc_id, None)

    def _load(self, pos: int) -> dict[str, Any]:
        length = pos & ((1 << _LEN_BITS) - 1)
        with self._lock:
            raw = os.pread(self._rfd, length, pos >> _LEN_BITS)
        rec = _parse(raw)
        if rec is None or "d" not in rec:
            raise StorageCorrupt(f"{self.path}: record at byte {pos >> _LEN_BITS} changed")
        return rec["d"]

    # --- tinydb Storage interface --------------------------------------------------
    def read(self) -> dict[str, Mapping[str, dict[str, Any]]] | None:
        with self._lock:
            return {t: _LazyTable(self, idx) for t, idx in self._index.items()}

    def write(self, data: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> None:
        """tinydb's whole-database write (conditional updates): rewrite the file atomically.

        The journal's own writes never come here (LogTable appends them); this keeps
        tinydb's generic operations correct at the price of one rewrite.
        """
        with self._lock:
            entries = [
                (table, str(doc_id), _line({"t": table, "i": str(doc_id), "d": dict(doc)}))
                for table, docs in data.items()
                for doc_id, doc in docs.items()
            ]
            self._rewrite(entries)

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()
                os.close(self._rfd)

    # --- incremental interface -----------------------------------------------------
    def append(self, changes: Iterable[Mapping[str, Any]]) -> None:
        """Durably append changes (`{"t", "i", "d"}` put or `{"t", "i"}` delete), then apply."""
        recs = [dict(c) for c in changes]
        if not recs:
            return
        lines = [_line(r) for r in recs]
        with self._lock:
            self._file.write(b"".join(lines))
            self._file.flush()
            if self.sync:
                os.fsync(self._file.fileno())
            for rec, line in zip(recs, lines, strict=True):
                self._apply(rec, self._size, len(line) - 1)
                self._size += len(line)
            if self._lines > max(self.compact_min, 2 * self.live_count()):
                self.compact()

    def live_count(self) -> int:
        return sum(len(t) for t in self._index.values())

    @property
    def log_lines(self) -> int:
        return self._lines

    def compact(self) -> None:
        """Rewrite the log as one put per live document: write, fsync, rename, fsync dir."""
        with self._lock:
            entries = []
            for table, idx in self._index.items():
                for doc_id, pos in idx.items():
                    raw = os.pread(self._rfd, pos & ((1 << _LEN_BITS) - 1), pos >> _LEN_BITS)
                    entries.append((table, doc_id, raw + b"\n"))
            self._rewrite(entries)

    def _rewrite(self, entries: list[tuple[str, str, bytes]]) -> None:
        tmp = self.path.with_name(self.path.name + ".compact")
        with open(tmp, "wb") as f:
            f.write(b"".join(line for _, _, line in entries))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)
        self._file.close()
        os.close(self._rfd)
        self._file = open(self.path, "ab")  # noqa: SIM115
        self._rfd = os.open(self.path, os.O_RDONLY)
        self._index = {}
        self._lines = 0
        self._size = 0
        for table, doc_id, line in entries:
            self._index.setdefault(table, {})[doc_id] = self._size << _LEN_BITS | (len(line) - 1)
            self._lines += 1
            self._size += len(line)


class LogTable(Table):
    """A tinydb table whose by-id writes append one record instead of rewriting the table."""

    def _log(self) -> AppendLogStorage | None:
        storage = self.storage
        return storage if isinstance(storage, AppendLogStorage) else None

    def insert(self, document: Mapping) -> int:
        log = self._log()
        if log is None:
            return super().insert(document)
        if not isinstance(document, Mapping):
            raise ValueError("Document is not a Mapping")
        if isinstance(document, Document):
            doc_id = document.doc_id
            self._next_id = None
        else:
            doc_id = self._get_next_id()
        if str(doc_id) in self._read_table():
            raise ValueError(f"Document with ID {doc_id} already exists")
        log.append([{"t": self.name, "i": str(doc_id), "d": dict(document)}])
        self.clear_cache()
        return doc_id

    def update(  # type: ignore[override]
        self,
        fields: Mapping | Callable[[Mapping], None],
        cond: Any = None,
        doc_ids: Iterable[int] | None = None,
    ) -> list[int]:
        log = self._log()
        if log is None or doc_ids is None or cond is not None or callable(fields):
            return super().update(fields, cond=cond, doc_ids=doc_ids)
        table = self._read_table()
        changes = []
        done = []
        for doc_id in doc_ids:
            old = table.get(str(doc_id))
            if old is None:
                continue
            changes.append({"t": self.name, "i": str(doc_id), "d": {**old, **fields}})
            done.append(doc_id)
        log.append(changes)
        self.clear_cache()
        return done

    def remove(self, cond: Any = None, doc_ids: Iterable[int] | None = None) -> list[int]:
        log = self._log()
        if log is None or doc_ids is None or cond is not None:
            return super().remove(cond=cond, doc_ids=doc_ids)
        table = self._read_table()
        gone = [d for d in doc_ids if str(d) in table]
        log.append({"t": self.name, "i": str(d)} for d in gone)
        self.clear_cache()
        return gone


class LogDB(TinyDB):
    """TinyDB over AppendLogStorage with LogTable tables."""

    table_class = LogTable


def open_db(path: str | os.PathLike[str], **kwargs: Any) -> LogDB:
    return LogDB(path, storage=AppendLogStorage, **kwargs)
