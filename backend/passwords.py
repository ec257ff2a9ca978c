"""Password hashes: Argon2id through argon2-cffi.

Argon2id is memory-hard and argon2-cffi is the well-kept binding of the reference code;
its encoded hashes carry their own parameters, so raising them later still verifies the old
hashes and `needs_rehash` says when to store a new one. hashlib.scrypt would need its own
encoding of salt and parameters, written here: more code of our own to get wrong.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

#: OWASP's Password Storage recommendation for Argon2id: 19 MiB, 2 passes, 1 lane. About
#: 0.1 s per login on this project's 2-core machine (RFC 9106's 64 MiB option took 0.6 s
#: there, too slow for a login); cheap for a shop, dear for a guesser with a stolen table.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)

#: Verified against when the user does not exist, so a wrong name costs as long as a wrong
#: password and the answer's timing does not tell which names exist.
_DUMMY_HASH = _HASHER.hash("not a password of anyone")


def hash_password(password: str) -> str:
    if not isinstance(password, str) or not password:
        raise ValueError("a password must be non-empty text")
    return _HASHER.hash(password)


def verify_password(encoded: str | None, password: str) -> bool:
    """True when `password` matches `encoded`; `None` (no such user) spends the same time."""
    try:
        return _HASHER.verify(encoded if encoded is not None else _DUMMY_HASH, password) and (
            encoded is not None
        )
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(encoded: str) -> bool:
    return _HASHER.check_needs_rehash(encoded)
