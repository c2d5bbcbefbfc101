"""`make pipeline-docker` (restore_r1.deploy.pipeline_docker): the parts that need no podman. The
containerised run itself is not in `make test` (it needs this commit's component image):
bench/results/pipeline_docker.md."""

from __future__ import annotations

import pytest

from restore_r1.deploy import images
from restore_r1.deploy import pipeline_docker as pd


class FakeImage:
    def __init__(self, tags):
        self.tags = tags
        self.attrs = {"RepoDigests": []}


class FakeContainer:
    def __init__(self, code):
        self.code = code
        self.removed = False
        self.waited = False

    def logs(self, stream, follow):
        assert stream and follow
        return iter([b"step 1\n", b"done\n"])

    def wait(self):
        self.waited = True
        return {"StatusCode": self.code}

    def remove(self, force):
        assert self.waited, "the exit code is read before the container is removed"
        self.removed = True


class FakeClient:
    def __init__(self, tags, code):
        self.container = FakeContainer(code)
        self.run_args = None
        outer = self

        class Images:
            def list(self):
                return [FakeImage(tags)]

        class Containers:
            def run(self, **kwargs):
                outer.run_args = kwargs
                return outer.container

        self.images = Images()
        self.containers = Containers()


@pytest.mark.parametrize("code", [0, 3])
def test_run_container_returns_the_real_exit_code_and_removes_the_container(code, capsys):
    client = FakeClient(["ghcr.io/restore-r1/restore-r1:0.1.0"], code)
    got = pd.run_container(client, "ghcr.io/restore-r1/restore-r1:0.1.0", ["python", "-c", "1"], {"/r": {"bind": "/r"}}, auto_remove=True, network_mode="none")
    assert got == code
    assert client.container.removed
    assert "auto_remove" not in client.run_args, "kept until its exit code is read"
    assert client.run_args["detach"] and client.run_args["network_mode"] == "none"
    assert capsys.readouterr().out == "step 1\ndone\n"


def test_run_container_refuses_an_image_that_is_not_built():
    client = FakeClient(["localhost/other:1"], 0)
    with pytest.raises(pd.PipelineDockerError, match="make images"):
        pd.run_container(client, "ghcr.io/restore-r1/restore-r1:0.1.0", ["true"], {})
    assert client.run_args is None, "nothing is started (or pulled)"


def test_the_compiled_yaml_names_the_image_that_is_tagged():
    assert f"{pd.YAML_IMAGE}:{images.project_version()}" in pd.PIPELINE_YAML.read_text()


def test_markdown_lists_every_task_and_the_registered_version():
    report = {
        "pipeline": "pipelines/restore_r1_training.yaml",
        "image": "localhost/restore-r1:0.1.0-abc",
        "image_as": "ghcr.io/restore-r1/restore-r1:0.1.0",
        "seconds": 40.2,
        "tasks": [
            {"task": "synthesize", "parameters": {}, "artifacts": {"dataset": "/x"}},
            {"task": "gate", "parameters": {"Output": True}, "artifacts": {}},
        ],
        "model": "restore-r1-policy",
        "versions": [{"uri": "registry://restore-r1-policy@1", "aliases": ["production"]}],
    }
    md = pd.markdown(report)
    assert "| synthesize | dataset (artifact) |" in md
    assert "| gate | Output = True |" in md
    assert "registry://restore-r1-policy@1" in md and "40 s" in md


def test_no_podman_is_a_one_line_error(monkeypatch, capsys):
    monkeypatch.setattr(pd.shutil, "which", lambda name: None)
    assert pd.main(["--out", "unused"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("pipeline-docker: podman is not installed") and "\n" not in err


def test_reports_outside_the_image_leave_the_commit_image_current():
    assert images.changed_paths(" M bench/results/e2e.md\n M docs/deployment.md\n", pd.NOT_IN_IMAGE) == []
    assert images.changed_paths(" M bench/results/e2e.md\n") == ["bench/results/e2e.md"], "without ignore every change counts"
    assert images.changed_paths(" M bench/results/e2e.md\n M restore_r1/synth.py\nR  a.py -> triton_models/x.py\n", pd.NOT_IN_IMAGE) == [
        "restore_r1/synth.py",
        "triton_models/x.py",
    ]
