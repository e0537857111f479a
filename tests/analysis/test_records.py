"""The packed row stores and the interner."""

from __future__ import annotations

import pytest

from qosinspect.analysis.records import NO_TS, Interner, RowStore

SPEC = (("a", "q", NO_TS), ("b", "i", -1), ("c", "b", 0))


class SmallChunks(RowStore):
    FIRST_CHUNK_ROWS = 2
    MAX_CHUNK_ROWS = 4


@pytest.mark.parametrize("cls", [RowStore, SmallChunks])
def test_rows_across_chunks(cls: type[RowStore]) -> None:
    st = cls(SPEC)
    for i in range(11):
        assert st.append(1_700_000_000_000_000_000 + i, -i, i % 2) == i
    assert st.rows == 11 and st.size == 13
    # chunks of 2, 2, 4, 4 rows (then up to 4) or one of 1024
    assert [len(c) for c in st.chunks()] == ([2, 2, 4, 3] if cls is SmallChunks else [11])
    assert st.nbytes() == (12 if cls is SmallChunks else 1024) * 13
    assert st.get("a", 9) == 1_700_000_000_000_000_009 and st.get("b", 9) == -9
    st.set("b", 6, 123)
    st.add("c", 6)
    assert st.row(6) == {"a": 1_700_000_000_000_000_006, "b": 123, "c": 1}
    v = st.view()
    assert list(v["b"])[5:8] == [-5, 123, -7] and v["a"][0] == 1_700_000_000_000_000_000
    assert st.get("nope", 3, default=77) == 77
    st.set("nope", 3, 1)  # a column this store does not have: nothing happens
    with pytest.raises(IndexError):
        st.get("a", 11)


def test_empty_store_views() -> None:
    st = RowStore(SPEC)
    assert st.chunks() == [] and len(st.view()) == 0 and st.view().dtype.names == ("a", "b",
                                                                                   "c")


def test_interner() -> None:
    it = Interner()
    assert [it.code(v) for v in ("x", "y", "x", None)] == [0, 1, 0, -1]
    assert it.value(1) == "y" and it.value(-1) is None and len(it) == 2
