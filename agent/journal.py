"""The agent's journal: answered requests, the store-and-forward outbox, reversal matching.

One tinydb document per answered request, written durably before the terminal gets
its answer. It holds the signed response (replayed byte for byte to a repeated request
for 24 h), and for an advice or reversal the MQTT request still to forward (`fwd`,
dropped once the backend has it) and what a later reversal needs to find it (7 days).
All times are passed in (epoch seconds), so the rules are testable with a fake clock.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from agent.intmap import IntMap
from agent.storage import AppendLogStorage, LogDB, StorageCorrupt, open_db

DUPLICATE_WINDOW = 24 * 3600.0
REVERSAL_WINDOW = 7 * 24 * 3600.0
TABLE = "entries"

#: How the in-memory indexes hash a key (a module name so a test can force collisions).
_hash = hash


class JournalError(RuntimeError):
    """The journal file cannot be opened, read or trusted."""


@dataclass(frozen=True, slots=True)
class Pending:
    """One advice, reversal or release waiting to be forwarded, in journal order."""

    doc_id: int
    type: str
    key: str
    body: dict[str, Any]
    at: float = 0.0  # when the request was journaled (epoch seconds)


class Journal:
    """Durable record of what the agent answered and still owes the backend."""

    def __init__(self, path: str | os.PathLike[str], *, compact_min: int = 2000) -> None:
        self.path = path
        try:
            self._db: LogDB = open_db(path, compact_min=compact_min)
        except StorageCorrupt as exc:
            raise JournalError(f"journal {path} is corrupt: {exc}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise JournalError(f"journal {path} cannot be opened: {exc}") from None
        self._table = self._db.table(TABLE)
        self._lock = threading.RLock()
        # Lookups keep only hash(key) -> doc id in memory (the key itself is in the doc
        # and checked on every hit); keys whose hash is taken by another key go in
        # `_clash` with their full text, so a collision can never hide an entry.
        self._by_key = IntMap()
        self._by_match = IntMap()  # hash of 'stan:rrn' of a 0220 -> doc id
        self._clash: dict[tuple[str, str], int] = {}
        # doc ids waiting to be forwarded, in order -> whether it is an advice or reversal
        self._pending: dict[int, bool] = {}
        reversals: list[int] = []
        for doc_id in sorted(int(i) for i in self._table._read_table()):
            doc = self._table.get(doc_id=doc_id)  # one at a time: never the whole file
            if doc is None or not isinstance(doc.get("key"), str) or not isinstance(
                doc.get("at"), int | float
            ):
                raise JournalError(f"journal {path} holds an entry that is not the agent's")
            self._index(doc_id, doc)
            if doc.get("orig") is not None:
                reversals.append(doc["orig"])
        # A power loss can keep a reversal yet lose the flag written with it on its
        # original (a torn second line): set it again, or a later reversal with another
        # field 7 would reverse the same purchase twice.
        for orig in reversals:
            original = self._table.get(doc_id=orig)
            if original is not None and not original.get("reversed"):
                self._table.update({"reversed": True}, doc_ids=[orig])

    @property
    def storage(self) -> AppendLogStorage:
        return self._db.storage  # type: ignore[return-value]

    # --- compact in-memory indexes ---------------------------------------------------
    def _put(self, kind: str, index: IntMap, text: str, doc_id: int) -> None:
        h = _hash(text)
        other = index.get(h)
        if other is not None and other != doc_id:
            other_doc = self._table.get(doc_id=other)
            if other_doc is not None and _ident(kind, other_doc) != text:
                self._clash[(kind, text)] = doc_id
                return
        self._clash.pop((kind, text), None)
        index[h] = doc_id

    def _lookup(self, kind: str, index: IntMap, text: str) -> tuple[int, dict] | None:
        doc_id = self._clash.get((kind, text)) if self._clash else None
        if doc_id is None:
            doc_id = index.get(_hash(text))
        if doc_id is None:
            return None
        doc = self._table.get(doc_id=doc_id)
        if doc is None or _ident(kind, doc) != text:
            return None
        return doc_id, dict(doc)

    def _drop(self, kind: str, index: IntMap, text: str, doc_id: int) -> None:
        if self._clash.get((kind, text)) == doc_id:
            del self._clash[(kind, text)]
        elif index.get(_hash(text)) == doc_id:
            del index[_hash(text)]

    def _index(self, doc_id: int, doc: dict[str, Any]) -> None:
        self._put("key", self._by_key, doc["key"], doc_id)
        match = _ident("match", doc)
        if match:
            self._put("match", self._by_match, match, doc_id)
        if doc.get("fwd"):
            self._pending[doc_id] = doc["fwd"]["type"] != "release"

    # --- writes --------------------------------------------------------------------
    def record(
        self,
        key: str,
        mti: str,
        at: float,
        *,
        response: bytes | None = None,
        forward: tuple[str, dict[str, Any]] | tuple[str, dict[str, Any], str] | None = None,
        stan: str | None = None,
        rrn: str | None = None,
        original: int | None = None,
        amount: int | None = None,
    ) -> int:
        """Store one answered (or about to be answered) request durably; its document id.

        `forward` is (type, body) of the MQTT request still owed to the backend, under the
        entry's own key, or (type, body, key) when it goes under another key (a release
        of an inquiry: the inquiry's key is the backend's already)."""
        doc: dict[str, Any] = {"key": key, "mti": mti, "at": at}
        if response is not None:
            doc["resp"] = response.hex()
        if forward is not None:
            doc["fwd"] = {"type": forward[0], "body": forward[1]}
            if len(forward) == 3:
                doc["fwd"]["key"] = forward[2]
        if stan is not None:
            doc["stan"] = stan
        if rrn is not None:
            doc["rrn"] = rrn
        if original is not None:
            doc["orig"] = original
        if amount is not None:
            doc["amt"] = amount  # an advice's field 4: its reversal must carry the same
        with self._lock:
            if self._lookup("key", self._by_key, key) is not None:
                raise ValueError(f"{key} is already in the journal")
            if original is None:
                doc_id = self._table.insert(doc)
            else:  # the reversal and its original's flag land in one write, or neither
                doc_id = self._table.insert_and_update(doc, {original: {"reversed": True}})
            self._index(doc_id, doc)
            return doc_id

    def set_response(self, doc_id: int, response: bytes) -> bytes:
        """Store the answer of a journaled request; the first one stored wins.

        Two links may answer the same advice at once (a repeat over a second TCP
        connection while the first waits for the backend): every repeat must get the
        same bytes, so a response already stored is kept and returned.
        """
        with self._lock:
            doc = self._table.get(doc_id=doc_id)
            if doc is not None and doc.get("resp"):
                return bytes.fromhex(doc["resp"])
            self._table.update({"resp": response.hex()}, doc_ids=[doc_id])
            return response

    def mark_forwarded(self, doc_id: int, code: str) -> None:
        """The backend has it: drop the body (compaction then reclaims it), keep the code."""
        with self._lock:
            self._table.update({"fwd": None, "sent": code}, doc_ids=[doc_id])
            self._pending.pop(doc_id, None)

    # --- reads ---------------------------------------------------------------------
    def get(self, doc_id: int) -> dict[str, Any] | None:
        with self._lock:
            doc = self._table.get(doc_id=doc_id)
            return dict(doc) if doc is not None else None

    def find(self, key: str) -> tuple[int, dict[str, Any]] | None:
        with self._lock:
            return self._lookup("key", self._by_key, key)

    def response_for(self, key: str) -> bytes | None:
        """The stored response of a request already answered (kept 24 h, advices 7 days)."""
        found = self.find(key)
        if found is None or not found[1].get("resp"):
            return None
        return bytes.fromhex(found[1]["resp"])

    def find_original(self, stan: str, rrn: str, now: float) -> tuple[int, dict[str, Any]] | None:
        """The purchase advice a reversal names (41 is this terminal's), if within 7 days."""
        with self._lock:
            found = self._lookup("match", self._by_match, f"{stan}:{rrn}")
            if found is None or now - found[1]["at"] > REVERSAL_WINDOW:
                return None
            return found

    def pending(self) -> list[Pending]:
        """Advices and reversals not yet forwarded, oldest first."""
        with self._lock:
            out = []
            for doc_id in self._pending:
                doc = self._table.get(doc_id=doc_id)
                if doc is not None and doc.get("fwd"):
                    out.append(_pending_entry(doc_id, doc))
            return out

    def head(self, skip: Collection[int] = ()) -> Pending | None:
        """The oldest entry waiting to be forwarded, passing over the doc ids in `skip`."""
        with self._lock:
            for doc_id in self._pending:
                if doc_id in skip:
                    continue
                doc = self._table.get(doc_id=doc_id)
                if doc is not None and doc.get("fwd"):
                    return _pending_entry(doc_id, doc)
            return None

    def queued(self) -> int:
        """Advices and reversals waiting (0810 QD); releases are not counted."""
        with self._lock:
            return sum(self._pending.values())

    def __len__(self) -> int:
        return len(self._table)

    # --- upkeep --------------------------------------------------------------------
    def expire(self, now: float, batch: int = 256) -> int:
        """Drop what no rule needs any more; the number of entries removed.

        Responses go after 24 h, advices (reversal matching) after 7 days; nothing still
        waiting to be forwarded is ever dropped. The scan takes the lock one batch at a
        time, so a request arriving meanwhile waits for at most one batch, not the whole
        journal; it stops at the first entry younger than 24 h (ids grow with time; a
        clock set back only makes it keep more).
        """
        with self._lock:
            ids = sorted(int(i) for i in self._table._read_table())
        dropped = 0
        for start in range(0, len(ids), batch):
            young = False
            with self._lock:
                drop = []
                for doc_id in ids[start : start + batch]:
                    if doc_id in self._pending:
                        continue
                    doc = self._table.get(doc_id=doc_id)  # one at a time, never the file
                    if doc is None or doc.get("fwd"):
                        continue
                    age = now - doc["at"]
                    if age <= DUPLICATE_WINDOW:
                        young = True
                        break
                    if doc.get("mti") == "0220" and age <= REVERSAL_WINDOW:
                        continue
                    drop.append(doc_id)
                    self._drop("key", self._by_key, doc["key"], doc_id)
                    match = _ident("match", doc)
                    if match:
                        self._drop("match", self._by_match, match, doc_id)
                if drop:
                    self._table.remove(doc_ids=drop)
                    dropped += len(drop)
            if young:
                break
        if dropped:
            with self._lock:
                self.storage.compact()
        return dropped

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _pending_entry(doc_id: int, doc: dict[str, Any]) -> Pending:
    fwd = doc["fwd"]
    return Pending(doc_id, fwd["type"], fwd.get("key") or doc["key"], fwd["body"], doc["at"])


def _ident(kind: str, doc: dict[str, Any]) -> str | None:
    """The text an index looks a document up by: its key, or 'stan:rrn' of an advice."""
    if kind == "key":
        return doc.get("key")
    if doc.get("mti") == "0220" and doc.get("stan") and doc.get("rrn"):
        return f"{doc['stan']}:{doc['rrn']}"
    return None
