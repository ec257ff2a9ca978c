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
from dataclasses import dataclass
from typing import Any

from agent.storage import AppendLogStorage, LogDB, StorageCorrupt, open_db

DUPLICATE_WINDOW = 24 * 3600.0
REVERSAL_WINDOW = 7 * 24 * 3600.0
TABLE = "entries"


class JournalError(RuntimeError):
    """The journal file cannot be opened, read or trusted."""


@dataclass(frozen=True, slots=True)
class Pending:
    """One advice or reversal waiting to be forwarded, in journal order."""

    doc_id: int
    type: str
    key: str
    body: dict[str, Any]


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
        self._by_key: dict[str, int] = {}
        self._by_match: dict[str, int] = {}  # 'stan:rrn' -> doc id
        self._pending: dict[int, None] = {}  # insertion-ordered set of doc ids
        for doc in sorted(self._table.all(), key=lambda d: d.doc_id):
            if not isinstance(doc.get("key"), str) or not isinstance(doc.get("at"), int | float):
                raise JournalError(f"journal {path} holds an entry that is not the agent's")
            self._index(doc.doc_id, doc)

    @property
    def storage(self) -> AppendLogStorage:
        return self._db.storage  # type: ignore[return-value]

    def _index(self, doc_id: int, doc: dict[str, Any]) -> None:
        self._by_key[doc["key"]] = doc_id
        if doc.get("mti") == "0220" and doc.get("stan") and doc.get("rrn"):
            self._by_match[f"{doc['stan']}:{doc['rrn']}"] = doc_id
        if doc.get("fwd"):
            self._pending[doc_id] = None

    # --- writes --------------------------------------------------------------------
    def record(
        self,
        key: str,
        mti: str,
        at: float,
        *,
        response: bytes | None = None,
        forward: tuple[str, dict[str, Any]] | None = None,
        stan: str | None = None,
        rrn: str | None = None,
        original: int | None = None,
    ) -> int:
        """Store one answered (or about to be answered) request durably; its document id."""
        doc: dict[str, Any] = {"key": key, "mti": mti, "at": at}
        if response is not None:
            doc["resp"] = response.hex()
        if forward is not None:
            doc["fwd"] = {"type": forward[0], "body": forward[1]}
        if stan is not None:
            doc["stan"] = stan
        if rrn is not None:
            doc["rrn"] = rrn
        if original is not None:
            doc["orig"] = original
        with self._lock:
            if key in self._by_key:
                raise ValueError(f"{key} is already in the journal")
            doc_id = self._table.insert(doc)
            self._index(doc_id, doc)
            if original is not None:
                self._table.update({"reversed": True}, doc_ids=[original])
            return doc_id

    def set_response(self, doc_id: int, response: bytes) -> None:
        with self._lock:
            self._table.update({"resp": response.hex()}, doc_ids=[doc_id])

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
            doc_id = self._by_key.get(key)
            if doc_id is None:
                return None
            doc = self._table.get(doc_id=doc_id)
            return (doc_id, dict(doc)) if doc is not None else None

    def response_for(self, key: str) -> bytes | None:
        """The stored response of a request already answered (kept 24 h, advices 7 days)."""
        found = self.find(key)
        if found is None or not found[1].get("resp"):
            return None
        return bytes.fromhex(found[1]["resp"])

    def find_original(self, stan: str, rrn: str, now: float) -> tuple[int, dict[str, Any]] | None:
        """The purchase advice a reversal names (41 is this terminal's), if within 7 days."""
        with self._lock:
            doc_id = self._by_match.get(f"{stan}:{rrn}")
            if doc_id is None:
                return None
            doc = self._table.get(doc_id=doc_id)
            if doc is None or now - doc["at"] > REVERSAL_WINDOW:
                return None
            return doc_id, dict(doc)

    def pending(self) -> list[Pending]:
        """Advices and reversals not yet forwarded, oldest first."""
        with self._lock:
            out = []
            for doc_id in self._pending:
                doc = self._table.get(doc_id=doc_id)
                if doc is not None and doc.get("fwd"):
                    fwd = doc["fwd"]
                    out.append(Pending(doc_id, fwd["type"], doc["key"], fwd["body"]))
            return out

    def head(self) -> Pending | None:
        with self._lock:
            for doc_id in self._pending:
                doc = self._table.get(doc_id=doc_id)
                if doc is not None and doc.get("fwd"):
                    fwd = doc["fwd"]
                    return Pending(doc_id, fwd["type"], doc["key"], fwd["body"])
            return None

    def queued(self) -> int:
        with self._lock:
            return len(self._pending)

    def __len__(self) -> int:
        return len(self._table)

    # --- upkeep --------------------------------------------------------------------
    def expire(self, now: float) -> int:
        """Drop what no rule needs any more; the number of entries removed.

        Responses go after 24 h, advices (reversal matching) after 7 days; nothing still
        waiting to be forwarded is ever dropped.
        """
        with self._lock:
            drop = []
            for doc in self._table.all():
                if doc.get("fwd"):
                    continue
                age = now - doc["at"]
                keep = REVERSAL_WINDOW if doc.get("mti") == "0220" else DUPLICATE_WINDOW
                if age > keep:
                    drop.append(doc.doc_id)
            if drop:
                for doc_id in drop:
                    doc = self._table.get(doc_id=doc_id)
                    if doc is not None:
                        self._by_key.pop(doc["key"], None)
                        match = f"{doc.get('stan')}:{doc.get('rrn')}"
                        if self._by_match.get(match) == doc_id:
                            del self._by_match[match]
                self._table.remove(doc_ids=drop)
                self.storage.compact()
            return len(drop)

    def close(self) -> None:
        with self._lock:
            self._db.close()

