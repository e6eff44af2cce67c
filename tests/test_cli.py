"""The `cryptorec` command line."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import socket
import subprocess
import sys
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from cryptorec.benchmarks import DRIVERS
from cryptorec.benchmarks.driver import plot_path
from cryptorec.services import settings
from cryptorec.services.cli import build_parser, main, server_config
from cryptorec.services.store.redis_store import RedisStore
from libcryptorec.data import synthetic


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
    rating = {"CryptoRec-f", "CryptoRec-a(1)", "CryptoRec-a(n)", "BiasedMF", "I-AutoRec"}
    rating |= {"Surprise SVD", "Surprise item-KNN"}
    ranking_only = {"CryptoRec-rank", "Popularity", "EASE", "implicit ALS"}
    assert set(result["models"]) == rating | ranking_only
    assert result["served"] == "CryptoRec-rank"
    for name, m in result["models"].items():
        if name in rating:
            assert 0.8 < m["rmse_mean"] < 1.0
            assert m["rmse_std"] == 0.0
        else:
            assert "rmse_mean" not in m  # ranking scores are not stars
        for metric in ("ndcg@10", "recall@10", "precision@10", "mrr", "coverage@10"):
            assert 0.0 <= m[metric] <= 1.0
    # A random ranking scores an NDCG@10 near 0.005 here; the models rank far better, and the
    # served one better than a most-popular list.
    assert result["models"]["CryptoRec-f"]["ndcg@10"] > 0.05
    served = result["models"]["CryptoRec-rank"]["ndcg@10"]
    assert served > 1.5 * result["models"]["Popularity"]["ndcg@10"]
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
            "--agreement-users",
            "3",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    result = json.loads(out.read_text())
    for kind in ("stars", "ranking"):
        r = result["models"][kind]["ckks"]["fast"]
        for key in (
            "client_encrypt_s",
            "server_s",
            "client_decrypt_s",
            "bytes_up",
            "bytes_down",
            "key_bytes",
            "max_abs_err",
            "rmse",
            "top10_agreement",
        ):
            assert key in r
        assert r["max_abs_err"] < 1e-3
        assert r["top10_agreement"] == 1.0
    assert result["models"]["stars"]["ckks"]["fast"]["rmse"] > 0  # too few ratings for a band
    assert result["ranking_vs_stars"]["ckks/fast"] > 0  # both measured in the same run


# --- one source of settings (flag, else environment, else default) ----------------------------


def _subparsers(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, Any]:
    out = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                out[f"{prefix}{name}"] = child
                out.update(_subparsers(child, f"{prefix}{name} "))
    return out


def test_every_command_reads_each_setting_from_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    values = {
        "store": "redis://10.0.0.1:6379/3",
        "store_prefix": "other:",
        "data_dir": "/srv/movielens",
        "retain": "9",
        "work_slots": "7",
        "key_ttl_seconds": "60",
        "tls_ca": "/etc/ca.pem",
    }
    for name, value in values.items():
        monkeypatch.setenv(settings.SETTINGS[name].env, value)
    seen = 0
    for command, parser in _subparsers(build_parser()).items():
        for action in parser._actions:
            for name, value in values.items():
                if f"env {settings.SETTINGS[name].env};" in (action.help or ""):
                    assert action.default == value, f"{command} {action.option_strings}"
                    seen += 1
    parse = build_parser().parse_args
    assert parse(["train", "--csv", "x"]).store_prefix == "other:"
    assert parse(["train", "--csv", "x"]).retain == 9
    assert parse(["serve"]).work_slots == 7
    assert parse(["serve"]).store_prefix == "other:"
    assert parse(["serve", "--store-prefix", "flag:"]).store_prefix == "flag:"  # flag wins
    assert parse(["demo"]).data_dir == Path("/srv/movielens")
    assert seen >= 12  # store and prefix in serve and train, data dir everywhere, ...


def test_help_names_each_default_and_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in (
        "store",
        "store_prefix",
        "work_slots",
        "cache_bytes",
        "key_ttl_seconds",
        "paillier_workers",  # Paillier's own Option, offered by serve like the rest
    ):
        assert f"env {settings.settings_for('serve')[name].env}; default" in text


def test_every_flag_of_every_command_says_what_it_does() -> None:
    """--help explains every flag and argument of every command (a setting's also names its
    variable and default)."""
    silent = [
        f"{command} {action.option_strings or [action.dest]}"
        for command, parser in _subparsers(build_parser()).items()
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction | argparse._SubParsersAction)
        and not action.help
    ]
    assert silent == []


def test_a_setting_declared_once_reaches_help_config_and_consumer(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One declaration (name, type, default, variable, help, commands) and nothing else:
    `serve --help` shows it, its variable sets it, the typed config built from the parsed
    arguments carries it, typed, for whoever reads it."""
    knob = settings.declare(
        "toy_knob",
        settings.Setting(
            "--toy-knob", "CRYPTOREC_TOY_KNOB", "3", "a toy's knob", int, commands=("serve",)
        ),
    )
    try:
        with pytest.raises(SystemExit):
            main(["serve", "--help"])
        shown = " ".join(capsys.readouterr().out.split())
        assert "--toy-knob TOY_KNOB a toy's knob [env CRYPTOREC_TOY_KNOB; default 3]" in shown
        assert server_config(build_parser().parse_args(["serve"])).options["toy_knob"] == 3
        monkeypatch.setenv("CRYPTOREC_TOY_KNOB", "7")
        config = server_config(build_parser().parse_args(["serve"]))
        assert config.options["toy_knob"] == 7
        config = server_config(build_parser().parse_args(["serve", "--toy-knob", "9"]))
        assert config.options["toy_knob"] == 9
        assert knob.default_value == 3
        with pytest.raises(ValueError, match="declared already"):
            settings.declare("toy_knob", knob)
        # A flag may be reused by commands that do not share it (serve's --tls-cert is the
        # server's, recommend's the client's), never by one that does.
        clash = settings.Setting("--toy-knob", "CRYPTOREC_TOY_KNOB_2", None, "a clash")
        with pytest.raises(ValueError, match="declared already"):
            settings.declare("toy_clash", replace(clash, commands=("serve",)))
        settings.declare("toy_elsewhere", replace(clash, commands=("train",)))
    finally:
        settings.withdraw("toy_knob")
        settings.withdraw("toy_elsewhere")
    assert "--toy-knob" not in build_parser().format_help()


