"""A fake Kubernetes API server with Kubeflow Trainer's resources, for the Kubeflow SDK's Kubernetes
backend (tests/test_trainjob.py).

It answers what ``kubeflow.trainer.TrainerClient`` asks: the Trainer's version ConfigMap, the
``torch-distributed`` ClusterTrainingRuntime (shaped like the Trainer's default install: a ``node``
replicated job whose ``node`` container is the trainer, ``mlPolicy.torch``), TrainJob create /
get / delete and the (empty) pod list. Created TrainJobs are kept as submitted; ``on_create`` is
the "controller": it gets the TrainJob and returns its status conditions (or runs it first).
Not a Kubernetes: no admission, no defaulting, no JobSet.
"""

from __future__ import annotations

import datetime
import http.server
import json
import re
import threading
from collections.abc import Callable
from urllib.parse import urlparse

GROUP_VERSION = "trainer.kubeflow.org/v1alpha1"
RUNTIME_NAME = "torch-distributed"
RUNTIME = {
    "apiVersion": GROUP_VERSION,
    "kind": "ClusterTrainingRuntime",
    "metadata": {"name": RUNTIME_NAME, "labels": {"trainer.kubeflow.org/framework": "torch"}},
    "spec": {
        "mlPolicy": {"numNodes": 1, "torch": {"numProcPerNode": "auto"}},
        "template": {
            "spec": {
                "replicatedJobs": [
                    {
                        "name": "node",
                        "template": {
                            "metadata": {"labels": {"trainer.kubeflow.org/trainjob-ancestor-step": "trainer"}},
                            "spec": {"template": {"spec": {"containers": [{"name": "node", "image": "pytorch/pytorch:2.7.1-cuda12.8-cudnn9-runtime"}]}}},
                        },
                    }
                ]
            }
        },
    },
}


def condition(kind: str) -> list[dict]:
    """TrainJob status conditions saying ``kind`` (Complete or Failed)."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [{"type": kind, "status": "True", "reason": kind, "message": f"TrainJob {kind.lower()}", "lastTransitionTime": now}]


class FakeKube(http.server.ThreadingHTTPServer):
    """The server; ``url`` is what ``kubernetes.client.Configuration.host`` takes.

    Args:
        on_create: called with each created TrainJob (a dict) in a thread; returns its status
            conditions (see :func:`condition`), stored when it returns.
    """

    def __init__(self, on_create: Callable[[dict], list[dict]]):
        self.trainjobs: dict[str, dict] = {}
        self.created: list[dict] = []
        self.deleted: list[str] = []
        self.requests: list[tuple[str, str]] = []
        self.on_create = on_create
        self.threads: list[threading.Thread] = []
        kube = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _missing(self, what: str) -> None:
                self._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": f"{what} not found"})

            def do_GET(self):
                path = urlparse(self.path).path
                kube.requests.append(("GET", path))
                if path == "/api/v1/namespaces/kubeflow-system/configmaps/kubeflow-trainer-public":
                    return self._send(
                        200,
                        {
                            "apiVersion": "v1",
                            "kind": "ConfigMap",
                            "metadata": {"name": "kubeflow-trainer-public"},
                            "data": {"kubeflow_trainer_version": "v2.1.0"},
                        },
                    )
                if path == f"/apis/{GROUP_VERSION}/clustertrainingruntimes/{RUNTIME_NAME}":
                    return self._send(200, RUNTIME)
                if re.fullmatch(rf"/apis/{GROUP_VERSION}/namespaces/[^/]+/trainingruntimes/[^/]+", path):
                    return self._missing("trainingruntime")
                found = re.fullmatch(rf"/apis/{GROUP_VERSION}/namespaces/([^/]+)/trainjobs/([^/]+)", path)
                if found:
                    job = kube.trainjobs.get(found[2])
                    return self._send(200, job) if job else self._missing(f"trainjob {found[2]}")
                if re.fullmatch(r"/api/v1/namespaces/[^/]+/pods", path):
                    return self._send(200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []})
                return self._missing(path)

            def do_POST(self):
                path = urlparse(self.path).path
                kube.requests.append(("POST", path))
                found = re.fullmatch(rf"/apis/{GROUP_VERSION}/namespaces/([^/]+)/trainjobs", path)
                if not found:
                    return self._missing(path)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                name = body["metadata"]["name"]
                if name in kube.trainjobs:
                    return self._send(409, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "AlreadyExists", "code": 409})
                kube.created.append(json.loads(json.dumps(body)))
                stored = json.loads(json.dumps(body))
                stored["metadata"].update({"namespace": found[1], "creationTimestamp": "2026-01-01T00:00:00Z", "uid": f"uid-{len(kube.created)}"})
                kube.trainjobs[name] = stored
                thread = threading.Thread(target=kube._run, args=(stored,), daemon=True)
                kube.threads.append(thread)
                thread.start()
                self._send(201, stored)

            def do_DELETE(self):
                path = urlparse(self.path).path
                kube.requests.append(("DELETE", path))
                found = re.fullmatch(rf"/apis/{GROUP_VERSION}/namespaces/([^/]+)/trainjobs/([^/]+)", path)
                if not found or found[2] not in kube.trainjobs:
                    return self._missing(path)
                kube.deleted.append(found[2])
                self._send(200, kube.trainjobs.pop(found[2]))

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self._serve = threading.Thread(target=self.serve_forever, daemon=True)

    def _run(self, job: dict) -> None:
        conditions = self.on_create(job)
        job["status"] = {"conditions": conditions}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def client(self, namespace: str = "team-a"):
        """A ``TrainerClient`` of the SDK talking to this server."""
        from kubeflow.common.types import KubernetesBackendConfig
        from kubeflow.trainer import TrainerClient
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = self.url
        return TrainerClient(backend_config=KubernetesBackendConfig(namespace=namespace, client_configuration=configuration))

    def __enter__(self) -> FakeKube:
        self._serve.start()
        return self

    def __exit__(self, *exc) -> None:
        for thread in self.threads:
            thread.join(timeout=600)
        self.shutdown()
        self.server_close()
