"""Fetch the official GroupLens MovieLens archives and verify them.

The MovieLens licences forbid redistribution, so this project ships no rating data: users with
internet access download it from GroupLens. Each archive is checked against the MD5 GroupLens
publishes (where the release is frozen) and each extracted rating/title file against its
SHA-256, so a truncated or altered download is refused rather than silently used.
"""

from __future__ import annotations

import hashlib
import http.client
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

BASE_URL = "https://files.grouplens.org/datasets/movielens"


@dataclass(frozen=True)
class Release:
    """An official archive: where it lives, its published MD5 (None if re-released over time)
    and the SHA-256 of the files this project reads from it."""

    archive: str
    md5: str | None
    files: dict[str, str]


RELEASES: dict[str, Release] = {
    "ml-100k": Release(
        "ml-100k.zip",
        "0e33842e24a9c977be4e0107933c0723",
        {
            "u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
            "u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
        },
    ),
    "ml-1m": Release(
        "ml-1m.zip",
        "c4d9eecfca2ab87c1945afe126590906",
        {
            "ratings.dat": "506d64ca44484487c11dc2d9a28de5c54948213e6b96285e298afe28d6ea4e0f",
            "movies.dat": "0140fc2356357c1a851d0f52e893a1e4d3696df632c4141cea8d5bc3d621f0b9",
        },
    ),
    "ml-latest-small": Release(
        "ml-latest-small.zip",
        None,
        {
            "ratings.csv": "aa289ca83157595d0df6aea1be6a4ded676ddc4385472e8313a8ed9805352646",
            "movies.csv": "5a5f32dd9bb3797b8e728a1b98958789d2b13f294a69fdfbc5727f8a9611aa07",
        },
    ),
}


class ChecksumError(ValueError):
    """A downloaded archive or extracted file does not match its published checksum."""


class DownloadError(RuntimeError):
    """The archive could not be fetched (no network, GroupLens unreachable, HTTP error)."""


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of the file at `path` with hashlib `algorithm`, read in 1 MiB blocks."""
    h = hashlib.new(algorithm)
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_files(name: str, directory: Path) -> None:
    """Check the files this project reads from release `name` in `directory` (raises
    ChecksumError naming the first mismatch)."""
    for filename, expected in RELEASES[name].files.items():
        got = file_digest(directory / filename, "sha256")
        if got != expected:
            raise ChecksumError(f"{directory / filename}: sha256 {got}, expected {expected}")


def extract_verified(name: str, archive: Path, data_dir: Path) -> Path:
    """Check `archive` against release `name`, unpack it into `data_dir/name`, verify the files.

    Returns the dataset directory. Members are written only under `data_dir` (zip-slip safe).
    """
    release = RELEASES[name]
    if release.md5 is not None:
        got = file_digest(archive, "md5")
        if got != release.md5:
            raise ChecksumError(f"{archive}: md5 {got}, expected {release.md5}")
    target = Path(data_dir).resolve()
    with zipfile.ZipFile(archive) as zf:
        for member in zf.namelist():
            if not (target / member).resolve().is_relative_to(target):
                raise ChecksumError(f"{archive}: member {member!r} escapes the data directory")
        zf.extractall(target)
    verify_files(name, target / name)
    return target / name


def download(name: str, data_dir: Path, base_url: str = BASE_URL) -> Path:
    """Download release `name` into `data_dir/name` unless it is already there and verified."""
    if name not in RELEASES:
        raise ValueError(f"unknown release {name!r}; choose one of {', '.join(RELEASES)}")
    directory = Path(data_dir) / name
    try:
        verify_files(name, directory)
        return directory
    except (ChecksumError, FileNotFoundError):
        pass
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / RELEASES[name].archive
        url = f"{base_url}/{RELEASES[name].archive}"
        try:
            with urllib.request.urlopen(url, timeout=60) as r, archive.open("wb") as f:
                shutil.copyfileobj(r, f)
        except (OSError, http.client.HTTPException) as exc:  # URLError and timeouts are OSErrors
            reason = getattr(exc, "reason", exc)
            raise DownloadError(
                f"cannot download {name} from {url} ({reason}); check the network, or point "
                "$CRYPTOREC_DATA (or --data-dir) at a folder holding it (a shared/data folder "
                f"beside the checkout is found by itself), or unpack the GroupLens archive into "
                f"{directory} yourself"
            ) from exc
        return extract_verified(name, archive, data_dir)
