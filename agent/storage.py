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
import logging
import os
import re
import threading
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any

from tinydb import TinyDB
from tinydb.storages import Storage
from tinydb.table import Document, Table

from protocols.numbers import is_int

log = logging.getLogger("agent.storage")

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
    if "d" in rec and not isinstance(rec["d"], dict):  # a document is always an object
        return None
    return rec


def _crc_ok(raw: bytes) -> bool:
    try:
        return len(raw) >= 10 and int(raw[:8], 16) == zlib.crc32(raw[9:])
    except ValueError:
        return False


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_LEN_BITS = 24  # a record line is < 16 MiB; its offset and length share one int
_LEN_MASK = (1 << _LEN_BITS) - 1


def _doc_id(value: object) -> int | None:
    """tinydb's document id (a decimal string in the log) as the int the index keeps."""
    if is_int(value):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


class Positions(MutableMapping[int, int]):
    """Document id -> packed log position, 8 bytes a document instead of ~100 in a dict.

    tinydb hands out ids 1, 2, 3, ... so they are kept in an array from the lowest live
    id (moved up by compaction); an id far outside it (tinydb allows any) goes in a dict.
    Iteration is in ascending id order, which is also the order documents were added.
    """

    __slots__ = ("_base", "_count", "_other", "_slots")
    _EMPTY = -1
    _REACH = 65536  # how far past the array's end an id may be and still extend it

    def __init__(self, base: int = 1) -> None:
        self._base = base
        self._slots = array("q")
        self._count = 0
        self._other: dict[int, int] = {}

    def _slot(self, doc_id: int) -> int | None:
        i = doc_id - self._base
        return i if 0 <= i < len(self._slots) else None

    def __getitem__(self, doc_id: int) -> int:
        i = self._slot(doc_id)
        if i is not None and self._slots[i] != self._EMPTY:
            return self._slots[i]
        return self._other[doc_id]

    def __setitem__(self, doc_id: int, pos: int) -> None:
        if pos < 0:
            raise ValueError("a log position is never negative")
        i = doc_id - self._base
        if 0 <= i < len(self._slots) + self._REACH and doc_id not in self._other:
            if i >= len(self._slots):
                self._slots.extend([self._EMPTY] * (i + 1 - len(self._slots)))
            if self._slots[i] == self._EMPTY:
                self._count += 1
            self._slots[i] = pos
        else:
            self._other[doc_id] = pos

    def __delitem__(self, doc_id: int) -> None:
        i = self._slot(doc_id)
        if i is not None and self._slots[i] != self._EMPTY:
            self._slots[i] = self._EMPTY
            self._count -= 1
            return
        del self._other[doc_id]

    def __contains__(self, doc_id: object) -> bool:
        if not isinstance(doc_id, int):
            return False
        i = self._slot(doc_id)
        if i is not None and self._slots[i] != self._EMPTY:
            return True
        return doc_id in self._other

    def __iter__(self) -> Iterator[int]:
        ids = [self._base + i for i, pos in enumerate(self._slots) if pos != self._EMPTY]
        if self._other:
            ids = sorted(ids + list(self._other))
        return iter(ids)

    def __len__(self) -> int:
        return self._count + len(self._other)


