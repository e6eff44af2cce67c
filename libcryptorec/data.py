"""Rating datasets: readers for MovieLens releases and plain CSV, with stable id maps.

A dataset is held in coordinate form (one entry per rating) with dense 0-based user and item
indices. Raw ids map to indices by sorted order, so the same file always gives the same maps.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]

MOVIELENS_DATASETS = ("ml-100k", "ml-1m", "ml-latest-small")


class DatasetError(ValueError):
    """A rating file is missing, malformed or empty."""


@dataclass(frozen=True)
class Ratings:
    """Ratings in coordinate form.

    Attributes:
        users: (N,) dense user index of each rating, in [0, n_users).
        items: (N,) dense item index of each rating, in [0, n_items).
        values: (N,) float32 rating values.
        user_ids: (n_users,) raw user id of each dense index, ascending.
        item_ids: (n_items,) raw item id of each dense index, ascending.
        titles: raw item id -> title, where the dataset names its items.
        scale: (lowest, highest) rating the dataset allows, used for clamping.
        name: a short label for reports.
    """

    users: IntArray
    items: IntArray
    values: FloatArray
    user_ids: IntArray
    item_ids: IntArray
    titles: dict[int, str] = field(default_factory=dict)
    scale: tuple[float, float] = (1.0, 5.0)
    name: str = "ratings"

    def __post_init__(self) -> None:
        n = len(self.values)
        if not (len(self.users) == len(self.items) == n):
            raise DatasetError("users, items and values must have the same length")
        if n == 0:
            raise DatasetError(f"{self.name}: no ratings")

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def __len__(self) -> int:
        return len(self.values)

    def to_csr(self, index: IntArray | None = None) -> sp.csr_matrix:
        """Return the (n_users, n_items) float32 CSR rating matrix of all or of `index` ratings."""
        if index is None:
            index = np.arange(len(self.values))
        return sp.csr_matrix(
            (self.values[index], (self.users[index], self.items[index])),
            shape=(self.n_users, self.n_items),
            dtype=np.float32,
        )

    def restrict_items(self, raw_item_ids: IntArray, name: str | None = None) -> Ratings:
        """Keep only ratings of the given raw item ids; re-index users and items densely."""
        keep = np.isin(self.item_ids[self.items], raw_item_ids)
        return from_raw(
            self.user_ids[self.users[keep]],
            self.item_ids[self.items[keep]],
            self.values[keep],
            titles=self.titles,
            scale=self.scale,
            name=name or f"{self.name}[shared items]",
        )


def from_raw(
    raw_users: npt.ArrayLike,
    raw_items: npt.ArrayLike,
    values: npt.ArrayLike,
    *,
    titles: dict[int, str] | None = None,
    scale: tuple[float, float] = (1.0, 5.0),
    name: str = "ratings",
) -> Ratings:
    """Build `Ratings` from (N,) raw user ids, raw item ids and values.

    Duplicate (user, item) pairs are refused: a rating matrix has one value per cell.
    """
    u = np.asarray(raw_users, dtype=np.int64)
    i = np.asarray(raw_items, dtype=np.int64)
    v = np.asarray(values, dtype=np.float32)
    if len(v) == 0:
        raise DatasetError(f"{name}: no ratings")
    if not np.all(np.isfinite(v)):
        raise DatasetError(f"{name}: non-finite rating values")
    lo, hi = scale
    if v.min() < lo or v.max() > hi:
        raise DatasetError(f"{name}: ratings outside the scale [{lo}, {hi}]")
    user_ids, users = np.unique(u, return_inverse=True)
    item_ids, items = np.unique(i, return_inverse=True)
    cells = users.astype(np.int64) * len(item_ids) + items
    if len(np.unique(cells)) != len(cells):
        raise DatasetError(f"{name}: the same (user, item) pair is rated more than once")
    return Ratings(
        users=users.astype(np.int64),
        items=items.astype(np.int64),
        values=v,
        user_ids=user_ids,
        item_ids=item_ids,
        titles=dict(titles or {}),
        scale=scale,
        name=name,
    )


def _require(path: Path) -> Path:
    if not path.is_file():
        raise DatasetError(
            f"missing file {path}: pass --download to fetch it, or point $CRYPTOREC_DATA (or "
            "--data-dir) at a folder holding the dataset"
        )
    return path


def _int_table(text: bytes, sep: bytes, columns: int) -> IntArray:
    """Parse a headerless table of integers, `columns` per line, separated by `sep`."""
    flat = np.array(text.replace(sep, b" ").split(), dtype=np.int64)
    if len(flat) % columns:
        raise DatasetError("malformed rating file: ragged rows")
    return flat.reshape(-1, columns)


def read_ml_100k(directory: Path) -> Ratings:
    """Read MovieLens 100K (`u.data`, `u.item`) from `directory`."""
    table = _int_table(_require(directory / "u.data").read_bytes(), b"\t", 4)
    titles: dict[int, str] = {}
    with _require(directory / "u.item").open(encoding="latin-1") as f:
        for row in csv.reader(f, delimiter="|"):
            if row:
                titles[int(row[0])] = row[1]
    return from_raw(table[:, 0], table[:, 1], table[:, 2], titles=titles, name="ml-100k")


def read_ml_1m(directory: Path) -> Ratings:
    """Read MovieLens 1M (`ratings.dat`, `movies.dat`) from `directory`."""
    table = _int_table(_require(directory / "ratings.dat").read_bytes(), b"::", 4)
    titles: dict[int, str] = {}
    for line in _require(directory / "movies.dat").read_text(encoding="latin-1").splitlines():
        if line:
            movie_id, title, _ = line.split("::", 2)
            titles[int(movie_id)] = title
    return from_raw(table[:, 0], table[:, 1], table[:, 2], titles=titles, name="ml-1m")


def read_ml_latest_small(directory: Path) -> Ratings:
    """Read MovieLens latest-small (`ratings.csv`, `movies.csv`) from `directory`."""
    ratings = read_csv(_require(directory / "ratings.csv"), name="ml-latest-small")
    titles: dict[int, str] = {}
    with _require(directory / "movies.csv").open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        next(reader, None)
        for row in reader:
            if row:
                titles[int(row[0])] = row[1]
    return Ratings(**{**ratings.__dict__, "titles": titles})


def read_csv(
    path: Path, *, scale: tuple[float, float] = (0.5, 5.0), name: str | None = None
) -> Ratings:
    """Read a CSV of `user,item,rating[,...]` rows with integer ids; a header row is optional."""
    with _require(Path(path)).open(encoding="utf-8") as f:
        first = f.readline()
    has_header = not first.split(",")[0].strip().lstrip("-").isdigit()
    try:
        table = np.loadtxt(
            path, delimiter=",", skiprows=int(has_header), usecols=(0, 1, 2), ndmin=2
        )
    except ValueError as exc:
        raise DatasetError(f"{path}: expected rows of user,item,rating: {exc}") from exc
    if table.size == 0:
        raise DatasetError(f"{path}: no ratings")
    return from_raw(
        table[:, 0].astype(np.int64),
        table[:, 1].astype(np.int64),
        table[:, 2],
        scale=scale,
        name=name or Path(path).stem,
    )


def load_movielens(name: str, data_dir: Path) -> Ratings:
    """Load MovieLens release `name` from `data_dir/name/`, as GroupLens archives unpack."""
    readers = {
        "ml-100k": read_ml_100k,
        "ml-1m": read_ml_1m,
        "ml-latest-small": read_ml_latest_small,
    }
    if name not in readers:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(readers)}")
    return readers[name](Path(data_dir) / name)


def synthetic(
    n_users: int = 60,
    n_items: int = 40,
    rank: int = 3,
    density: float = 0.3,
    seed: int = 0,
) -> Ratings:
    """Draw a small low-rank rating dataset on the 1..5 scale, for tests and examples.

    Every user rates at least four items, so any 90/10 split leaves each side non-empty.
    """
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(n_users, rank))
    v = rng.normal(size=(n_items, rank))
    full = 3.0 + (u @ v.T) / np.sqrt(rank) + rng.normal(0, 0.3, size=(n_users, n_items))
    mask = rng.random((n_users, n_items)) < density
    mask[
        np.arange(n_users)[:, None],
        rng.permuted(np.tile(np.arange(n_items), (n_users, 1)), axis=1)[:, :4],
    ] = True
    users, items = np.nonzero(mask)
    values = np.clip(np.rint(full[users, items]), 1, 5)
    titles = {int(i + 1): f"Item {i + 1}" for i in range(n_items)}
    return from_raw(users + 1, items + 1, values, titles=titles, name="synthetic")
