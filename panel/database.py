"""The panel's connections to the backend's database: a small pool.

Pages run in Starlette's worker threads; each takes a connection for the length of one
request and gives it back, so no two threads ever share one (sqlite3 and psycopg
connections are not for concurrent use) and PostgreSQL's connect time is paid once.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from backend import engine, migrations, store
from backend.engine import Connection


class DatabaseNotReady(Exception):
    """The --db cannot serve the panel (missing, no schema, another version)."""


class Database:
    def __init__(self, db: str, *, size: int = 8) -> None:
        self.db = db
        self.size = size
        self._idle: queue.LifoQueue[Connection] = queue.LifoQueue()
        self._lock = threading.Lock()
        self._open = 0

    @property
    def target_text(self) -> str:
        """The --db with any password masked, for logs."""
        return engine.mask(self.db)

    def check(self) -> None:
        """Refuse, before serving, a database the backend has not made: the panel never
        creates a shop's database (a typo in --db would otherwise start an empty one)."""
        target = engine.parse_target(self.db)
        if target.path is not None and not target.path.is_file():
            raise DatabaseNotReady(f"{target}: no such database (run `loyalty-backend "
                                   "migrate` or `run` first)")
        try:
            conn = store.connect(target, create=False)
        except store.StoreError as exc:
            raise DatabaseNotReady(str(exc)) from None
        try:
            if migrations.current_version(conn) is None:
                raise DatabaseNotReady(f"{target}: the database has no schema; run "
                                       "`loyalty-backend migrate` first")
        finally:
            conn.close()

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            conn = store.connect(self.db, create=False)
            with self._lock:
                self._open += 1
        healthy = True
        try:
            yield conn
        except engine.DatabaseError:
            healthy = False
            raise
        finally:
            if healthy and conn.in_transaction:  # a page that forgot to end one: undo it
                conn.execute("ROLLBACK")
            if healthy and self._idle.qsize() < self.size:
                self._idle.put(conn)
            else:
                conn.close()
                with self._lock:
                    self._open -= 1

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return
