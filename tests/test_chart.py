"""The Helm chart: lint, render with default / GPU / CPU-only values, rendered objects, schemas."""

from __future__ import annotations

import copy
import json

import pytest

from restore_r1.deploy import chart

VALUE_SETS = ("default", "gpu", "cpu")
GPU = "nvidia.com/gpu"


def _values(which: str) -> dict | None:
    return None if which == "default" else chart.load_values(chart.EXAMPLES[which])


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {which: chart.render(_values(which)) for which in VALUE_SETS}


def _triton(objects: list[dict]) -> tuple[dict, dict]:
    pod = chart.one(objects, "Deployment")["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == "triton"]
    return pod, container


@pytest.mark.parametrize("which", VALUE_SETS)
def test_chart_lints_clean(which):
    assert chart.lint(_values(which)) == []


def test_lint_reports_a_broken_template(tmp_path):
    import shutil

    broken = tmp_path / "restore-r1"
    shutil.copytree(chart.CHART_DIR, broken)
    (broken / "templates" / "broken.yaml").write_text("kind: ConfigMap\nmetadata: {{ .Values.nope.nope }}\n")
    assert chart.lint(None, chart_dir=broken)


@pytest.mark.parametrize("which", VALUE_SETS)
def test_builtin_kinds_pass_kubernetes_schemas(rendered, which):
    kinds = {o["kind"] for o in rendered[which]}
    assert {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "NetworkPolicy"} <= kinds
    assert chart.validate_builtin(rendered[which]) == []


def test_schema_validation_catches_a_bad_field(rendered):
    objects = copy.deepcopy(rendered["default"])
    deployment = chart.one(objects, "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["portt"] = 1
    deployment["spec"]["replicas"] = "two"
    problems = chart.validate_builtin(objects)
    assert len(problems) == 1 and problems[0].startswith("Deployment/restore-r1")


@pytest.mark.parametrize("which", VALUE_SETS)
def test_gpu_limits_only_on_triton(rendered, which):
    pod, triton = _triton(rendered[which])
    want_gpu = which != "cpu"
    assert (GPU in triton["resources"].get("limits", {})) is want_gpu
    if want_gpu:
        assert triton["resources"]["limits"][GPU] == 1
    for c in pod["containers"] + pod.get("initContainers", []):
        if c is not triton:
            assert GPU not in json.dumps(c.get("resources", {}))
    assert f"--allow-gpu-metrics={str(want_gpu).lower()}" in triton["args"]
    assert ("--model-config-name=cpu" in triton["args"]) is (which == "cpu")


def test_gpu_scheduling_from_values(rendered):
    pod, _ = _triton(rendered["gpu"])
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": GPU, "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert "podAntiAffinity" in pod["affinity"]
    cpu_pod, _ = _triton(rendered["cpu"])
    assert "runtimeClassName" not in cpu_pod and "tolerations" not in cpu_pod


def test_gpu_count_and_custom_scheduling_override():
    objects = chart.render(
        {
            "gpu": {"enabled": True, "count": 2},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
            "nodeSelector": {"pool": "a100"},
        }
    )
    pod, triton = _triton(objects)
    assert triton["resources"]["limits"][GPU] == 2
    assert triton["resources"]["limits"]["memory"] == "16Gi"
    assert pod["tolerations"][0]["key"] == "dedicated" and pod["nodeSelector"] == {"pool": "a100"}


@pytest.mark.parametrize("which", VALUE_SETS)
def test_probes_on_triton_health_endpoints(rendered, which):
    _, triton = _triton(rendered[which])
    assert triton["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert triton["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert triton["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    startup = triton["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300  # time to load models


def test_services_and_ports(rendered):
    services = {s["metadata"]["name"]: s for s in chart.by_kind(rendered["default"], "Service")}
    api, metrics = services["restore-r1"], services["restore-r1-metrics"]
    assert {(p["name"], p["port"]) for p in api["spec"]["ports"]} == {("http", 8000), ("grpc", 8001)}
    assert [(p["name"], p["port"]) for p in metrics["spec"]["ports"]] == [("metrics", 8002)]
    _, triton = _triton(rendered["default"])
    assert {p["name"]: p["containerPort"] for p in triton["ports"]} == {"http": 8000, "grpc": 8001, "metrics": 8002}


@pytest.mark.parametrize("which", VALUE_SETS)
def test_servicemonitor_scrapes_the_metrics_port(rendered, which):
    objects = rendered[which]
    monitor = chart.one(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    selected = [s for s in chart.by_kind(objects, "Service") if monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
    assert [s["metadata"]["name"] for s in selected] == ["restore-r1-metrics"]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [chart.TEST_NAMESPACE]}
    if which != "default":
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


@pytest.mark.parametrize("which", VALUE_SETS)
def test_dashboard_configmap_and_label(rendered, which):
    (cm,) = [c for c in chart.by_kind(rendered[which], "ConfigMap") if c["metadata"]["name"].endswith("-dashboard")]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(cm["data"]["restore-r1.json"])
    shipped = json.loads((chart.CHART_DIR / "dashboards" / "restore-r1.json").read_text())
    assert dashboard == shipped and dashboard["uid"] == "restore-r1-serving"


@pytest.mark.parametrize("which", VALUE_SETS)
def test_security_context(rendered, which):
    pod, triton = _triton(rendered[which])
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    sc = triton["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"] for m in triton["volumeMounts"]}
    assert {"/tmp", "/dev/shm", "/opt/tritonserver/backends"} <= mounts  # the writable places a read-only root needs
    # The python backend chmods its stub: a copy made by the pod's user, in a writable emptyDir.
    (init,) = pod["initContainers"]
    assert init["image"] == triton["image"] and init["securityContext"] == sc
    assert init["command"] == ["cp", "-R", "/opt/tritonserver/backends/python", "/writable-backends/"]
    assert [m["name"] for m in init["volumeMounts"]] == ["backends"]
    assert "emptyDir" in {v["name"]: v for v in pod["volumes"]}["backends"]
    assert pod["automountServiceAccountToken"] is False


def test_model_repository_from_s3_secret(rendered):
    _, triton = _triton(rendered["gpu"])
    assert "--model-repository=s3://restore-r1-registry/serving/triton_models" in triton["args"]
    env = {e["name"]: e for e in triton["env"]}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "restore-r1-s3", "key": name}
    assert "--model-control-mode=poll" in triton["args"] and "--repository-poll-secs=60" in triton["args"]
    assert not [o for o in rendered["gpu"] if o["kind"] == "Secret"]  # credentials are never templated


def test_model_repository_from_pvc(rendered):
    pod, triton = _triton(rendered["cpu"])
    assert "--model-repository=/models" in triton["args"]
    (mount,) = [m for m in triton["volumeMounts"] if m["name"] == "models"]
    assert mount == {"name": "models", "mountPath": "/models", "readOnly": True, "subPath": "triton_models"}
    (volume,) = [v for v in pod["volumes"] if v["name"] == "models"]
    assert volume["persistentVolumeClaim"] == {"claimName": "restore-r1-models", "readOnly": True}
    assert not any(e["name"].startswith("AWS_") for e in triton["env"])


def test_autoscaler_on_pending_requests(rendered):
    assert not chart.by_kind(rendered["default"], "HorizontalPodAutoscaler")
    hpa = chart.one(rendered["gpu"], "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == "nv_inference_pending_request_count"
    assert hpa["spec"]["scaleTargetRef"]["name"] == chart.one(rendered["gpu"], "Deployment")["metadata"]["name"]
    assert "replicas" not in chart.one(rendered["gpu"], "Deployment")["spec"]  # the HPA owns it


def test_disruption_budget_and_network_policy(rendered):
    pdb = chart.one(rendered["default"], "PodDisruptionBudget")
    deployment = chart.one(rendered["default"], "Deployment")
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    policy = chart.one(rendered["default"], "NetworkPolicy")
    ports = [{p["port"] for p in rule["ports"]} for rule in policy["spec"]["ingress"]]
    assert ports == [{"http", "grpc"}, {"metrics"}]
    metrics_from = policy["spec"]["ingress"][1]["from"][0]["namespaceSelector"]["matchLabels"]
    assert metrics_from == {"kubernetes.io/metadata.name": "monitoring"}


def test_gpu_alert_only_with_gpus(rendered):
    def alerts(which):
        rule = chart.one(rendered[which], "PrometheusRule")
        return {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}

    assert "RestoreR1GpuMemoryNearLimit" in alerts("gpu")
    assert "RestoreR1GpuMemoryNearLimit" not in alerts("cpu")


@pytest.mark.parametrize(
    "bad",
    [
        {"gpu": {"enabled": True, "count": 0}},
        {"modelRepository": {"source": "gcs"}},
        {"modelRepository": {"source": "s3", "s3": {"uri": "https://bucket/x"}}},
        {"service": {"httpPort": 70000}},
        {"prometheusRule": {"failureRatio": 2}},
        {"triton": {"extraArgs": ["model-repository=/x"]}},
        {"replicas": 3},
    ],
)
def test_values_schema_rejects_bad_values(bad):
    with pytest.raises(chart.ChartError):
        chart.render(bad)


def test_policy_from_the_registry_uses_the_s3_secret():
    objects = chart.render(
        {"modelRepository": {"source": "pvc"}, "policy": {"uri": "registry://restore-r1@production", "registry": "s3://restore-r1-registry/registry"}}
    )
    _, triton = _triton(objects)
    env = {e["name"]: e for e in triton["env"]}
    assert env["RESTORE_R1_POLICY"]["value"] == "registry://restore-r1@production"
    assert env["RESTORE_R1_REGISTRY"]["value"] == "s3://restore-r1-registry/registry"
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "restore-r1-s3"
    with pytest.raises(chart.ChartError):
        chart.render({"policy": {"uri": "production"}})


OFF = {"serviceMonitor": {"enabled": False}, "prometheusRule": {"enabled": False}}


def test_installs_without_the_operator_crds_when_its_objects_are_off():
    objects = chart.render(OFF, api_versions=())
    assert not [o for o in objects if o["kind"] in chart.CRD_KINDS or o["apiVersion"].startswith("monitoring.coreos.com")]
    assert {"Deployment", "Service", "ConfigMap", "Pod"} <= {o["kind"] for o in objects}
    assert chart.validate_builtin(objects) == []


@pytest.mark.parametrize(("key", "kind"), [("serviceMonitor", "ServiceMonitor"), ("prometheusRule", "PrometheusRule")])
def test_refuses_an_operator_object_without_its_crd(key, kind):
    values = copy.deepcopy(OFF)
    values[key]["enabled"] = True
    with pytest.raises(chart.ChartError) as info:
        chart.render(values, api_versions=())
    message = str(info.value)
    assert f"{key}.enabled=true needs the Prometheus Operator CRD monitoring.coreos.com/v1/{kind}" in message
    assert f"set {key}.enabled=false" in message and "\n" not in message
    # The same values render once the cluster serves that kind.
    assert chart.one(chart.render(values, api_versions=[f"monitoring.coreos.com/v1/{kind}"]), kind)


DIGEST = "sha256:" + "0123456789abcdef" * 4


def test_image_by_tag_or_by_digest():
    _, triton = _triton(chart.render())
    assert triton["image"] == "ghcr.io/restore-r1/restore-r1-triton:0.1.0"  # the chart's appVersion
    objects = chart.render({"image": {"repository": "registry.example.com:5000/ml/restore-r1-triton", "tag": "0.1.0", "digest": DIGEST}})
    _, triton = _triton(objects)
    assert triton["image"] == f"registry.example.com:5000/ml/restore-r1-triton@{DIGEST}"
    assert chart.one(objects, "Pod")["spec"]["containers"][0]["image"] == triton["image"]


@pytest.mark.parametrize(
    "image",
    [
        {"repository": "ghcr.io/x/y", "digest": "sha256:abc"},
        {"repository": "ghcr.io/x/y", "digest": "md5:" + "0" * 32},
        {"repository": "ghcr.io/x/y", "tag": f"0.1.0@{DIGEST}"},
        {"repository": "ghcr.io/x/y:0.1.0"},
        {"repository": f"ghcr.io/x/y@{DIGEST}"},
    ],
)
def test_values_schema_rejects_bad_image_references(image):
    with pytest.raises(chart.ChartError):
        chart.render({"image": image})


def test_helm_test_pod_checks_health_and_one_restore(rendered):
    objects = rendered["default"]
    pod = chart.one(objects, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    spec = pod["spec"]
    (smoke,) = spec["containers"]
    _, triton = _triton(objects)
    assert smoke["image"] == triton["image"] and spec["restartPolicy"] == "Never"
    assert smoke["command"] == ["python3", "-m", "restore_r1.serving.smoke"]
    assert smoke["args"] == [f"--url=restore-r1.{chart.TEST_NAMESPACE}.svc:8000"]
    assert smoke["securityContext"] == triton["securityContext"] and spec["securityContext"]["runAsNonRoot"] is True
    assert spec["automountServiceAccountToken"] is False
    # No Service, PDB or NetworkPolicy selects the test pod.
    labels = pod["metadata"]["labels"].items()
    selectors = [s["spec"]["selector"] for s in chart.by_kind(objects, "Service")]
    selectors += [chart.one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"]]
    selectors += [chart.one(objects, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"]]
    assert all(not (sel.items() <= labels) for sel in selectors)
    assert not [o for o in chart.render({"helmTest": {"enabled": False}}) if o["kind"] == "Pod"]


def test_network_policy_lets_the_test_pod_in_when_clients_are_restricted():
    peers = [{"namespaceSelector": {"matchLabels": {"team": "apps"}}}]
    policy = chart.one(chart.render({"networkPolicy": {"clientPeers": peers}}), "NetworkPolicy")
    api_from = policy["spec"]["ingress"][0]["from"]
    assert api_from[0] == peers[0]
    assert api_from[1] == {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "restore-r1-test", "app.kubernetes.io/instance": "restore-r1"}}}


# ------------------------------------------------------------------ training metrics and board
def test_training_podmonitor_is_off_by_default(rendered):
    for which in VALUE_SETS:
        assert not chart.by_kind(rendered[which], "PodMonitor")


def test_training_podmonitor_scrapes_rank_zero_of_the_pipelines_trainjobs():
    from restore_r1.pipeline import trainjob

    monitor = chart.one(chart.render({"trainingMonitor": {"enabled": True, "namespaces": ["team-a", "team-b"], "port": 9500}}), "PodMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1" and monitor["metadata"]["name"] == "restore-r1-training"
    spec = monitor["spec"]
    # the labels the launcher puts on every TrainJob pod, and nothing that also matches Triton's pods
    assert spec["selector"]["matchLabels"] == trainjob.TRAINER_POD_LABELS
    triton_pod = chart.one(chart.render(), "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert not spec["selector"]["matchLabels"].items() <= triton_pod.items()
    assert spec["namespaceSelector"] == {"matchNames": ["team-a", "team-b"]}
    (endpoint,) = spec["podMetricsEndpoints"]
    assert endpoint["portNumber"] == 9500 and endpoint["path"] == "/metrics"
    (keep,) = endpoint["relabelings"]
    assert keep == {"action": "keep", "sourceLabels": ["__meta_kubernetes_pod_label_batch_kubernetes_io_job_completion_index"], "regex": "0"}
    default_ns = chart.one(chart.render({"trainingMonitor": {"enabled": True}}), "PodMonitor")
    assert default_ns["spec"]["namespaceSelector"] == {"matchNames": [chart.TEST_NAMESPACE]}
    assert default_ns["spec"]["podMetricsEndpoints"][0]["portNumber"] == trainjob.DEFAULT_METRICS_PORT


def test_training_podmonitor_needs_its_crd_and_a_valid_port():
    with pytest.raises(chart.ChartError, match="trainingMonitor.enabled=true needs the Prometheus Operator CRD monitoring.coreos.com/v1/PodMonitor"):
        chart.render({**OFF, "trainingMonitor": {"enabled": True}}, api_versions=())
    for bad in ({"port": 0}, {"port": "9400"}, {"namespaces": ["Team_A"]}, {"interval": "15"}):
        with pytest.raises(chart.ChartError):
            chart.render({"trainingMonitor": {"enabled": True, **bad}})


def test_training_dashboard_ships_beside_the_serving_one(rendered):
    (cm,) = [c for c in chart.by_kind(rendered["default"], "ConfigMap") if c["metadata"]["name"].endswith("-dashboard")]
    shipped = json.loads((chart.CHART_DIR / "dashboards" / "restore-r1-training.json").read_text())
    assert json.loads(cm["data"]["restore-r1-training.json"]) == shipped and shipped["uid"] == "restore-r1-training"
    (off,) = [c for c in chart.by_kind(chart.render({"dashboard": {"training": False}}), "ConfigMap") if c["metadata"]["name"].endswith("-dashboard")]
    assert list(off["data"]) == ["restore-r1.json"]
