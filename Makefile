# Restore-R1: `make demo` and `make test` do everything on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.restore-r1-installed
# Weights never come from a hub at run time: absent weights fail fast, by name.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
# GRPO settings of the shipped default policy (see `restore-r1 train --help`): the relative judge, the
# corpus's 20 training scenes, the 15 classic tools; the tools are pinned so that adding tools to the
# catalogue does not change what `make default-policy` reproduces. The tool cost is in predicted dB.
DEFAULT_TOOLS := clahe,gamma_correction,constant_shift,nlm_denoise,guided_denoise,jpeg_dct_deblock,jpeg_guided_deblock,dcp_dehaze,cap_dehaze,wiener_motion_deblur,rl_motion_deblur,wiener_defocus_deblur,unsharp_defocus,rain_opening,rain_median
DEFAULT_TRAIN_ARGS ?= --judge relative --tools $(DEFAULT_TOOLS) --steps 100 --group 8 --batch-images 4 --lr 2e-3 --entropy-coef 0.02 --tool-cost 0.1 --seed 1 --serve-forbid-cycle
# The previous default policy (calibrated judge, the 4 bundled training photos) and the corpus attempt
# against the ranker judge with the DnCNN denoiser: both measured below the shipped one
# (bench/results/agent_v1.md, bench/results/agent_v2_attempt.md); kept reproducible.
V1_TRAIN_ARGS ?= --judge calibrated --tools $(DEFAULT_TOOLS) --steps 100 --group 8 --batch-images 4 --lr 2e-3 --entropy-coef 0.02 --tool-cost 0.05 --seed 0
CORPUS_TOOLS := clahe,gamma_correction,constant_shift,nlm_denoise,dncnn6_denoise,jpeg_dct_deblock,jpeg_guided_deblock,dcp_dehaze,cap_dehaze,wiener_motion_deblur,rl_motion_deblur,wiener_defocus_deblur,rain_opening,rain_median
CORPUS_TRAIN_ARGS ?= --judge ranker --tools $(CORPUS_TOOLS) --steps 60 --group 8 --batch-images 4 --lr 2e-3 --entropy-coef 0.02 --tool-cost 0.05 --seed 0

.PHONY: lint data judge default-policy policy-v1 policy-corpus venv demo test test-fast bench clean help promtool grafana-schema triton-venv serve serving-bench container-tools images e2e pipeline-docker dashboard-render

help:
	@echo "make demo   - create the environment if missing, then run the demo"
	@echo "make test   - the full test suite (what CI runs)"
	@echo "make bench  - the benchmarks; results land in bench/results/"

venv: $(STAMP)

