"""Every setting a `cryptorec` command reads, in one table, read one way: the flag, else the
environment variable, else the default. `--help` shows each variable and default.

Nothing else reads the environment for these: the library takes plain arguments, and the
services take a `ServerConfig` built from the parsed flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from libcryptorec.download import BASE_URL

T = TypeVar("T")
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cryptorec"


def default_data_dir() -> Path:
    """A `shared/data` folder beside the checkout if there is one, else the user cache."""
    beside = Path(__file__).resolve().parents[2] / "shared" / "data"
    return beside if beside.is_dir() else CACHE_DIR / "data"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {value}")
    return value


def _log_format(text: str) -> str:
    if text not in ("text", "json"):
        raise argparse.ArgumentTypeError(f"choose text or json, not {text!r}")
    return text


def _log_level(text: str) -> str:
    level = text.strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise argparse.ArgumentTypeError(f"choose DEBUG, INFO, WARNING or ERROR, not {text!r}")
    return level


def byte_size(text: str) -> int:
    """Bytes from "3221225472", "3G", "512M" or "64K" (powers of 1024)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    factor = units.get(text[-1:], 1)
    value = float(text[:-1] if text[-1:] in units else text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return int(value * factor)


def duration(text: str) -> float:
    """Seconds from "90d", "12h", "30m", "45s" or "3600"."""
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    text = text.strip().lower()
    factor = units.get(text[-1:], 1)
    try:
        value = float(text[:-1] if text[-1:] in units else text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a duration like 90d, 12h or 30m, got {text!r}"
        ) from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value * factor


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One setting, declared once: its flag, environment variable, default (as typed on a
    command line; None = unset), help, converter and the commands that take it ("serve",
    "clients add", ...; "clients" means every `clients` command). Its name (its key in
    SETTINGS) is where the parsed value lands, in the arguments and in typed configs."""

    flag: str
    env: str
    default: str | None
    help: str
    type: Callable[[str], T] = str  # type: ignore[assignment]
    commands: tuple[str, ...] = ()

    def parse(self, text: str | None) -> T | None:
        """The typed value of `text` (None stays None; a switch is on for 1/true/yes/on)."""
        if text is None:
            return None
        if self.type is bool:
            return text.strip().lower() in {"1", "true", "yes", "on"}  # type: ignore[return-value]
        return self.type(text)

    @property
    def default_value(self) -> T:
        """The typed default, ignoring the environment (library-level defaults, so that a
        value is written down once)."""
        return self.parse(self.default)  # type: ignore[return-value]

    def taken_by(self, command: str) -> bool:
        """Whether `command` ("clients add") takes this setting."""
        return any(command == c or command.startswith(c + " ") for c in self.commands)

    def add_to(self, parser: argparse.ArgumentParser, dest: str) -> None:
        """Add the flag (its value lands in `dest`); its default is the environment variable
        if set, else `default` (argparse converts either with `type`, so a bad value fails
        like a bad flag). A switch (type bool) is --flag / --no-flag, and its variable reads
        1/true/yes as on."""
        shown = self.default if self.default is not None else "unset"
        help_text = f"{self.help} [env {self.env}; default {shown}]"
        value = os.environ.get(self.env, self.default)
        if self.type is bool:
            parser.add_argument(
                self.flag,
                dest=dest,
                action=argparse.BooleanOptionalAction,
                default=self.parse(value),
                help=help_text,
            )
            return
        parser.add_argument(self.flag, dest=dest, type=self.type, default=value, help=help_text)


def _role(text: str) -> str:
    roles = ("key", "model", "evaluator", "all")
    if text not in roles:
        raise argparse.ArgumentTypeError(f"choose one of {', '.join(roles)}, not {text!r}")
    return text


SETTINGS: dict[str, Setting[Any]] = {
    "debug": Setting(
        "--debug",
        "CRYPTOREC_DEBUG",
        "false",
        "on failure, print the traceback too (for a bug report)",
        bool,
        commands=("bench", "serve", "train", "recommend", "demo", "clients", "usage", "data"),
    ),
    "role": Setting(
        "--role",
        "CRYPTOREC_ROLE",
        "all",
        "the services this process runs: key, model, evaluator or all",
        _role,
        commands=("serve",),
    ),
    "host": Setting(
        "--host",
        "CRYPTOREC_HOST",
        "0.0.0.0",
        "the address every port of this process listens on",
        commands=("serve",),
    ),
    "port": Setting(
        "--port",
        "CRYPTOREC_PORT",
        "50051",
        "the gRPC port (0: a free one)",
        _non_negative_int,
        commands=("serve",),
    ),
    "target": Setting(
        "--target",
        "CRYPTOREC_TARGET",
        "127.0.0.1:50051",
        "the service to call, host:port (the model service; also the key service and the "
        "evaluator unless given apart)",
        commands=("recommend", "usage"),
    ),
    "store": Setting(
        "--store",
        "CRYPTOREC_STORE",
        "file://./store",
        "model and key store: redis://HOST:PORT/DB, rediss://... (TLS), "
        "redis+sentinel://H:P,.../SERVICE, redis+cluster://H:P,... or file://DIR",
        commands=("serve", "train", "clients"),
    ),
    "warm": Setting(
        "--warm",
        "CRYPTOREC_WARM",
        "ckks/fast",
        "scheme/mode list the evaluator encodes each served model for as it loads it, before "
        "it reports ready, so the first query is as fast as the next ('' for none)",
        lambda text: tuple(part.strip() for part in text.split(",") if part.strip()),
        commands=("serve",),
    ),
    "wait_for_store": Setting(
        "--wait-for-store",
        "CRYPTOREC_WAIT_FOR_STORE",
        "false",
        "start even if the store cannot be reached (not ready, a warning logged, until it "
        "can); without it `serve` exits 3 at once, naming the store",
        bool,
        commands=("serve",),
    ),
    "store_prefix": Setting(
        "--store-prefix",
        "CRYPTOREC_STORE_PREFIX",
        "cryptorec:",
        "namespace of every Redis key (several deployments can share one Redis)",
        commands=("serve", "train", "clients"),
    ),
    "data_dir": Setting(
        "--data-dir",
        "CRYPTOREC_DATA",
        str(default_data_dir()),
        "MovieLens folder (one sub-folder per release, as GroupLens archives unpack)",
        Path,
        commands=("train", "demo", "data download", "bench"),
    ),
    "download_url": Setting(
        "--download-url",
        "CRYPTOREC_DOWNLOAD_URL",
        BASE_URL,
        "where --download fetches the official MovieLens archives (a mirror works too)",
        commands=("train", "demo", "data download", "bench accuracy", "bench ranking"),
    ),
    "model_cache": Setting(
        "--model-cache",
        "CRYPTOREC_MODEL_CACHE",
        str(CACHE_DIR / "models"),
        "where benchmarks keep the models they train",
        Path,
        commands=("bench service", "bench paillier-methods", "bench he", "bench load"),
    ),
    "tls_cert": Setting(
        "--tls-cert",
        "CRYPTOREC_TLS_CERT",
        None,
        "server certificate (PEM; enables TLS)",
        Path,
        commands=("serve",),
    ),
    "tls_key": Setting(
        "--tls-key",
        "CRYPTOREC_TLS_KEY",
        None,
        "server private key (PEM)",
        Path,
        commands=("serve",),
    ),
    "tls_client_ca": Setting(
        "--tls-client-ca",
        "CRYPTOREC_TLS_CLIENT_CA",
        None,
        "require client certificates signed by this CA (mutual TLS)",
        Path,
        commands=("serve",),
    ),
    "tls_ca": Setting(
        "--tls-ca",
        "CRYPTOREC_TLS_CA",
        None,
        "CA of the services' certificates (enables TLS)",
        Path,
        commands=("recommend", "usage"),
    ),
    "client_tls_cert": Setting(
        "--tls-cert",
        "CRYPTOREC_CLIENT_TLS_CERT",
        None,
        "client certificate for mutual TLS",
        Path,
        commands=("recommend", "usage"),
    ),
    "client_tls_key": Setting(
        "--tls-key",
        "CRYPTOREC_CLIENT_TLS_KEY",
        None,
        "client key for mutual TLS",
        Path,
        commands=("recommend", "usage"),
    ),
    "auth": Setting(
        "--auth",
        "CRYPTOREC_AUTH",
        "false",
        "require a client's bearer token on every call but health and reflection "
        "(clients are added with `cryptorec clients add`)",
        bool,
        commands=("serve",),
    ),
    "token": Setting(
        "--token",
        "CRYPTOREC_TOKEN",
        None,
        "your bearer token, from the operator's `cryptorec clients add`",
        commands=("recommend", "usage"),
    ),
    "max_calls": Setting(
        "--max-calls",
        "CRYPTOREC_MAX_CALLS",
        "16",
        "calls one process serves at once (health checks aside, which always find a thread); "
        "more are refused with RESOURCE_EXHAUSTED",
        _positive_int,
        commands=("serve",),
    ),
    "max_calls_per_connection": Setting(
        "--max-calls-per-connection",
        "CRYPTOREC_MAX_CALLS_PER_CONNECTION",
        "4",
        "calls one client connection may hold at once in one process",
        _positive_int,
        commands=("serve",),
    ),
    "max_calls_per_host": Setting(
        "--max-calls-per-host",
        "CRYPTOREC_MAX_CALLS_PER_HOST",
        "8",
        "calls one client address may hold at once in one process (clients behind one NAT "
        "share it)",
        _positive_int,
        commands=("serve",),
    ),
    "max_calls_per_client": Setting(
        "--max-calls-per-client",
        "CRYPTOREC_MAX_CALLS_PER_CLIENT",
        "4",
        "calls one authenticated client (--auth) may hold at once in one process, from "
        "wherever it calls",
        _positive_int,
        commands=("serve",),
    ),
    "work_slots": Setting(
        "--work-slots",
        "CRYPTOREC_WORK_SLOTS",
        "2",
        "encrypted computations at once per process (HE work holds the GIL: one computes, "
        "one streams); complete requests beyond are refused at once with RESOURCE_EXHAUSTED",
        _positive_int,
        commands=("serve",),
    ),
    "transfer_grace_seconds": Setting(
        "--transfer-grace",
        "CRYPTOREC_TRANSFER_GRACE_SECONDS",
        "10",
        "seconds an upload, or a reply message, may take beyond its bytes at "
        "--transfer-min-rate; a client that sends or reads nothing for longer is cut off with "
        "DEADLINE_EXCEEDED",
        _positive_float,
        commands=("serve",),
    ),
    "transfer_min_bytes_per_second": Setting(
        "--transfer-min-rate",
        "CRYPTOREC_TRANSFER_MIN_RATE",
        "250000",
        "slowest transfer served, bytes/s, both ways (2 Mbit/s: a CKKS accurate query of "
        "7.3 MB gets 39 s)",
        _positive_float,
        commands=("serve",),
    ),
    "upload_budget_bytes": Setting(
        "--upload-budget",
        "CRYPTOREC_UPLOAD_BUDGET",
        "768M",
        "memory one process may spend at once on uploads being received and checked (K/M/G "
        "suffixes); an upload that does not fit is refused at once with RESOURCE_EXHAUSTED. "
        "A CKKS accurate key set needs about 3 times its 105 MB",
        byte_size,
        commands=("serve",),
    ),
    "cache_bytes": Setting(
        "--cache-bytes",
        "CRYPTOREC_CACHE_BYTES",
        "3G",
        "memory an evaluator process keeps for models, their encodings and clients' loaded "
        "keys (K/M/G suffixes); size the pod's memory limit to this plus about 1 GiB",
        byte_size,
        commands=("serve",),
    ),
    "key_ttl_seconds": Setting(
        "--key-ttl",
        "CRYPTOREC_KEY_TTL_SECONDS",
        str(7 * 24 * 3600),
        "seconds a registered key set is kept (re-registering refreshes it)",
        _positive_int,
        commands=("serve",),
    ),
    "registrations_per_address": Setting(
        "--registrations-per-address",
        "CRYPTOREC_REGISTRATIONS_PER_ADDRESS",
        "100",
        "new key sets one client address may register per rolling day when there is no "
        "authentication (with --auth, clients' quotas apply instead)",
        _positive_int,
        commands=("serve",),
    ),
    "model_reserve_bytes": Setting(
        "--model-reserve",
        "CRYPTOREC_MODEL_RESERVE",
        "256M",
        "store memory no key set may take, kept for model versions so that the next "
        "publication always fits (Redis with maxmemory; k8s/README.md has the arithmetic)",
        byte_size,
        commands=("serve", "clients add"),
    ),
    "retain": Setting(
        "--retain",
        "CRYPTOREC_RETAIN",
        "5",
        "model versions kept after a publication (never the current one)",
        _positive_int,
        commands=("train",),
    ),
    "health_port": Setting(
        "--health-port",
        "CRYPTOREC_HEALTH_PORT",
        "50052",
        "plaintext health-only port when TLS is on (kubelet gRPC probes speak plaintext)",
        _non_negative_int,
        commands=("serve",),
    ),
    "web_port": Setting(
        "--web-port",
        "CRYPTOREC_WEB_PORT",
        "0",
        "serve gRPC-web and Connect for browsers, and the page, on this port (0 = off); "
        "TLS with --tls-cert/--tls-key as the gRPC port",
        _non_negative_int,
        commands=("serve",),
    ),
    "web_origins": Setting(
        "--web-origins",
        "CRYPTOREC_WEB_ORIGINS",
        None,
        "comma-separated origins whose pages may call the web port (CORS), e.g. "
        "https://app.example.org; unset: only the page the web port serves",
        commands=("serve",),
    ),
    "web_page": Setting(
        "--web-page",
        "CRYPTOREC_WEB_PAGE",
        None,
        "directory of the built page to serve on the web port (default: web/dist of this "
        "checkout if built; 'none': the API only)",
        commands=("serve",),
    ),
    "web_connections_per_address": Setting(
        "--web-connections-per-address",
        "CRYPTOREC_WEB_CONNECTIONS_PER_ADDRESS",
        "32",
        "connections one client address may hold on the web port (more are closed at once)",
        _positive_int,
        commands=("serve",),
    ),
    "web_header_timeout": Setting(
        "--web-header-timeout",
        "CRYPTOREC_WEB_HEADER_TIMEOUT_SECONDS",
        "10",
        "seconds a web connection has to send a request's headers, however slowly it "
        "trickles them (then it is closed)",
        _positive_float,
        commands=("serve",),
    ),
    "metrics_port": Setting(
        "--metrics-port",
        "CRYPTOREC_METRICS_PORT",
        "9464",
        "Prometheus /metrics port (0 = none; 9464 is the exporters' conventional port)",
        _non_negative_int,
        commands=("serve",),
    ),
    "shard_peers": Setting(
        "--shard-peers",
        "CRYPTOREC_SHARD_PEERS",
        None,
        "evaluators that compute item shards: host:port,... or dns:///name:port (every address "
        "of a headless Service); unset: every shard is computed in the receiving process",
        commands=("serve",),
    ),
    "peer_secret": Setting(
        "--peer-secret",
        "CRYPTOREC_PEER_SECRET",
        None,
        "the secret evaluators send each other with shard calls (required for them with "
        "--auth; keep it in a Secret: with it, anyone could read partial products)",
        commands=("serve",),
    ),
    "peer_tls_ca": Setting(
        "--peer-tls-ca",
        "CRYPTOREC_PEER_TLS_CA",
        None,
        "CA of the peers' certificates: shard calls use TLS (with --tls-cert/--tls-key as the "
        "client pair if the peers want mutual TLS)",
        Path,
        commands=("serve",),
    ),
    "peer_tls_name": Setting(
        "--peer-tls-name",
        "CRYPTOREC_PEER_TLS_NAME",
        None,
        "the name the peers' certificate carries (peers are dialled by address)",
        commands=("serve",),
    ),
    "shards": Setting(
        "--shards",
        "CRYPTOREC_SHARDS",
        None,
        "item shards a published version is split into (default: one per 65,536 items)",
        _positive_int,
        commands=("train",),
    ),
    "observe": Setting(
        "--observe",
        "CRYPTOREC_OBSERVE",
        "true",
        "metrics, the access log and traces for every call (--no-observe: none of them, "
        "which is how `cryptorec bench service` measures their cost)",
        bool,
        commands=("serve",),
    ),
    "log_format": Setting(
        "--log-format",
        "CRYPTOREC_LOG_FORMAT",
        "text",
        "log lines as text (for people) or json (one object per line, for collectors)",
        _log_format,
        commands=("serve", "train", "demo", "clients"),
    ),
    "log_level": Setting(
        "--log-level",
        "CRYPTOREC_LOG_LEVEL",
        "INFO",
        "DEBUG, INFO, WARNING or ERROR (DEBUG adds health checks to the access log)",
        _log_level,
        commands=("serve", "train", "demo", "clients"),
    ),
    "drain_seconds": Setting(
        "--drain-seconds",
        "CRYPTOREC_DRAIN_SECONDS",
        "25",
        "on SIGTERM, how long in-flight calls may finish (keep below the pod's grace period)",
        _positive_float,
        commands=("serve",),
    ),
}


def declare(name: str, setting: Setting[T]) -> Setting[T]:
    """Add a setting (a plug-in's, a backend's option, a test's); ValueError if `name` or its
    flag is taken by a command that takes this one too."""
    for other_name, other in SETTINGS.items():
        shared = any(other.taken_by(c) for c in setting.commands) or any(
            setting.taken_by(c) for c in other.commands
        )
        if other_name == name or (other.flag == setting.flag and shared):
            raise ValueError(f"setting {name} ({setting.flag}) is declared already")
    SETTINGS[name] = setting
    return setting


def withdraw(name: str) -> None:
    """Remove a declared setting (tests that declare their own)."""
    SETTINGS.pop(name, None)


def default_of(name: str) -> Any:
    """The typed default of a setting, ignoring the environment."""
    return SETTINGS[name].default_value


def settings_for(command: str) -> dict[str, Setting[Any]]:
    """Every setting `command` ("serve", "clients add", "bench he") takes, by name: those
    declared here and, for `serve`, every registered backend's own Options."""
    taken = {n: s for n, s in SETTINGS.items() if s.taken_by(command)}
    if command == "serve":
        from libcryptorec.he import registry

        for backend in registry.backends():
            for option in backend.options:
                taken[option.name] = _backend_setting(option)
    return taken


def _backend_setting(option: Any) -> Setting[Any]:
    return Setting(
        "--" + option.name.replace("_", "-"),
        "CRYPTOREC_" + option.name.upper(),
        option.default,
        option.help,
        _said(option.type),
        commands=("serve",),
    )


def _said(parse: Callable[[str], T]) -> Callable[[str], T]:
    """A library parser (ValueError on bad text) whose message argparse shows: for a plain
    ValueError it prints only "invalid <function name> value"."""

    def parse_argument(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"invalid value {text!r}: {exc}") from exc

    return parse_argument


def add_for(parser: argparse.ArgumentParser, command: str) -> None:
    """Add every setting `command` takes (`settings_for`) to `parser`."""
    for name, setting in settings_for(command).items():
        setting.add_to(parser, name)


def values_for(command: str, args: argparse.Namespace) -> dict[str, Any]:
    """The parsed value of every setting `command` takes, by name."""
    return {n: getattr(args, n) for n in settings_for(command)}


C = TypeVar("C")


def config_from(cls: type[C], values: Mapping[str, Any], **given: Any) -> C:
    """A `cls` (a dataclass) whose fields named after settings take their values from
    `values` (parsed arguments, `values_for`); `given` fields win."""
    names = {f.name for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    taken = {n: values[n] for n in names if n in SETTINGS and n in values}
    return cls(**{**taken, **given})
