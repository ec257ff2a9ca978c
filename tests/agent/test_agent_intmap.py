"""IntMap, the journal's compact index from key hashes to positions: a dict of ints."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.intmap import IntMap


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["put", "del", "get"]),
                          st.integers(0, 40) | st.integers(-(2**63) + 1, 2**63 - 1),
                          st.integers(0, 2**40)), max_size=300))
def test_intmap_behaves_like_a_dict(ops: list[tuple[str, int, int]]) -> None:
    model: dict[int, int] = {}
    m = IntMap()
    for op, key, value in ops:
        if op == "put":
            m[key] = value
            model[key] = value
        elif op == "del":
            if key in model:
                del m[key]
                del model[key]
            else:
                with pytest.raises(KeyError):
                    del m[key]
        assert m.get(key) == model.get(key) and (key in m) == (key in model)
        assert len(m) == len(model)
    assert all(m[k] == v for k, v in model.items())
