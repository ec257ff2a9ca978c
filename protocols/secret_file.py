"""Secrets kept in files (MAC keys, broker passwords): read only when private.

A secret's file that other users may read or write is refused, not used: the service
exits with the reason instead of running with a key anyone on the machine could copy.
The agent and the backend both read theirs through here, so they refuse the same files.
"""

from __future__ import annotations

import os
import stat


def read_private(path: str | os.PathLike[str]) -> str:
    """The text of `path` (surrounding white space removed); ValueError naming the file,
    never echoing its content, when it is not a private, readable UTF-8 regular file."""
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise ValueError(f"{path} is not a regular file")
            if mode & (stat.S_IROTH | stat.S_IWOTH):
                raise ValueError(
                    f"{path} is readable or writable by other users; "
                    f"make it private (chmod 600 {path})"
                )
            raw = f.read(4096)
    except OSError as exc:
        raise ValueError(f"{path} cannot be read: {exc.strerror}") from None
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
