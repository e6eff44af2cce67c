"""The GroupLens download helper's verification, without the network."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from libcryptorec import download
from libcryptorec.download import ChecksumError, Release, extract_verified


@pytest.fixture
def fake_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    content = b"1::1::5::0\n"
    archive = tmp_path / "fake.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("fake/ratings.dat", content)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    release = Release("fake.zip", md5, {"ratings.dat": hashlib.sha256(content).hexdigest()})
    monkeypatch.setitem(download.RELEASES, "fake", release)
    return archive


def test_verified_archive_extracts(fake_release: Path, tmp_path: Path) -> None:
    out = extract_verified("fake", fake_release, tmp_path / "data")
    assert (out / "ratings.dat").read_bytes() == b"1::1::5::0\n"


def test_wrong_md5_is_refused(fake_release: Path, tmp_path: Path) -> None:
    fake_release.write_bytes(fake_release.read_bytes() + b"x")
    with pytest.raises(ChecksumError, match="md5"):
        extract_verified("fake", fake_release, tmp_path / "data")


def test_altered_member_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = tmp_path / "fake.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("fake/ratings.dat", b"tampered")
    monkeypatch.setitem(
        download.RELEASES, "fake", Release("fake.zip", None, {"ratings.dat": "0" * 64})
    )
    with pytest.raises(ChecksumError, match="sha256"):
        extract_verified("fake", archive, tmp_path / "data")


def test_zip_slip_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../../escape.txt", b"x")
    monkeypatch.setitem(download.RELEASES, "fake", Release("evil.zip", None, {}))
    with pytest.raises(ChecksumError, match="escapes"):
        extract_verified("fake", archive, tmp_path / "data")
    assert not (tmp_path.parent / "escape.txt").exists()


@pytest.mark.integration
def test_shared_copies_match_the_pinned_checksums(movielens_dir: Path) -> None:
    for name in download.RELEASES:
        download.verify_files(name, movielens_dir / name)
