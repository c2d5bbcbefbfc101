"""The agent end to end through the CLI: synth -> train -> restore -> evaluate -> demo.

Tiny settings (96-px crops, two tools, two updates) keep it to seconds; the point is the plumbing
and the contracts (files, JSON fields, exit codes, resumption), not restoration quality, which
bench/ measures.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from restore_r1.cli import main
from restore_r1.errors import WeightsNotFoundError
from restore_r1.images import read_image, write_image

TOOLS = "gamma_correction,guided_denoise"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A data set and a policy trained on it by the CLI (module-wide: built once)."""
    root = tmp_path_factory.mktemp("agent")
    data, run = root / "data", root / "run"
    assert main(["synth", "--split", "train", "--out", str(data), "--cases", "1,4", "--crop", "128", "--no-progress"]) == 0
    code = main(
        [
            "train",
            "--data",
            str(data),
            "--out",
            str(run),
            "--tools",
            TOOLS,
            "--steps",
            "2",
            "--group",
            "2",
            "--batch-images",
            "2",
            "--max-steps",
            "2",
            "--checkpoint-every",
            "1",
            "--judge",
            "piqe",
            "--no-progress",
        ]
    )
    assert code == 0
    return data, run / "policy"


def test_train_writes_policy_log_and_checkpoints(trained):
    data, policy = trained
    assert (policy / "policy.safetensors").is_file() and (policy / "policy.json").is_file()
    config = json.loads((policy / "policy.json").read_text())["config"]
    assert config["tool_names"] == TOOLS.split(",") and config["encoder_name"] == "stats"
    log = [json.loads(line) for line in (policy.parent / "train_log.jsonl").read_text().splitlines()]
    assert [r["update"] for r in log] == [1, 2]
    for key in ("mean_reward", "advantage_std", "kl", "entropy", "mean_steps", "tool_cache_hit_rate"):
        assert key in log[0]


def test_serve_forbid_cycle_writes_the_same_weights_with_loops_masked(trained, tmp_path):
    # The default policy's recipe trains without the A -> B -> A mask and serves with it.
    data, policy = trained
    run = tmp_path / "run"
    args = ["train", "--data", str(data), "--out", str(run), "--tools", TOOLS, "--steps", "2", "--group", "2", "--batch-images", "2"]
    args += ["--max-steps", "2", "--checkpoint-every", "1", "--judge", "piqe", "--no-progress", "--serve-forbid-cycle"]
    assert main(args) == 0
    served = json.loads((run / "policy" / "policy.json").read_text())
    trained_cfg = json.loads((policy / "policy.json").read_text())
    assert served["config"]["forbid_cycle"] is True and trained_cfg["config"]["forbid_cycle"] is False
    assert served["config"]["extra"]["grpo"]["forbid_cycle"] is False  # training did not mask
    assert {k: v for k, v in served["config"].items() if k != "forbid_cycle"} == {k: v for k, v in trained_cfg["config"].items() if k != "forbid_cycle"}
    assert (run / "policy" / "policy.safetensors").read_bytes() == (policy / "policy.safetensors").read_bytes()
    from restore_r1.agent.policy import load_policy

    served_policy = load_policy(run / "policy")
    served_policy.config.max_steps = 5  # room for a third step
    mask = served_policy.action_mask([[0, 1]])
    assert not mask[0, 0] and not mask[0, 1] and mask[0, -1]  # A -> B -> A and B -> B masked, STOP allowed


def test_train_reads_only_degraded_images(trained, tmp_path):
    data, _ = trained
    # Without the clean images the data set still trains: gt is never opened.
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    shutil.rmtree(copy / "gt")
    code = main(
        [
            "train",
            "--data",
            str(copy),
            "--out",
            str(tmp_path / "run"),
            "--tools",
            TOOLS,
            "--steps",
            "1",
            "--group",
            "2",
            "--batch-images",
            "1",
            "--max-steps",
            "2",
            "--judge",
            "piqe",
            "--no-progress",
        ]
    )
    assert code == 0


def test_restore_json_and_bad_inputs(trained, tmp_path, capsys):
    data, policy = trained
    good = sorted((data / "lq").glob("*.png"))[:2]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    out = tmp_path / "out"
    code = main(["restore", *map(str, good), str(bad), "-o", str(out), "--policy", str(policy), "--json"])
    captured = capsys.readouterr()
    assert code == 1
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert len(lines) == 2
    for rec, src in zip(lines, good):
        assert set(rec) >= {"input", "output", "tools", "scores", "seconds"}
        assert rec["input"] == str(src)
        assert len(rec["scores"]) == len(rec["tools"]) + 1
        assert set(rec["tools"]) <= set(TOOLS.split(","))
        assert read_image(rec["output"]).shape == read_image(src).shape
    assert "bad.png" in captured.err and "1 of 3 item(s) failed" in captured.err
    assert not (out / "bad.png").exists()


