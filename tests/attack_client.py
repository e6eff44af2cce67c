"""An attacker's client, built from the .proto files alone: it generates its stubs into a
temporary directory when it starts and imports nothing of this project (it runs in its own
process, so not even the project's generated code is loaded).

    python tests/attack_client.py TARGET PLAN.json OUT.json

PLAN lists cases. Each sends one request and records the status it got; then, unless the plan
says otherwise, a legitimate query (the plan's `legit` Predict) whose reply ciphertexts are
written beside OUT, so the test can decrypt them and check the server still answers correctly.
Byte payloads are files in PLAN's directory, named in the plan.
"""

from __future__ import annotations

import importlib
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_tools import protoc

PROTOS = Path(__file__).resolve().parents[1] / "protos" / "cryptorec" / "v1"


def generate_stubs() -> dict[str, Any]:
    """Compile the protos under a package name of our own ("attackpb"); the wire names
    (cryptorec.v1.*) come from the proto package and are unchanged."""
    out = Path(tempfile.mkdtemp(prefix="attack-stubs-"))
    package = out / "attackpb" / "v1"
    package.mkdir(parents=True)
    for proto in PROTOS.glob("*.proto"):
        text = proto.read_text().replace('import "cryptorec/v1/', 'import "attackpb/v1/')
        (package / proto.name).write_text(text)
    files = [str(p.relative_to(out)) for p in package.glob("*.proto")]
    code = protoc.main(
        ["protoc", f"-I{out}", f"--python_out={out}", f"--grpc_python_out={out}", *files]
    )
    if code != 0:
        raise SystemExit(f"protoc failed ({code})")
    sys.path.insert(0, str(out))
    names = ["types_pb2", "evaluator_service_pb2", "key_service_pb2", "model_service_pb2"]
    modules = {n: importlib.import_module(f"attackpb.v1.{n}") for n in names}
    for n in ("evaluator_service_pb2_grpc", "key_service_pb2_grpc", "model_service_pb2_grpc"):
        modules[n] = importlib.import_module(f"attackpb.v1.{n}")
    return modules