def test_serve_settings_land_in_the_typed_config() -> None:
    """Every ServerConfig and Limits field named after a setting takes the parsed value:
    no hand copy in between."""
    args = build_parser().parse_args(
        ["serve", "--work-slots", "5", "--cache-bytes", "1G", "--key-ttl", "60", "--auth"]
    )
    config = server_config(args)
    assert config.limits.work_slots == 5
    assert config.cache_bytes == 1 << 30
    assert config.key_ttl_seconds == 60
    assert config.auth is True
    assert config.options["paillier_workers"] == 1  # a backend's own option, by default


def test_train_honours_the_store_prefix_like_serve(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    csv = tmp_path / "ratings.csv"
    r = synthetic(n_users=40, n_items=20, rank=2, density=0.5, seed=3)
    rows = zip(r.user_ids[r.users], r.item_ids[r.items], r.values, strict=True)
    csv.write_text("".join(f"{u},{i},{v:.1f}\n" for u, i, v in rows))
    prefix = f"cli-{uuid.uuid4().hex[:8]}:"
    monkeypatch.setenv("CRYPTOREC_STORE_PREFIX", prefix)
    assert main(["train", "--csv", str(csv), "--store", redis_url, "--version", "v1"]) == 0
    store = RedisStore(redis_url, prefix=prefix)
    try:
        assert store.current() == "v1"  # where `serve` with the same environment looks
    finally:
        for key in store._r.scan_iter(match=prefix + "*"):
            store._r.delete(key)


# --- RELIABILITY.md line 31: every CLI failure is one clear line and a non-zero exit code ------


def _run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cryptorec.services.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _assert_one_line(proc: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("cryptorec: ")
    for word in words:
        assert word in lines[0]


@pytest.mark.slow
def test_demo_without_data_or_network_is_one_line_exit_3(tmp_path: Path) -> None:
    """RELIABILITY.md line 31: `make demo` on a machine that cannot reach GroupLens."""
    proc = _run_cli(
        "demo",
        "--download",
        "--data-dir",
        str(tmp_path / "empty"),
        "--download-url",
        f"http://127.0.0.1:{_closed_port()}/movielens",
    )
    _assert_one_line(
        proc, 3, "cannot download ml-100k", "check the network", "$CRYPTOREC_DATA", "shared/data"
    )


@pytest.mark.slow
def test_cli_failures_a_user_meets_are_one_line_each(tmp_path: Path) -> None:
    """RELIABILITY.md line 31: missing data, unreachable store, bad files, no server."""
    empty = tmp_path / "empty"
    _assert_one_line(_run_cli("demo", "--data-dir", str(empty)), 2, "missing")
    csv = tmp_path / "r.csv"
    csv.write_text("1,1,5\n1,2,4\n2,1,3\n")
    dead = f"redis://127.0.0.1:{_closed_port()}/0"
    _assert_one_line(_run_cli("train", "--csv", str(csv), "--store", dead), 3, "store unavailable")
    bad = tmp_path / "mine.csv"
    bad.write_text("item,rating\n1,5\n2,five\n")
    _assert_one_line(_run_cli("recommend", "--ratings", str(bad)), 2, "mine.csv:3")
    good = tmp_path / "good.csv"
    good.write_text("1,5\n")
    target = f"127.0.0.1:{_closed_port()}"
    _assert_one_line(
        _run_cli("recommend", "--ratings", str(good), "--target", target), 3, "UNAVAILABLE"
    )
    _assert_one_line(_run_cli("recommend", "--ratings", str(tmp_path / "none.csv")), 2, "none.csv")
    _assert_one_line(
        _run_cli("serve", "--tls-cert", str(tmp_path / "no.crt"), "--tls-key", "no.key"),
        2,
        "No such file",
    )
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        _assert_one_line(
            _run_cli("serve", "--host", "127.0.0.1", "--port", port, "--store", f"file://{empty}"),
            3,
            "cannot listen",
        )


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.he
def test_clients_and_tokens_through_the_cli(tmp_path: Path) -> None:
    """`clients add alice --queries-per-day 2`, then `serve --auth`: `recommend` without a token
    is UNAUTHENTICATED, with it twice answered, the third time RESOURCE_EXHAUSTED with the
    reason (RELIABILITY.md line 32) and when to try again."""
    from cryptorec.services import versions
    from cryptorec.services.store.file_store import FileStore
    from tests.test_service_e2e import ITEMS, _packed

    store_url = f"file://{tmp_path / 'store'}"
    versions.publish(
        FileStore(tmp_path / "store"), "v1", _packed(), [(i + 1, f"I{i}") for i in range(ITEMS)]
    )
    added = _run_cli("clients", "add", "alice", "--queries-per-day", "2", "--store", store_url)
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip().splitlines()[-1]
    assert token.startswith("crt_")
    listed = _run_cli("clients", "list", "--store", store_url)
    assert "alice" in listed.stdout
    assert "0/2" in listed.stdout
    port = _closed_port()
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "cryptorec.services.cli", "serve", "--auth"),
            *("--store", store_url, "--host", "127.0.0.1", "--port", str(port)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        from cryptorec.services.rpc.health import wait_for

        wait_for(f"127.0.0.1:{port}", timeout=60)
        ratings = tmp_path / "mine.csv"
        ratings.write_text("item,rating\n3,5\n7,1\n11,4\n19,2\n")
        common = ("recommend", "--ratings", str(ratings), "--target", f"127.0.0.1:{port}")
        keys = ("--key-dir", str(tmp_path / "keys"), "--model", "stars")
        _assert_one_line(_run_cli(*common, *keys), 2, "UNAUTHENTICATED")
        for _ in range(2):
            answered = _run_cli(*common, *keys, "--token", token)
            assert answered.returncode == 0, answered.stderr
            assert "1. " in answered.stdout
        _assert_one_line(
            _run_cli(*common, *keys, env={"CRYPTOREC_TOKEN": token}),
            3,
            "RESOURCE_EXHAUSTED (QUOTA_EXCEEDED)",
            "your budget is spent",
            "try again in",
        )
        revoked = _run_cli("clients", "revoke", "alice", "--store", store_url)
        assert revoked.returncode == 0
    finally:
        server.terminate()
        server.wait(timeout=60)


@pytest.mark.integration
@pytest.mark.he
def test_serve_with_metrics_and_json_logs_then_recommend(tmp_path: Path) -> None:
    """Issue 10's check, as an operator runs it: `serve --role all --metrics-port M
    --log-format json`, one `recommend`; /metrics shows the Predict counter and histogram
    buckets, stderr holds JSON lines with the request id."""
    import urllib.request

    from cryptorec.services import versions
    from cryptorec.services.store.file_store import FileStore
    from tests.test_service_e2e import ITEMS, _packed

    store_url = f"file://{tmp_path / 'store'}"
    versions.publish(
        FileStore(tmp_path / "store"), "v1", _packed(), [(i + 1, f"I{i}") for i in range(ITEMS)]
    )
    port, metrics_port = _closed_port(), _closed_port()
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log_file:
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "cryptorec.services.cli", "serve", "--role", "all"),
                *("--store", store_url, "--host", "127.0.0.1", "--port", str(port)),
                *("--metrics-port", str(metrics_port), "--log-format", "json"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
    try:
        from cryptorec.services.rpc.health import wait_for

        wait_for(f"127.0.0.1:{port}", timeout=60)
        ratings = tmp_path / "mine.csv"
        ratings.write_text("item,rating\n3,5\n7,1\n11,4\n19,2\n")
        out = tmp_path / "result.json"
        answered = _run_cli(
            *("recommend", "--ratings", str(ratings), "--target", f"127.0.0.1:{port}"),
            *("--key-dir", str(tmp_path / "keys"), "--json", str(out), "--model", "stars"),
        )
        assert answered.returncode == 0, answered.stderr
        request_id = json.loads(out.read_text())["request_id"]
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as reply:
            metrics = reply.read().decode()
    finally:
        server.terminate()
        server.wait(timeout=60)
    counter = re.search(
        r'^grpc_server_handled_total\{grpc_code="OK",grpc_method="Predict",'
        r'grpc_service="cryptorec.v1.EvaluatorService",grpc_type="bidi_stream"\} (\S+)$',
        metrics,
        re.MULTILINE,
    )
    assert counter, metrics
    assert float(counter.group(1)) > 0
    assert 'grpc_server_handling_seconds_bucket{grpc_method="Predict"' in metrics
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    assert all("level" in line and "message" in line for line in lines)
    (predict,) = [line for line in lines if line.get("method") == "Predict"]
    assert predict["request_id"] == request_id
    assert predict["code"] == "OK"


def test_a_sharded_evaluator_without_a_peer_secret_refuses_to_start() -> None:
    """RELIABILITY.md line 41: without the peers' secret anyone could ask for partial products
    (rows of the model); `serve --shard-peers` without one is one line and exit 2."""
    proc = _run_cli(
        *("serve", "--role", "evaluator", "--port", str(_closed_port())),
        *("--shard-peers", "127.0.0.1:1"),
        env={"CRYPTOREC_PEER_SECRET": ""},
    )
    _assert_one_line(proc, 2, "--peer-secret")


def _unreachable_redis() -> str:
    return f"redis://127.0.0.1:{_closed_port()}/0"


@pytest.mark.slow
def test_serve_checks_its_store_at_start(tmp_path: Path) -> None:
    """RELIABILITY.md line 43: `serve` with a store it cannot reach exits 3 naming the store
    (not "is the service running?" later, at its clients); with --wait-for-store it serves,
    not ready, and says why in a warning."""
    proc = _run_cli("serve", "--port", str(_closed_port()), "--store", _unreachable_redis())
    _assert_one_line(proc, 3, "store unavailable at start", "--store", "--wait-for-store")
    port = _closed_port()
    waiting = subprocess.Popen(
        [
            *(sys.executable, "-m", "cryptorec.services.cli", "serve", "--host", "127.0.0.1"),
            *("--port", str(port), "--store", _unreachable_redis(), "--wait-for-store"),
        ],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "CRYPTOREC_METRICS_PORT": "0"},
    )
    try:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=60)
            health = health_pb2_grpc.HealthStub(channel)
            reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        waiting.terminate()
        _, stderr = waiting.communicate(timeout=60)
    assert "WARNING" in stderr
    assert "store unavailable at start" in stderr


