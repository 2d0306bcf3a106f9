"""Property: for any interleaving and duplication of a delta stream, in any batching,
the final table holds the newest version per key (and nothing for a key whose
newest delta is a delete)."""

import tempfile
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from makini_sync.integrity.deltas import Delete, Upsert, load_deltas
from makini_sync.destinations.profiles import load_profile
from sources.makini.settings import ENTITIES

PO = ENTITIES["purchase_orders"]
STAMPS = [f"2026-03-01T10:00:0{s}.000Z" for s in range(6)]


def delta(key: str, version: int, deleted: bool, lines: int):
    if deleted:
        return Delete("conn_p", PO, key, STAMPS[version])
    return Upsert("conn_p", PO, {
        "id": key, "updated_at": STAMPS[version], "status": f"v{version}", "created_at": STAMPS[0],
        "line_items": [{"line_number": n, "quantity": 1.0} for n in range(1, lines + 1)],
    })




@st.composite
def streams(draw):
    # one content per (key, version): equal updated_at means the same version
    chosen = draw(st.dictionaries(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 5)),
                                  st.tuples(st.booleans(), st.integers(1, 3)), min_size=1, max_size=6))
    deltas = [(k, v, d, n) for (k, v), (d, n) in chosen.items()]
    duplicated = deltas + draw(st.lists(st.sampled_from(deltas), max_size=4))
    ordered = draw(st.permutations(duplicated))
    cuts = sorted(draw(st.lists(st.integers(1, len(ordered)), min_size=1, max_size=3)))
    batches, start = [], 0
    for cut in cuts + [len(ordered)]:
        batches.append(ordered[start:cut])
        start = cut
    return chosen, [b for b in batches if b]


@settings(max_examples=20)
@given(streams())
def test_final_table_is_the_newest_version_per_key(monkeypatch_stream):
    chosen, batches = monkeypatch_stream
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "p.duckdb"
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("DLT_DATA_DIR", str(Path(tmp) / "dlt"))
            profile = load_profile("duckdb").with_settings(credentials=str(db))
            for batch in batches:
                load_deltas(profile, [delta(*d) for d in batch])
        expected = {}
        for key in {k for k, _ in chosen}:
            newest = max(((v, d, n) for (k, v), (d, n) in chosen.items() if k == key),
                         key=lambda t: (t[0], t[1]))  # at equal updated_at a delete wins
            if not newest[1]:
                expected[key] = (STAMPS[newest[0]], newest[2])
        with duckdb.connect(str(db), read_only=True) as con:
            tables = {r[0] for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'makini'").fetchall()}
            got = {}
            if "purchase_orders" in tables:
                for rid, stamp in con.execute("SELECT id, strftime(updated_at AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.000Z') FROM makini.purchase_orders").fetchall():
                    lines = con.execute("SELECT COUNT(*) FROM makini.purchase_orders__line_items WHERE purchase_order_id = ?", [rid]).fetchone()[0]
                    got[rid] = (stamp, lines)
        assert got == expected
