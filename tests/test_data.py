"""Readers, id maps and dataset validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from libcryptorec.data import (
    DatasetError,
    from_raw,
    load_movielens,
    read_csv,
    read_ml_1m,
    read_ml_100k,
    read_ml_latest_small,
)


def test_id_maps_are_sorted_and_stable() -> None:
    r = from_raw([30, 10, 20, 10], [7, 5, 7, 9], [1, 2, 3, 4])
    assert r.user_ids.tolist() == [10, 20, 30]
    assert r.item_ids.tolist() == [5, 7, 9]
    assert r.user_ids[r.users].tolist() == [30, 10, 20, 10]
    assert r.item_ids[r.items].tolist() == [7, 5, 7, 9]
    again = from_raw([30, 10, 20, 10], [7, 5, 7, 9], [1, 2, 3, 4])
    assert np.array_equal(again.users, r.users)
    assert np.array_equal(again.items, r.items)


def test_duplicate_pair_is_refused() -> None:
    with pytest.raises(DatasetError, match="more than once"):
        from_raw([1, 1], [2, 2], [3, 4])


@pytest.mark.parametrize("values", [[0.0], [6.0], [np.nan]])
def test_out_of_scale_or_nan_is_refused(values: list[float]) -> None:
    with pytest.raises(DatasetError):
        from_raw([1], [1], values)


def test_empty_is_refused() -> None:
    with pytest.raises(DatasetError, match="no ratings"):
        from_raw([], [], [])


def test_to_csr_matches_coordinates(tiny) -> None:  # type: ignore[no-untyped-def]
    R = tiny.to_csr()
    assert R.shape == (tiny.n_users, tiny.n_items)
    assert R.nnz == len(tiny)
    assert np.allclose(R[tiny.users, tiny.items].A1, tiny.values)


def test_ml_1m_format(tmp_path: Path) -> None:
    (tmp_path / "ratings.dat").write_text("1::10::5::978300760\n2::10::3::978302109\n1::20::4::1\n")
    (tmp_path / "movies.dat").write_bytes(
        "10::Amélie (2001)::Comedy\n20::B (1999)::Drama\n".encode("latin-1")
    )
    r = read_ml_1m(tmp_path)
    assert (len(r), r.n_users, r.n_items) == (3, 2, 2)
    assert r.titles[10] == "Amélie (2001)"


def test_ml_100k_format(tmp_path: Path) -> None:
    (tmp_path / "u.data").write_text("196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    (tmp_path / "u.item").write_text(
        "242|Kolya (1996)|24-Jan-1997||http://x|0\n302|L.A. Confidential (1997)|x||y|0\n"
    )
    r = read_ml_100k(tmp_path)
    assert len(r) == 2
    assert r.titles[302] == "L.A. Confidential (1997)"


def test_ml_latest_small_format(tmp_path: Path) -> None:
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.5,9\n2,1,0.5,9\n")
    (tmp_path / "movies.csv").write_text(
        'movieId,title,genres\n1,"Toy Story, The (1995)",Animation\n'
    )
    r = read_ml_latest_small(tmp_path)
    assert r.values.tolist() == [4.5, 0.5]
    assert r.titles[1] == "Toy Story, The (1995)"


def test_plain_csv_with_and_without_header(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("user,item,rating\n1,2,3\n4,5,1\n")
    (tmp_path / "b.csv").write_text("1,2,3\n4,5,1\n")
    a, b = read_csv(tmp_path / "a.csv"), read_csv(tmp_path / "b.csv")
    assert np.array_equal(a.values, b.values)
    assert a.n_users == 2


def test_malformed_csv_is_a_dataset_error(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text("1,2,three\n")
    with pytest.raises(DatasetError):
        read_csv(tmp_path / "bad.csv")


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"u\.data"):
        load_movielens("ml-100k", tmp_path)


def test_unknown_dataset(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_movielens("ml-10m", tmp_path)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("name", "ratings", "users", "items"),
    [
        ("ml-100k", 100_000, 943, 1_682),
        ("ml-1m", 1_000_209, 6_040, 3_706),
        ("ml-latest-small", 100_836, 610, 9_724),
    ],
)
def test_real_movielens_counts(
    movielens_dir: Path, name: str, ratings: int, users: int, items: int
) -> None:
    r = load_movielens(name, movielens_dir)
    assert (len(r), r.n_users, r.n_items) == (ratings, users, items)
    assert len(r.titles) >= items * 0.99