class Attacker:
    def __init__(self, target: str, folder: Path) -> None:
        self.pb = generate_stubs()
        self.folder, self.target = folder, target
        self.channel = grpc.insecure_channel(
            target,
            options=[
                ("grpc.max_send_message_length", 64 << 20),
                ("grpc.max_receive_message_length", 64 << 20),
            ],
        )
        self.evaluator = self.pb["evaluator_service_pb2_grpc"].EvaluatorServiceStub(self.channel)
        self.keys = self.pb["key_service_pb2_grpc"].KeyServiceStub(self.channel)
        self.models = self.pb["model_service_pb2_grpc"].ModelServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    def _bytes(self, name: str) -> bytes:
        return (self.folder / name).read_bytes()

    # --- requests ---------------------------------------------------------------------------

    def predict(self, header: dict[str, Any], files: list[str], chunk_size: int = 8) -> list[bytes]:
        ev = self.pb["evaluator_service_pb2"]
        blobs = [self._bytes(f) for f in files]

        def requests() -> Any:
            yield ev.PredictRequest(header=ev.PredictHeader(**header))
            for index, start in enumerate(range(0, len(blobs), chunk_size)):
                chunk = ev.CiphertextChunk(
                    chunk_index=index, ciphertexts=blobs[start : start + chunk_size]
                )
                yield ev.PredictRequest(chunk=chunk)

        return [c for r in self.evaluator.Predict(requests(), timeout=60) for c in r.ciphertexts]

    def register(self, header: dict[str, Any], files: list[str]) -> str:
        kp = self.pb["key_service_pb2"]
        data = b"".join(self._bytes(f) for f in files)
        blobs = [kp.KeyBlob(**b) for b in header.pop("blobs")]

        def requests() -> Any:
            yield kp.RegisterKeysRequest(header=kp.KeyHeader(blobs=blobs, **header))
            for start in range(0, len(data), 1 << 20):
                yield kp.RegisterKeysRequest(chunk=data[start : start + (1 << 20)])

        return str(self.keys.RegisterKeys(requests(), timeout=120).key_id)

    def call(self, case: dict[str, Any]) -> Any:
        rpc = case["rpc"]
        if rpc == "Predict":
            return self.predict(case["header"], case.get("ciphertexts", []))
        if rpc == "RegisterKeys":
            header = dict(case["header"])
            header["blobs"] = [{**b, "sha256": bytes.fromhex(b["sha256"])} for b in header["blobs"]]
            return self.register(header, case.get("files", []))
        if rpc == "GetModel":
            return self.models.GetModel(
                self.pb["model_service_pb2"].GetModelRequest(**case["request"]), timeout=30
            )
        if rpc == "ListModels":
            return self.models.ListModels(
                self.pb["model_service_pb2"].ListModelsRequest(), timeout=30
            )
        if rpc == "GetKeyInfo":
            return self.keys.GetKeyInfo(
                self.pb["key_service_pb2"].GetKeyInfoRequest(**case["request"]), timeout=30
            )
        if rpc == "DeleteKeys":
            return self.keys.DeleteKeys(
                self.pb["key_service_pb2"].DeleteKeysRequest(**case["request"]), timeout=30
            )
        raise ValueError(f"unknown rpc {rpc}")

    def status(self, case: dict[str, Any]) -> str:
        try:
            self.call(case)
            return "OK"
        except grpc.RpcError as exc:
            return str(exc.code().name)

    # --- idle streams -----------------------------------------------------------------------

    def idle_streams(self, case: dict[str, Any], legit: dict[str, Any]) -> dict[str, Any]:
        """Hold `count` Predict streams open sending nothing (or only a header); meanwhile
        check health, ListModels and a legitimate Predict; report when the idle ones ended."""
        ev = self.pb["evaluator_service_pb2"]
        release = threading.Event()
        ended: list[tuple[float, str]] = []
        started = time.monotonic()

        # The attacker's own connection; the legitimate query below comes on another one.
        own = self.pb["evaluator_service_pb2_grpc"].EvaluatorServiceStub(
            grpc.insecure_channel(self.target)
        )

        def idle(send_header: bool) -> None:
            def requests() -> Any:
                if send_header:
                    yield ev.PredictRequest(header=ev.PredictHeader(**legit["header"]))
                release.wait(120)

            try:
                for _ in own.Predict(requests(), timeout=120):
                    pass
                ended.append((time.monotonic() - started, "OK"))
            except grpc.RpcError as exc:
                ended.append((time.monotonic() - started, exc.code().name))

        threads = [
            threading.Thread(target=idle, args=(k % 2 == 1,), daemon=True)
            for k in range(case["count"])
        ]
        for t in threads:
            t.start()
        time.sleep(0.5)  # they are open and idle now
        result: dict[str, Any] = {}
        try:
            self.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            result["health"] = "OK"
        except grpc.RpcError as exc:
            result["health"] = exc.code().name
        result["list_models"] = self.status({"rpc": "ListModels"})
        try:
            result["legit_reply"] = self.predict(legit["header"], legit["ciphertexts"])
            result["legit"] = "OK"
        except grpc.RpcError as exc:
            result["legit"] = exc.code().name
        for t in threads:
            t.join(timeout=case["wait"])
        release.set()
        result["idle_ended"] = sorted(ended)
        return result


def main() -> None:
    target, plan_path, out_path = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    plan = json.loads(plan_path.read_text())
    attacker = Attacker(target, plan_path.parent)
    legit = plan["legit"]
    results: dict[str, Any] = {}
    for case in plan["cases"]:
        if case["rpc"] == "idle":
            outcome = attacker.idle_streams(case, legit)
            reply = outcome.pop("legit_reply", None)
            if reply is not None:
                _write_reply(out_path, case["name"], reply)
            results[case["name"]] = outcome
            continue
        results[case["name"]] = {"status": attacker.status(case)}
        if case.get("then_legit", True):
            try:
                _write_reply(
                    out_path, case["name"], attacker.predict(legit["header"], legit["ciphertexts"])
                )
                results[case["name"]]["legit"] = "OK"
            except grpc.RpcError as exc:
                results[case["name"]]["legit"] = exc.code().name
    out_path.write_text(json.dumps(results, indent=1))


def _write_reply(out_path: Path, name: str, reply: list[bytes]) -> None:
    folder = out_path.parent / "replies" / name
    folder.mkdir(parents=True, exist_ok=True)
    for k, blob in enumerate(reply):
        (folder / f"{k}.bin").write_bytes(blob)


if __name__ == "__main__":
    main()
