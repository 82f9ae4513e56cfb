"""ml/embedding_table.py: reading, per-row validation and writing of embedding tables (files the tests write)."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ml.embedding_table import LAYOUTS, EmbeddingTable, Layout, ParquetTableWriter, TableError, validate

pytestmark = pytest.mark.unit
D = 6


def write_table(path, n=40, fixed=True, row_group=16, **overrides):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(n, D)).astype(np.float32)
    columns = {
        "id": [f"obj{i}" for i in range(n)],
        "ra": rng.uniform(0, 360, n), "dec": rng.uniform(-60, 60, n),
        "embedding": (pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), D) if fixed
                      else pa.array([list(v) for v in vectors], pa.list_(pa.float32()))),
        "mag_r": rng.uniform(14, 20, n), "kind": ["spiral"] * n,
    }
    columns.update(overrides)
    pq.write_table(pa.table(columns), path, row_group_size=row_group)
    return vectors


@pytest.mark.parametrize("fixed", [True, False])
def test_good_table_streams_in_blocks(tmp_path, fixed):
    vectors = write_table(tmp_path / "t.parquet", fixed=fixed)
    table = EmbeddingTable(tmp_path / "t.parquet", batch_rows=10)
    assert (table.info.n_rows, table.info.dim, table.info.catalog_columns) == (40, D, ["mag_r", "kind"])
    blocks = list(table.blocks())
    assert [b.start for b in blocks] == [0, 10, 20, 30]   # batches, never the whole table
    np.testing.assert_array_equal(np.concatenate([b.vectors for b in blocks]), vectors)
    assert blocks[1].ids[0] == "obj10" and blocks[0].columns["kind"][0] == "spiral"
    checked = validate(table)
    assert (checked.n_good, checked.n_errors, checked.errors) == (40, 0, [])


def test_bad_rows_get_one_error_each_and_good_rows_stay(tmp_path):
    n = 30
    rng = np.random.default_rng(1)
    vectors = [list(v) for v in rng.normal(size=(n, D)).astype(np.float32)]
    vectors[2] = vectors[2][:4]                  # wrong length
    vectors[3][1] = float("nan")                 # NaN
    vectors[4][0] = float("inf")                 # inf
    vectors[5] = None                            # no vector
    ids = [f"g{i}" for i in range(n)]
    ids[20] = "g7"                               # duplicate of row 7 (first kept)
    ids[25] = "g7"                               # and again
    ids[9] = None                                # missing id
    ra = rng.uniform(0, 360, n)
    dec = rng.uniform(-60, 60, n)
    ra[10], dec[11], ra[12], dec[13] = np.nan, np.nan, 400.0, -95.0
    pq.write_table(pa.table({"id": ids, "ra": ra, "dec": dec,
                             "embedding": pa.array(vectors, pa.list_(pa.float32()))}),
                   tmp_path / "bad.parquet", row_group_size=8)
    checked = validate(EmbeddingTable(tmp_path / "bad.parquet", batch_rows=7))
    assert [(e.row, e.id, e.reason.split(" (")[0]) for e in checked.errors] == [
        (2, "g2", f"vector is missing or not of length {D}"),
        (3, "g3", "vector contains NaN or inf"),
        (4, "g4", "vector contains NaN or inf"),
        (5, "g5", f"vector is missing or not of length {D}"),
        (9, "", "missing id"),
        (10, "g10", "missing RA/Dec"),
        (11, "g11", "missing RA/Dec"),
        (12, "g12", "RA outside [0, 360) degrees"),
        (13, "g13", "Dec outside [-90, 90] degrees"),
        (20, "g7", "duplicate id"),
        (25, "g7", "duplicate id"),
    ]
    assert "first at row 7" in checked.errors[-1].reason
    assert checked.n_good == n - 11 and checked.keep[7] and not checked.keep[20]


def test_duplicates_are_checked_exactly_when_hashes_collide(tmp_path, monkeypatch):
    """Every id hashes alike here: only the exact recheck tells duplicates from collisions."""
    import ml.embedding_table as et
    monkeypatch.setattr(et, "_hash_id", lambda text: 7)
    write_table(tmp_path / "t.parquet", n=12, id=["a", "b", "c", "a"] + [f"x{i}" for i in range(8)])
    checked = validate(EmbeddingTable(tmp_path / "t.parquet", batch_rows=5))
    assert [(e.row, e.id) for e in checked.errors] == [(3, "a")] and checked.n_good == 11


def test_a_duplicate_of_a_bad_row_is_kept(tmp_path):
    """The first *good* row of an id is the one kept: a bad earlier row does not take the id."""
    ra = np.full(4, 10.0)
    ra[0] = np.nan
    write_table(tmp_path / "t.parquet", n=4, id=["a", "b", "a", "c"], ra=ra)
    checked = validate(EmbeddingTable(tmp_path / "t.parquet"))
    assert [(e.row, e.reason) for e in checked.errors] == [(0, "missing RA/Dec")]
    assert checked.keep.tolist() == [False, True, True, True]


@pytest.mark.parametrize("content, message", [
    (b"", "not a readable Parquet file"),
    (b"PAR1 this is not really parquet at all PAR1", "not a readable Parquet file"),
])
def test_corrupt_files_raise_table_error(tmp_path, content, message):
    (tmp_path / "bad.parquet").write_bytes(content)
    with pytest.raises(TableError, match=message):
        EmbeddingTable(tmp_path / "bad.parquet")


def test_empty_table_raises(tmp_path):
    schema = pa.schema([("id", pa.string()), ("ra", pa.float64()), ("dec", pa.float64()),
                        ("embedding", pa.list_(pa.float32(), D))])
    pq.write_table(schema.empty_table(), tmp_path / "empty.parquet")
    with pytest.raises(TableError, match="no rows"):
        EmbeddingTable(tmp_path / "empty.parquet")


@pytest.mark.parametrize("column, value, message", [
    ("embedding", ["0.1,0.2"] * 5, "'embedding' is string, not a list of floats"),
    ("embedding", pa.array([["a"]] * 5, pa.list_(pa.string())), "holds string, not floats"),
    ("ra", ["12h30m"] * 5, "'ra' is string, not numeric degrees"),
])
def test_wrong_column_types_raise(tmp_path, column, value, message):
    write_table(tmp_path / "t.parquet", n=5, **{column: value})
    with pytest.raises(TableError, match=message):
        EmbeddingTable(tmp_path / "t.parquet")


def test_missing_columns_name_the_layouts(tmp_path):
    write_table(tmp_path / "t.parquet", n=5)
    with pytest.raises(TableError, match=r"missing column\(s\) \['object_id', 'aion_mean_embedding'\]"):
        EmbeddingTable(tmp_path / "t.parquet", LAYOUTS["aion_ls"])


def test_aion_layout_reads_bytes_ids_and_skips_other_list_columns(tmp_path):
    n = 5
    vec = pa.FixedSizeListArray.from_arrays(pa.array(np.ones(n * D, np.float32)), D)
    pq.write_table(pa.table({
        "aion_search_embedding": pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(n * 3, np.float32)), 3),
        "aion_mean_embedding": vec, "ra": np.linspace(1, 5, n), "dec": np.zeros(n),
        "object_id": pa.array([f"0421p022-{i}".encode() for i in range(n)], pa.binary()),
        "EBV": np.full(n, 0.05, np.float32)}), tmp_path / "aion.parquet")
    table = EmbeddingTable(tmp_path / "aion.parquet", LAYOUTS["aion_ls"])
    assert (table.info.dim, table.info.catalog_columns, table.info.skipped_columns) == (
        D, ["EBV"], ["aion_search_embedding"])
    block = next(table.blocks())
    assert block.ids[0] == "0421p022-0" and block.columns["EBV"][0] == pytest.approx(0.05)


def test_npy_with_csv(tmp_path):
    vectors = np.arange(5 * D, dtype=np.float32).reshape(5, D)
    np.save(tmp_path / "v.npy", vectors)
    (tmp_path / "v.csv").write_text("objid,ra,dec,z\n1,10,1,0.1\n2,11,2,0.2\n3,,3,0.3\n4,13,4,0.4\n1,14,5,0.5\n")
    table = EmbeddingTable(tmp_path / "v.npy", Layout(id="objid"), batch_rows=2)
    assert (table.info.kind, table.info.n_rows, table.info.catalog_columns) == ("npy+csv", 5, ["z"])
    checked = validate(table)
    assert [(e.row, e.id, e.reason.split(" (")[0]) for e in checked.errors] == [
        (2, "3", "missing RA/Dec"), (4, "1", "duplicate id")]
    rows = [b for b in table.blocks()]
    np.testing.assert_array_equal(np.concatenate([b.vectors for b in rows]), vectors)


def test_npy_row_count_must_match_csv(tmp_path):
    np.save(tmp_path / "v.npy", np.zeros((3, D), np.float32))
    (tmp_path / "v.csv").write_text("id,ra,dec\na,1,1\nb,2,2\n")
    with pytest.raises(TableError, match="has 2 rows but v.npy has 3 vectors"):
        EmbeddingTable(tmp_path / "v.npy")


def test_writer_round_trip_and_atomicity(tmp_path):
    tmp_path = tmp_path / "written"
    tmp_path.mkdir()
    out = tmp_path / "out.parquet"
    vectors = np.random.default_rng(2).normal(size=(7, D)).astype(np.float32)
    with ParquetTableWriter(out, D, {"source": "test"}, row_group_rows=3) as writer:
        writer.write(["a", "b", "c"], [1, 2, 3], [0, 0, 0], vectors[:3], {"z": [0.1, None, 0.3], "n": [1, 2, 3]})
        writer.write(list("defg"), [4, 5, 6, 7], [1, 1, 1, 1], vectors[3:], {"z": [1, 2, 3, 4], "n": [4, 5, 6, 7]})
    table = EmbeddingTable(out)
    assert table.info.file_metadata == {"source": "test"} and table.info.catalog_columns == ["z", "n"]
    blocks = list(table.blocks())
    np.testing.assert_array_equal(np.concatenate([b.vectors for b in blocks]), vectors)
    assert sum((b.columns["z"] for b in blocks), []) == [0.1, None, 0.3, 1.0, 2.0, 3.0, 4.0]
    with pytest.raises(RuntimeError):
        with ParquetTableWriter(tmp_path / "half.parquet", D) as writer:
            writer.write(["a"], [1], [1], vectors[:1])
            raise RuntimeError("disk gone")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.parquet"]   # no half file, no partial