@pytest.mark.slow
def test_a_store_url_of_an_unknown_scheme_is_refused(tmp_path: Path) -> None:
    """RELIABILITY.md line 43: `--store ftp://x` is not a folder called "ftp:"."""
    proc = subprocess.run(
        [sys.executable, "-m", "cryptorec.services.cli", "serve", "--store", "ftp://x"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    _assert_one_line(proc, 2, "ftp://", "redis://")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_negative_and_absurd_client_limits_are_refused(tmp_path: Path) -> None:
    """RELIABILITY.md line 43: `clients add --queries-per-day -3` and its kin."""
    store = ("--store", f"file://{tmp_path / 'store'}")
    for flag, value in [
        ("--queries-per-day", "-3"),
        ("--queries-per-day", "0"),
        ("--max-key-sets", "100000"),
        ("--max-key-bytes", "1"),
    ]:
        proc = _run_cli("clients", "add", "alice", flag, value, *store)
        _assert_one_line(proc, 2, flag, "outside")
    assert "alice" not in _run_cli("clients", "list", *store).stdout


@pytest.mark.slow
def test_demo_checks_its_redis_before_training(tmp_path: Path, movielens_dir: Path) -> None:
    """RELIABILITY.md line 31: an unreachable --redis is found before 40 s of training, and
    the message names --redis (demo has no --store)."""
    log = tmp_path / "demo.log"
    proc = _run_cli(
        *("demo", "--data-dir", str(movielens_dir), "--redis", _unreachable_redis()),
        *("--log-file", str(log)),
    )
    _assert_one_line(proc, 3, "store unavailable", "check --redis")
    assert "--store" not in proc.stderr
    assert "training" not in (log.read_text() if log.exists() else "")


@pytest.mark.slow
def test_what_a_first_user_mistypes_gets_one_line(tmp_path: Path) -> None:
    """RELIABILITY.md lines 31 and 43: a command group without its command lists the
    commands; `train` with a missing data folder leaves no store folder behind."""
    for group, commands in [
        ("clients", "add, rotate, list, revoke"),
        ("data", "download"),
        ("bench", "accuracy"),
    ]:
        _assert_one_line(_run_cli(group), 2, commands, "--help")
    store = tmp_path / "store"
    proc = _run_cli(
        *("train", "--data-dir", str(tmp_path / "nothing"), "--store", f"file://{store}")
    )
    _assert_one_line(proc, 2, "missing file", "--download", "$CRYPTOREC_DATA")
    assert not store.exists()


@pytest.mark.parametrize("name", sorted(DRIVERS))
def test_every_benchmark_takes_the_arguments_it_declares(name: str, tmp_path: Path) -> None:
    """A driver's DRIVER declaration alone decides whether it takes --dataset (with its
    default), --download, --json and --plot; a plot goes beside the JSON unless named."""
    driver = importlib.import_module(DRIVERS[name]).DRIVER
    args = build_parser().parse_args(["bench", name])
    assert getattr(args, "dataset", None) == driver.dataset
    assert hasattr(args, "download") == driver.download
    assert hasattr(args, "json") == (driver.results is not None)
    assert hasattr(args, "plot") == (driver.plot is not None)
    if driver.plot is not None:
        assert plot_path(args) is None
        results = str(tmp_path / "results.json")
        beside = build_parser().parse_args(["bench", name, "--json", results])
        assert plot_path(beside) == tmp_path / "results.png"
        named = build_parser().parse_args(
            ["bench", name, "--json", results, "--plot", str(tmp_path / "figure")]
        )
        assert plot_path(named) == tmp_path / "figure"


def test_a_backend_options_bad_value_says_why(capsys: pytest.CaptureFixture[str]) -> None:
    """A backend's Option parser raises ValueError; the command line shows its message, not
    argparse's bare "invalid <function> value"."""
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["serve", "--paillier-workers", "0"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--paillier-workers: invalid value '0': must be at least 1, got 0" in err
