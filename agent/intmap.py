"""A hash map from 64-bit ints to non-negative ints kept in two flat arrays.

The journal indexes every entry it holds for up to 7 days by hash(key) -> document id.
As a dict that is two int objects and a slot per entry, scattered over the heap among
each request's short-lived objects, so the heap cannot shrink; here an entry is 16
bytes in two arrays (open addressing, linear probing, at most 2/3 full) and no object.
"""

from __future__ import annotations

from array import array

_EMPTY = 0  # in `_vals`: a free slot; a stored value v is kept as v + 1
_GONE = -1  # in `_vals`: a deleted slot (probing goes on past it)


class IntMap:
    """int64 -> int >= 0 (`get`, `[]`, `in`, `del`, `len`); no iteration needed here."""

    __slots__ = ("_count", "_keys", "_mask", "_used", "_vals")

    def __init__(self) -> None:
        self._alloc(8)

    def _alloc(self, size: int) -> None:
        self._keys = array("q", bytes(8 * size))
        self._vals = array("q", bytes(8 * size))
        self._mask = size - 1
        self._count = 0
        self._used = 0  # stored + deleted slots

    def _find(self, key: int) -> int:
        """The slot holding `key`, or -1."""
        keys, vals, mask = self._keys, self._vals, self._mask
        i = key & mask
        while True:
            v = vals[i]
            if v == _EMPTY:
                return -1
            if v != _GONE and keys[i] == key:
                return i
            i = (i + 1) & mask

    def get(self, key: int, default: int | None = None) -> int | None:
        i = self._find(key)
        return default if i < 0 else self._vals[i] - 1

    def __getitem__(self, key: int) -> int:
        i = self._find(key)
        if i < 0:
            raise KeyError(key)
        return self._vals[i] - 1

    def __contains__(self, key: object) -> bool:
        return isinstance(key, int) and self._find(key) >= 0

    def __len__(self) -> int:
        return self._count

    def __setitem__(self, key: int, value: int) -> None:
        if value < 0:
            raise ValueError("IntMap values are non-negative")
        keys, vals, mask = self._keys, self._vals, self._mask
        i = key & mask
        free = -1
        while True:
            v = vals[i]
            if v == _EMPTY:
                break
            if v == _GONE:
                if free < 0:
                    free = i
            elif keys[i] == key:
                vals[i] = value + 1
                return
            i = (i + 1) & mask
        if free < 0:
            free = i
            self._used += 1
        keys[free] = key
        vals[free] = value + 1
        self._count += 1
        if self._used * 3 >= (mask + 1) * 2:
            self._rehash()

    def __delitem__(self, key: int) -> None:
        i = self._find(key)
        if i < 0:
            raise KeyError(key)
        self._vals[i] = _GONE
        self._count -= 1

    def _rehash(self) -> None:
        old = [(k, v - 1) for k, v in zip(self._keys, self._vals, strict=True) if v > 0]
        size = 8
        while size < 2 * len(old) + 8:  # at most half full after the rehash
            size *= 2
        self._alloc(size)
        for k, v in old:
            self[k] = v
