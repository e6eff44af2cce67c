"""The `cryptorec` command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.cli import main


def test_help_lists_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "bench" in capsys.readouterr().out


def test_missing_data_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["bench", "accuracy", "--dataset", "ml-100k", "--data-dir", str(tmp_path), "--repeats", "1"]
    )
    assert code == 2
    assert "missing file" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.integration
def test_bench_accuracy_on_ml_100k(
    movielens_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "acc.json"
    code = main(
        [
            "bench",
            "accuracy",
            "--dataset",
            "ml-100k",
            "--data-dir",
            str(movielens_dir),
            "--repeats",
            "1",
            "--no-transfer",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    result = json.loads(out.read_text())
    assert result["dataset"] == "ml-100k"
    assert result["repeats"] == 1
    names = {"CryptoRec-f", "CryptoRec-a(1)", "CryptoRec-a(n)", "BiasedMF", "I-AutoRec"}
    assert names <= set(result["models"])
    for m in result["models"].values():
        assert 0.8 < m["rmse_mean"] < 1.0
        assert m["rmse_std"] == 0.0
    c = result["compression"]
    assert 0 <= c["pruning_ratio"] < 1
    assert 0.5 < c["reuse_ratio"] < 1
    assert abs(c["rmse_after"] - c["rmse_before"]) < 0.002
    assert result["train_seconds"] > 0
    assert out.with_suffix(".png").stat().st_size > 10_000
    assert "CryptoRec-f" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.he
def test_bench_he_ckks_fast_on_ml_100k(movielens_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "he.json"
    code = main(
        [
            "bench",
            "he",
            "--dataset",
            "ml-100k",
            "--data-dir",
            str(movielens_dir),
            "--model-cache",
            str(tmp_path / "models"),
            "--scheme",
            "ckks",
            "--mode",
            "fast",
            "--queries",
            "3",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    r = json.loads(out.read_text())["ckks"]["fast"]
    for key in (
        "client_encrypt_s",
        "server_s",
        "client_decrypt_s",
        "bytes_up",
        "bytes_down",
        "key_bytes",
        "max_abs_err",
        "rmse",
    ):
        assert key in r
    assert r["max_abs_err"] < 1e-3
    assert r["rmse"] > 0  # three users' ~30 ratings: too few for an RMSE band