# A new venv takes about 7 GB (torch's CUDA build is the only torch/torchvision pair here): say so
# up front rather than fail halfway with "No space left on device".
VENV_NEED_GB ?= 7
$(STAMP): pyproject.toml requirements-nodeps.txt constraints.txt
	@test -x $(BIN)/python || { free=$$(df -Pk . | awk 'NR==2 {print int($$4 / 1048576)}'); \
		test $$free -ge $(VENV_NEED_GB) || { echo "make: $(VENV) needs about $(VENV_NEED_GB) GB free disk, $$free GB free here" >&2; exit 1; }; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# constraints.txt is the pixel lock (numpy, SciPy, OpenCV, scikit-image, Pillow, torch): the same
	# versions as Triton's environment and the images, so that served pixels are evaluated pixels
	$(BIN)/pip install -q --no-cache-dir -c constraints.txt torch torchvision
	$(BIN)/pip install -q --no-cache-dir -c constraints.txt -e '.[dev,kubeflow]'
	# packages whose declared requirements we do not want (see the file)
	$(BIN)/pip install -q --no-cache-dir --no-deps -c constraints.txt -r requirements-nodeps.txt
	touch $@

# The training corpus (restore_r1/corpus.py): natural photos from scikit-image and two Debian wallpaper
# packages, split by scene into train/ and val/, with a manifest. Idempotent; about 10 s.
CORPUS ?= .cache/corpus
export RESTORE_R1_CORPUS := $(abspath $(CORPUS))
data: $(STAMP)
	$(BIN)/restore-r1 data fetch --out $(CORPUS)

# The offline default judge `ranker` (restore_r1/judges/fit.py): synthetic data of the corpus's training
# scenes, a RankNet fit, its evaluation on the validation scenes (bench/results/judge_fit.json). ~12 min.
JUDGE_MODEL := restore_r1/data/judges/ranker.json
RELATIVE_MODEL := restore_r1/data/judges/relative.json
judge: data
	$(BIN)/python -m restore_r1.judges.fit --train $(CORPUS)/train --val $(CORPUS)/val --out $(JUDGE_MODEL) --relative-out $(RELATIVE_MODEL) --report bench/results/judge_fit.json --cache .cache/judge_fit

# promtool (alert rule tests) from Debian's prometheus package, unpacked into an ignored folder; the
# same package's prometheus server (.cache/promtool/usr/bin/prometheus) runs tests/test_prometheus_live.py.
PROMTOOL := .cache/promtool/usr/bin/promtool
promtool: $(PROMTOOL)
$(PROMTOOL):
	rm -rf .cache/promtool && mkdir -p .cache/promtool/deb
	cd .cache/promtool/deb && { apt-get download prometheus 2>/dev/null || { apt-get update -qq && apt-get download prometheus; }; }
	dpkg -x .cache/promtool/deb/prometheus_*.deb .cache/promtool
	rm -rf .cache/promtool/deb
	$@ --version | head -1

# The Grafana schema check (restore_r1/deploy/grafana_schema.py): @grafana/schema and typescript at
# the versions of tools/grafana-schema/package-lock.json, installed by npm ci into an ignored folder.
# Re-installed only when the pin changes. Needs the machine's Node.js and npm and the npm registry.
GRAFANA_SCHEMA_DIR := .cache/grafana-schema
GRAFANA_SCHEMA := $(GRAFANA_SCHEMA_DIR)/.installed
grafana-schema: $(GRAFANA_SCHEMA)
$(GRAFANA_SCHEMA): tools/grafana-schema/package.json tools/grafana-schema/package-lock.json
	@command -v npm >/dev/null && command -v node >/dev/null || { echo "make: the Grafana schema check needs Node.js and npm (Debian: apt-get install nodejs npm)" >&2; exit 1; }
	rm -rf $(GRAFANA_SCHEMA_DIR) && mkdir -p $(GRAFANA_SCHEMA_DIR)
	cp tools/grafana-schema/package.json tools/grafana-schema/package-lock.json $(GRAFANA_SCHEMA_DIR)/
	cd $(GRAFANA_SCHEMA_DIR) && npm ci --no-audit --no-fund --loglevel=error >npm-ci.log 2>&1 || { echo "make: npm ci of tools/grafana-schema failed: $$(grep -m1 'npm error' npm-ci.log) (log: $(GRAFANA_SCHEMA_DIR)/npm-ci.log)" >&2; exit 1; }
	touch $@

# Triton's own environment: the tritonserver of nvidia-pytriton. It overlays the main venv instead of
# copying it: a .pth file appends the main venv's site-packages (torch, transformers, pyiqa, this
# package) after its own, so torch's ~5 GB is installed once. Both install the pixel lock
# (constraints.txt: numpy 1.26, OpenCV 4.11, ... as Triton 2.51's python backend needs), so a tool
# gives the same bytes in both. About 1 minute.
# See docs/serving.md ("Running it here").
TRITON_VENV ?= .venv-triton
TRITON_STAMP := $(TRITON_VENV)/.restore-r1-installed
triton-venv: $(TRITON_STAMP)
$(TRITON_STAMP): requirements-triton.txt constraints.txt $(STAMP)
	rm -rf $(TRITON_VENV) && $(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/python -c 'import sys, sysconfig; open(sysconfig.get_path("purelib") + "/restore_r1_main_venv.pth", "w").write("import site; site.addsitedir(%r)\n" % sys.argv[1])' \
		"$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
	@echo "pip may list pyiqa's declared requirements as conflicts below: expected, pyiqa is installed --no-deps on purpose"
	$(TRITON_VENV)/bin/pip install -q --no-cache-dir -c constraints.txt -r requirements-triton.txt
	touch $@

# A real Triton server on 127.0.0.1:8000/8001/8002 with triton_models/ until Ctrl-C.
serve: $(STAMP) $(TRITON_STAMP)
	$(BIN)/python -m restore_r1.serving.server --repo triton_models --venv $(TRITON_VENV)

serving-bench: $(STAMP) $(TRITON_STAMP)
	$(BIN)/python bench/serving_bench.py --out bench/results

# The serving dashboard's panels drawn (matplotlib) from a real Prometheus scraping a real CPU
# Triton under four phases of traffic, one with a failing tool: docs/images/dashboard.png. ~4 min.
dashboard-render: $(STAMP) $(TRITON_STAMP) $(PROMTOOL)
	PYTHONPATH=$(CURDIR) $(BIN)/python bench/dashboard_render.py --out bench/results

# The two images, built for real with podman (restore_r1/deploy/images.py): docker/Dockerfile (the
# Kubeflow component image) and docker/serving.Dockerfile (Triton), each from a base built here: a
# Debian bookworm root file system (mmdebstrap, podman import) + Python 3.11, or + the tritonserver
# of nvidia-pytriton (docker/base/). No image registry is used; Debian's archive and PyPI are, and
# pip sees the host's own pip settings (local wheels first). podman reads docker/containers.conf.
# Tags <version> and <version>-<commit>; sizes and times in .cache/images/build.json.
# About 10 min on 2 cores the first time, 64 GB of free disk advised.
# catatonit: the pause process of the pods `podman kube play` makes (make e2e).
CONTAINER_TOOLS := podman runc mmdebstrap catatonit
container-tools:
	@missing=$$(for t in $(CONTAINER_TOOLS); do command -v $$t >/dev/null || echo $$t; done); \
	test -z "$$missing" && exit 0; \
	{ test "$$(id -u)" = 0 && command -v apt-get >/dev/null; } || { echo "make: the images need $$missing (Debian, as root: apt-get install $$missing)" >&2; exit 1; }; \
	{ apt-get install -y -qq --no-install-recommends $$missing >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; }; } \
	  || { echo "make: apt-get install $$missing failed" >&2; exit 1; }

images: $(STAMP) container-tools
	$(BIN)/python -m restore_r1.deploy.images

# The chart's Deployment run for real: this commit's images (built when absent), the chart rendered
# with the CPU values + a local image, a host-folder repository and loopback ports, `podman kube
# play`, the chart's own probes, served pixels = in-process pixels, the security context read back
# in the container, everything stopped. Report: bench/results/e2e.md. Then `make pipeline-docker`
# (below) on the same component image. Not part of `make test`.
e2e: $(STAMP) container-tools
	$(BIN)/python -m restore_r1.deploy.e2e
	$(BIN)/python -m restore_r1.deploy.pipeline_docker

# The compiled pipeline YAML (the file uploaded to the KFP UI) run by kfp.local.DockerRunner
# through podman's Docker API socket: every task a container of this commit's component image
# (`make images` first), no network, small settings as `make pipeline`. Report:
# bench/results/pipeline_docker.md. Not part of `make test`.
pipeline-docker: $(STAMP) container-tools
	$(BIN)/python -m restore_r1.deploy.pipeline_docker

demo: $(STAMP)
	$(BIN)/restore-r1 demo --out demo_out

# ruff (lint + format, configured in pyproject.toml) first: style is never a review topic.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(STAMP) $(PROMTOOL) $(GRAFANA_SCHEMA) $(TRITON_STAMP) lint
	$(BIN)/python -m pytest -q tests

test-fast: $(STAMP) $(PROMTOOL) $(GRAFANA_SCHEMA)
	$(BIN)/python -m pytest -q -m "not slow" tests

bench: data
	$(BIN)/python bench/tools_bench.py --out bench/results
	$(BIN)/python bench/judges_bench.py --out bench/results
	$(BIN)/python bench/agent_bench.py --out bench/results

# The shipped default policy's recipe (docs/method.md §8), reproducing its weights bit for bit on the same CPU: GRPO against the relative
# judge on one synthetic image per case of each of the corpus's 20 training scenes. 10-25 min on 2 cores; a killed run
# resumes from its last checkpoint (runs/default_policy) with the same result.
DEFAULT_POLICY := restore_r1/data/default_policy
default-policy: data
	$(BIN)/restore-r1 synth --images $(CORPUS)/train --crop 256 --cases 1-15 --per-case 1 --seed 0 --out data/default_train_corpus --no-progress
	$(BIN)/restore-r1 train --data data/default_train_corpus --out runs/default_policy $(DEFAULT_TRAIN_ARGS)
	rm -rf $(DEFAULT_POLICY).tmp && cp -r runs/default_policy/policy $(DEFAULT_POLICY).tmp
	cp runs/default_policy/train_log.jsonl $(DEFAULT_POLICY).tmp/
	rm -rf $(DEFAULT_POLICY) && mv $(DEFAULT_POLICY).tmp $(DEFAULT_POLICY)

# The previous default policy (written to runs/policy_v1/policy; not shipped).
policy-v1: $(STAMP)
	$(BIN)/restore-r1 synth --split train --crop 256 --cases 1-15 --per-case 3 --seed 0 --out data/default_train
	$(BIN)/restore-r1 train --data data/default_train --out runs/policy_v1 $(V1_TRAIN_ARGS)

# The corpus-trained policy of the quality issue's attempt (28 min on 2 cores); written to runs/policy_corpus/policy.
policy-corpus: data
	$(BIN)/restore-r1 synth --images $(CORPUS)/train --crop 256 --cases 1-15 --per-case 1 --seed 0 --out data/default_train_corpus --no-progress
	$(BIN)/restore-r1 train --data data/default_train_corpus --out runs/policy_corpus $(CORPUS_TRAIN_ARGS)

# The shipped DnCNN weights (restore_r1/data/dncnn/), regenerated byte for byte from scico's wheel
# (BSD-3): pip downloads the pinned release without its dependencies (no jax), the converter
# checks the wheel's sha256 and rewrites the safetensors files, weights.json and the licence.
SCICO_VERSION := 0.0.7
DNCNN_DIR := restore_r1/data/dncnn
.PHONY: dncnn-weights
dncnn-weights: $(STAMP)
	rm -rf .cache/scico && mkdir -p .cache/scico
	$(BIN)/pip download -q --no-deps --no-cache-dir scico==$(SCICO_VERSION) -d .cache/scico
	$(BIN)/python bench/convert_dncnn.py --wheel .cache/scico/scico-$(SCICO_VERSION)-py3-none-any.whl --out $(DNCNN_DIR)

# The Kubeflow pipeline (docs/kubeflow.md): the uploadable YAML, and a local end-to-end run with
# kfp.local on the bundled photos (small settings) registering into the local registry.
.PHONY: pipeline pipeline-yaml
pipeline-yaml: $(STAMP)
	$(BIN)/python -m pipelines.compile --pipeline all

pipeline: $(STAMP)
	$(BIN)/python -m pipelines.run_local --out pipeline_out

clean:
	rm -rf demo_out .pytest_cache
