"""The Kubeflow pipeline's library steps (gate, reports, Triton export, synthesis) and the compiled YAML."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from restore_r1.errors import ChecksumError
from restore_r1.pipeline.gate import EVALUATION_PARAM, decide, evaluation_settings, gate
from restore_r1.pipeline.report import key_metrics, summary_html, summary_markdown
from restore_r1.pipeline.serving import export_triton_entry
from restore_r1.pipeline.steps import resolve_images, synthesize_step
from restore_r1.registry import open_registry, publish_policy
from tests.test_registry import make_policy

ROOT = Path(__file__).resolve().parents[1]
COMMITTED_YAML = ROOT / "pipelines" / "restore_r1_training.yaml"


def results_with(psnr: float, niqe: float = 5.0, seed: int = 0) -> dict:
    return {
        "summary": {
            "policy": {"psnr": psnr, "niqe": niqe, "ssim": None, "tool_calls": 2.0, "images": 4},
            "input": {"psnr": 18.0, "niqe": 7.0, "tool_calls": 0.0, "images": 4},
        },
        "settings": {"I": {"policy": {"psnr": psnr}}},
        "config": {
            "cases": [1, 4],
            "per_case": 1,
            "seed": seed,
            "crop": 128,
            "images": None,
            "judge": "default",
            "metrics": ["psnr", "niqe"],
            "methods": ["input", "policy"],
            "max_steps": 5,
            "oracle_depth": 2,
            "policy": "/x",
            "grid_cases": [],
        },
        "unavailable": {"lpips": "weights missing"},
    }


# ------------------------------------------------------------------------------------- gate
def test_decide_by_hand():
    assert decide("policy_psnr", 20.0, None, None).passed  # no production
    d = decide("policy_psnr", 20.5, 20.0, 3)
    assert d.passed and "+0.5000" in d.reason and "production v3" in d.reason
    assert not decide("policy_psnr", 20.0, 20.0, 3).passed  # a tie does not beat production
    assert not decide("policy_psnr", 20.4, 20.0, 3, min_delta=0.5).passed
    assert decide("policy_niqe", 4.0, 5.0, 1).passed  # NIQE: lower is better
    assert not decide("policy_niqe", 6.0, 5.0, 1).passed
    assert decide("policy_seconds", 0.1, 0.2, 1).passed
    with pytest.raises(ValueError, match="no value for 'policy_lpips'"):
        decide("policy_lpips", None, 1.0, 1)


def test_gate_uses_recorded_metric_for_the_same_evaluation(tmp_path):
    registry = open_registry(tmp_path / "reg", cache_dir=tmp_path / "cache")
    assert gate(results_with(20.0), registry, "pol").passed  # nothing in production yet
    prod = results_with(20.0)
    publish_policy(
        registry,
        "pol",
        make_policy(tmp_path / "p"),
        metrics=key_metrics(prod),
        parameters={EVALUATION_PARAM: evaluation_settings(prod["config"])},
        stage="production",
    )

    def never(*args):
        raise AssertionError("production was evaluated with the same settings: no re-evaluation")

    better = gate(results_with(21.0), registry, "pol", reevaluate=never)
    assert better.passed and better.incumbent == 20.0 and better.incumbent_version == 1 and not better.reevaluated
    worse = gate(results_with(19.0), registry, "pol", reevaluate=never)
    assert not worse.passed and "does not beat production v1" in worse.reason
    assert "NOT PASSED" in worse.to_markdown()


def test_gate_reevaluates_production_on_other_settings(tmp_path):
    registry = open_registry(tmp_path / "reg", cache_dir=tmp_path / "cache")
    old = results_with(25.0, seed=7)  # a different evaluation: its 25.0 must not be compared
    publish_policy(
        registry,
        "pol",
        make_policy(tmp_path / "p"),
        metrics=key_metrics(old),
        parameters={EVALUATION_PARAM: evaluation_settings(old["config"])},
        stage="production",
    )
    seen = {}

    def reevaluate(production, config):
        seen["version"], seen["seed"] = production.version, config["seed"]
        return results_with(19.5)

    d = gate(results_with(20.0), registry, "pol", reevaluate=reevaluate)
    assert seen == {"version": 1, "seed": 0}
    assert d.passed and d.reevaluated and d.incumbent == 19.5
    refused = gate(results_with(20.0), registry, "pol", reevaluate=None)
    assert not refused.passed and "other settings" in refused.reason


# ------------------------------------------------------------------------------------ reports
def test_key_metrics_and_reports(tmp_path):
    res = results_with(20.0)
    km = key_metrics(res)
    assert km == {
        "policy_psnr": 20.0,
        "policy_niqe": 5.0,
        "policy_tool_calls": 2.0,
        "input_psnr": 18.0,
        "input_niqe": 7.0,
        "input_tool_calls": 0.0,
        "policy_psnr_gain": 2.0,
    }
    md = summary_markdown(res)
    assert "| policy | 20 | 5 | – | 2 | 4 |" in md and "`lpips`: weights missing" in md
    import numpy as np

    from restore_r1.images import write_image

    write_image(tmp_path / "perception_distortion.png", np.zeros((16, 16, 3), np.uint8))
    page = summary_html(res, tmp_path)
    assert page.startswith("<!doctype html>") and "data:image/png;base64," in page and "<td>policy</td>" in page


# ------------------------------------------------------------------------------------ Triton export
def test_export_with_and_without_triton_model_files(tmp_path):
    policy = make_policy(tmp_path / "p")
    source = tmp_path / "triton_models" / "restore_r1_policy"
    (source / "1").mkdir(parents=True)
    (source / "config.pbtxt").write_text('name: "restore_r1_policy"\nbackend: "python"\n')
    (source / "1" / "model.py").write_text("# model\n")
    result = export_triton_entry(policy, tmp_path / "repo", 4, triton_source=tmp_path / "triton_models")
    assert result.files == [
        "restore_r1_policy/4/model.py",
        "restore_r1_policy/4/policy/policy.json",
        "restore_r1_policy/4/policy/policy.safetensors",
        "restore_r1_policy/config.pbtxt",
    ]
    assert not result.notes
    bare = export_triton_entry(policy, tmp_path / "repo2", 1, triton_source=tmp_path / "nothing")
    assert bare.files == ["restore_r1_policy/1/policy/policy.json", "restore_r1_policy/1/policy/policy.safetensors"]
    assert any("only the policy files" in n for n in bare.notes) and any("config.pbtxt" in n for n in bare.notes)
    with pytest.raises(ValueError, match="must be an integer >= 1"):
        export_triton_entry(policy, tmp_path / "repo3", 0)
    (policy / "policy.safetensors").write_bytes(b"broken")
    with pytest.raises(ChecksumError):
        export_triton_entry(policy, tmp_path / "repo4", 1, triton_source=tmp_path / "triton_models")
    assert not (tmp_path / "repo4" / "restore_r1_policy" / "1").exists()


def test_export_of_the_repository_triton_model_when_present(tmp_path):
    source = ROOT / "triton_models" / "restore_r1_policy"
    if not (source / "config.pbtxt").is_file():
        pytest.skip("triton_models/restore_r1_policy is not in this checkout")
    result = export_triton_entry(make_policy(tmp_path / "p"), tmp_path / "repo", 2, triton_source=ROOT / "triton_models")
    assert "restore_r1_policy/config.pbtxt" in result.files and "restore_r1_policy/2/model.py" in result.files


# ------------------------------------------------------------------------------------ steps
def test_synthesize_step_and_image_sources(tmp_path):
    info = synthesize_step("bundled:train", tmp_path / "ds", cases="1", per_case=1, seed=0, crop=64)
    assert info["pairs"] == 4 and info["sources"] == 4 and len(info["manifest_sha256"]) == 64 and not info["failures"]
    assert resolve_images("", tmp_path, "heldout") == (None, "heldout")
    assert resolve_images(str(tmp_path), tmp_path, "train") == (str(tmp_path), "all")
    with pytest.raises(ValueError, match="unknown split 'nope'"):
        resolve_images("bundled:nope", tmp_path, "train")
    with pytest.raises(ValueError, match="use 'bundled'"):
        resolve_images("gs://bucket/x", tmp_path, "train")
    with pytest.raises(FileNotFoundError):
        resolve_images(str(tmp_path / "missing"), tmp_path, "train")
    with pytest.raises(ValueError, match="crop -1"):
        synthesize_step("bundled", tmp_path / "ds2", cases="1", per_case=1, seed=0, crop=-1)


# ------------------------------------------------------------------------------------ compiled pipeline
def test_committed_pipeline_yaml_is_not_stale(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RESTORE_R1_IMAGE"}
    out = tmp_path / "compiled.yaml"
    subprocess.run([sys.executable, "-m", "pipelines.compile", "--out", str(out)], cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)
    assert out.read_text() == COMMITTED_YAML.read_text(), "pipelines/restore_r1_training.yaml is stale: run `make pipeline-yaml` and commit it"


def test_compiled_pipeline_contents():
    from components.image import DEFAULT_IMAGE

    docs = list(yaml.safe_load_all(COMMITTED_YAML.read_text()))
    spec, platform = docs[0], docs[1]
    params = spec["root"]["inputDefinitions"]["parameters"]
    for name in ("images_uri", "cases", "per_case", "seed", "judge", "group_size", "steps", "max_steps", "promote", "planner", "vlm_model", "vlm_options"):
        assert name in params and "defaultValue" in params[name], name
    executors = spec["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {DEFAULT_IMAGE}
    assert not any("pip install" in " ".join(e["container"]["command"]) for e in executors.values())
    train = executors["exec-train-grpo"]["container"]["resources"]["accelerator"]
    assert "accelerator_type" in train["resourceType"] and "accelerator_limit" in train["resourceCount"]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert "nodeSelector" in k8s["exec-train-grpo"] and "tolerations" in k8s["exec-train-grpo"]
    assert all("secretAsEnv" in k8s[f"exec-{t}"] for t in ("gate", "register", "export-serving", "train-grpo"))
    # distributed training is asked for by parameters; the default is one process in the step's pod
    for name, default in {"train_nodes": 1, "train_gpus_per_node": 1, "train_volume": "", "train_metrics_port": 0, "pushgateway": ""}.items():
        assert params[name]["defaultValue"] == default, name
    assert params["trainjob_runtime"]["defaultValue"] == "torch-distributed" and params["trainjob_image"]["defaultValue"] == DEFAULT_IMAGE
    train_inputs = spec["root"]["dag"]["tasks"]["train-grpo"]["inputs"]["parameters"]
    assert train_inputs["run_id"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"
    assert {"train_nodes", "train_gpus_per_node", "train_work_uri", "train_volume", "accelerator_type"} <= set(train_inputs)
    tasks = spec["root"]["dag"]["tasks"]
    assert {"synthesize", "train-grpo", "evaluate", "gate", "condition-1"} <= set(tasks)
    condition = tasks["condition-1"]["triggerPolicy"]["condition"]
    assert "gate-Output" in condition
    inner = spec["components"]["comp-condition-1"]["dag"]["tasks"]
    assert set(inner) == {"register", "condition-2"}
    # a VLM planner is registered but not exported: Triton serves MLP policies only
    assert inner["condition-2"]["triggerPolicy"]["condition"] == "inputs.parameter_values['pipelinechannel--planner'] == 'mlp'"
    assert params["planner"]["defaultValue"] == "mlp"
    assert set(spec["components"]["comp-condition-2"]["dag"]["tasks"]) == {"export-serving"}