def test_restore_is_deterministic_and_capped(trained, tmp_path, capsys):
    data, policy = trained
    src = str(sorted((data / "lq").glob("*.png"))[0])
    main(["restore", src, "-o", str(tmp_path / "a"), "--policy", str(policy), "--json"])
    main(["restore", src, "-o", str(tmp_path / "b"), "--policy", str(policy), "--json"])
    main(["restore", src, "-o", str(tmp_path / "c"), "--policy", str(policy), "--json", "--max-steps", "0"])
    a, b, c = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert a["tools"] == b["tools"]
    assert np.array_equal(read_image(a["output"]), read_image(b["output"]))
    assert c["tools"] == [] and np.array_equal(read_image(c["output"]), read_image(src))


def test_restore_errors_are_one_line(tmp_path, capsys):
    img = tmp_path / "x.png"
    write_image(img, np.zeros((32, 32, 3), np.uint8))
    code = main(["restore", str(img), "-o", str(tmp_path / "o"), "--policy", str(tmp_path / "nope")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "not found" in err[0] and "Traceback" not in err[0]


def test_policy_with_unavailable_tool_is_refused(trained, tmp_path):
    from restore_r1.agent.inference import Agent

    _, policy = trained
    meta = json.loads((policy / "policy.json").read_text())
    meta["config"]["tool_names"][0] = "restormer_derain"  # a paper tool without weights here
    import shutil

    bad = tmp_path / "bad_policy"
    shutil.copytree(policy, bad)
    (bad / "policy.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="restormer_derain"):
        Agent.load(str(bad), judge="piqe")


def test_resolve_policy_env_and_missing(tmp_path, monkeypatch, trained):
    from restore_r1.agent.inference import resolve_policy

    _, policy = trained
    monkeypatch.setenv("RESTORE_R1_POLICY", str(policy))
    assert resolve_policy() == policy
    monkeypatch.setenv("RESTORE_R1_POLICY", str(tmp_path / "missing"))
    with pytest.raises(WeightsNotFoundError, match="RESTORE_R1_POLICY"):
        resolve_policy()


def test_evaluate_writes_tables_and_resumes(trained, tmp_path, capsys):
    _, policy = trained
    out = tmp_path / "eval"
    args = [
        "evaluate",
        "--cases",
        "1,5",
        "--per-case",
        "1",
        "--crop",
        "96",
        "--seed",
        "3",
        "--policy",
        str(policy),
        "--methods",
        "input,random,fixed,exploration,oracle,policy",
        "--metrics",
        "psnr,ssim,lpips,piqe",
        "--max-steps",
        "2",
        "--oracle-depth",
        "1",
        "--judge",
        "piqe",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["summary"]) == {"input", "random", "fixed", "exploration", "oracle", "policy"}
    for row in results["summary"].values():
        assert {"psnr", "ssim", "tool_calls", "seconds"} <= set(row)
        assert row["lpips"] is None
    assert "lpips" in results["unavailable"]
    assert set(results["cases"]) == {"1", "5"} and set(results["settings"]) == {"I"}
    s = results["summary"]
    assert s["input"]["tool_calls"] == 0
    assert s["oracle"]["psnr"] >= s["input"]["psnr"]  # the oracle may always keep the input
    assert s["exploration"]["tool_calls"] >= 2  # every tool of the policy's set tried at least once
    used = {t for line in (out / "records.jsonl").read_text().splitlines() for t in json.loads(line)["tools"]}
    assert used <= set(TOOLS.split(",")), "every method compares on the policy's tool set"
    for name in ("results.md", "summary.csv", "cases.csv", "settings.csv", "perception_distortion.png", "qualitative.png"):
        assert (out / name).is_file(), name
    md = (out / "results.md").read_text()
    assert "n/a" in md and "LPIPS" in md
    records = (out / "records.jsonl").read_text().splitlines()
    assert len(records) == 2 * 2 * 6  # 2 held-out photos x 2 cases x 6 methods
    # Resuming recomputes nothing; other settings in the same folder are refused.
    assert main(args) == 0
    assert (out / "records.jsonl").read_text().splitlines() == records
    assert main([*args[:-3], "--seed", "4", "--out", str(out), "--no-progress"]) == 2
    assert "other settings" in capsys.readouterr().err
    # --tools restricts every method's tool set (baselines only here: the policy needs its own tools)
    first = TOOLS.split(",")[0]
    out2 = tmp_path / "eval_tools"
    base = ["evaluate", "--cases", "1", "--crop", "96", "--seed", "3", "--methods", "random,exploration", "--metrics", "psnr"]
    assert main([*base, "--judge", "piqe", "--max-steps", "2", "--tools", first, "--out", str(out2), "--no-progress"]) == 0
    used = {t for line in (out2 / "records.jsonl").read_text().splitlines() for t in json.loads(line)["tools"]}
    assert used <= {first} and json.loads((out2 / "config.json").read_text())["tools"] == [first]


def test_demo_runs_with_a_given_policy(trained, tmp_path, capsys):
    _, policy = trained
    assert main(["demo", "--out", str(tmp_path / "demo"), "--policy", str(policy)]) == 0
    out = capsys.readouterr().out
    assert "mean over 7 images" in out and "tools :" in out and (tmp_path / "demo" / "contact_sheet.png").is_file()