class _LazyTable(Mapping[str, dict[str, Any]]):
    """One table as tinydb sees it: document ids in memory, documents read from the log.

    tinydb speaks of ids as strings; the index keeps ints (half the memory per entry).
    """

    __slots__ = ("_index", "_storage")

    def __init__(self, storage: AppendLogStorage, index: Positions) -> None:
        self._storage = storage
        self._index = index

    def __getitem__(self, doc_id: str) -> dict[str, Any]:
        key = _doc_id(doc_id)
        if key is None:
            raise KeyError(doc_id)
        return self._storage._load(self._index[key])

    def __contains__(self, doc_id: object) -> bool:
        key = _doc_id(doc_id)
        return key is not None and key in self._index

    def __iter__(self) -> Iterator[str]:
        return iter([str(k) for k in self._index])

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
        self._index: dict[str, Positions] = {}
        self._lines = 0
        self._size = 0
        self._replay()
        self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - kept open
        self._rfd = os.open(self.path, os.O_RDONLY)

    # --- opening -------------------------------------------------------------------
    def _replay(self) -> None:
        """Stream the log line by line (never the whole file in memory), then cut a torn tail."""
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch()
            _fsync_dir(self.path.parent)
            return
        good_end = 0
        missing_newline = False
        with open(self.path, "rb") as f:
            for n, line in enumerate(f, start=1):
                raw = line[:-1] if line.endswith(b"\n") else line
                rec = _parse(raw)
                if rec is None:
                    rest = f.read().strip(b"\x00\n")
                    # A torn append fails its CRC; a line that passes it was written whole.
                    if rest or _crc_ok(raw) or not _TORN.fullmatch(raw.strip(b"\x00")):
                        raise StorageCorrupt(f"{self.path}: damaged record at line {n}")
                    break  # a torn final append: never acknowledged, so dropped
                self._apply(rec, good_end, len(raw))
                good_end += len(line)
                if raw is line:  # a complete record whose newline was lost: keep it
                    missing_newline = True
            size = f.seek(0, os.SEEK_END)
        if good_end != size or missing_newline:
            with open(self.path, "r+b") as f:
                f.truncate(good_end)
                if missing_newline:
                    f.seek(good_end)
                    f.write(b"\n")
                    good_end += 1
                f.flush()
                os.fsync(f.fileno())
        self._size = good_end

    def _apply(self, rec: Mapping[str, Any], offset: int, length: int) -> None:
        table, doc_id = rec["t"], _doc_id(rec["i"])
        if doc_id is None:
            raise StorageCorrupt(f"{self.path}: record at byte {offset} has no document id")
        self._lines += 1
        if "d" in rec:
            self._index.setdefault(table, Positions())[doc_id] = offset << _LEN_BITS | length
        else:
            self._index.get(table, Positions()).pop(doc_id, None)

    def _load(self, pos: int) -> dict[str, Any]:
        length = pos & _LEN_MASK
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
            self._rewrite(
                (table, int(doc_id), _line({"t": table, "i": str(doc_id), "d": dict(doc)}))
                for table, docs in data.items()
                for doc_id, doc in docs.items()
            )

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
        if any(len(line) > _LEN_MASK for line in lines):
            raise ValueError("a journal record must be smaller than 16 MiB")
        with self._lock:
            fd = self._file.fileno()
            try:
                data = memoryview(b"".join(lines))
                while data:  # one write() in practice; a short write is continued
                    data = data[os.write(fd, data) :]
                if self.sync:
                    os.fsync(fd)
            except BaseException:
                # Not acknowledged: cut whatever reached the file, so the log never holds
                # a fragment in its middle (a later append would glue onto it, and the next
                # start would refuse the journal as damaged).
                os.ftruncate(fd, self._size)
                if self.sync:
                    os.fsync(fd)
                raise
            for rec, line in zip(recs, lines, strict=True):
                self._apply(rec, self._size, len(line) - 1)
                self._size += len(line)
            if self._lines > max(self.compact_min, 2 * self.live_count()):
                try:
                    self.compact()
                except OSError as exc:  # the appended change is durable: keep the old log
                    log.warning("journal compaction of %s failed: %s", self.path, exc)

    def live_count(self) -> int:
        return sum(len(t) for t in self._index.values())

    @property
    def log_lines(self) -> int:
        return self._lines

    def compact(self) -> None:
        """Rewrite the log as one put per live document: write, fsync, rename, fsync dir."""
        with self._lock:
            rfd = self._rfd
            self._rewrite(
                (table, doc_id, os.pread(rfd, pos & _LEN_MASK, pos >> _LEN_BITS) + b"\n")
                for table, idx in self._index.items()  # unchanged until the swap below
                for doc_id, pos in idx.items()
            )

    def _rewrite(self, entries: Iterable[tuple[str, int, bytes]]) -> None:
        """Stream `entries` into a new file, fsync, rename over the log, fsync the folder.

        Lines are written as they come (one at a time in memory, not the whole log), and
        the new index is swapped in only once the rename is durable.
        """
        tmp = self.path.with_name(self.path.name + ".compact")
        index: dict[str, Positions] = {}
        lines = size = 0
        try:
            with open(tmp, "wb") as f:
                for table, doc_id, line in entries:
                    f.write(line)
                    positions = index.setdefault(table, Positions(doc_id))
                    positions[doc_id] = size << _LEN_BITS | (len(line) - 1)
                    lines += 1
                    size += len(line)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)
        self._file.close()
        os.close(self._rfd)
        self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115
        self._rfd = os.open(self.path, os.O_RDONLY)
        self._index, self._lines, self._size = index, lines, size


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

    def insert_and_update(
        self, document: Mapping, updates: Mapping[int, Mapping[str, Any]]
    ) -> int:
        """Insert `document` and merge fields into other documents in one durable append."""
        log = self._log()
        if log is None:
            raise TypeError("insert_and_update needs an AppendLogStorage")
        table = self._read_table()
        changes = []
        for other, fields in updates.items():
            old = table.get(str(other))
            if old is None:
                raise KeyError(f"document {other} is not in table {self.name}")
            changes.append({"t": self.name, "i": str(other), "d": {**old, **fields}})
        doc_id = self._get_next_id()
        log.append([{"t": self.name, "i": str(doc_id), "d": dict(document)}, *changes])
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
