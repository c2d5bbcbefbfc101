"""Batch restoration (restore_r1.pipeline.batch) on local folders: the plan, a shard killed and
resumed, failures that stay alone, the pinned policy version, and the command's bad input.

The S3 and Triton versions of the same run are in tests/test_batch_pipeline.py (slow).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from restore_r1.agent.inference import RestoreResult
from restore_r1.images import read_image, write_image
from restore_r1.pipeline import batch as b


def photos(folder: Path, n: int, seed: int = 0, size: tuple[int, int] = (64, 80)) -> list[Path]:
    """``n`` small synthetic uint8 RGB photos (smooth gradients plus noise) under ``folder``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : size[0], 0 : size[1]]
    paths = []
    for i in range(n):
        base = (xx * (2 + i % 3) + yy * (1 + i % 2)) % 256
        img = np.clip(base[..., None] + rng.normal(0, 20, (*size, 3)), 0, 255).astype(np.uint8)
        paths.append(write_image(folder / f"p{i:02d}.png", img))
    return paths


def fake_restore(img: np.ndarray, version: str | None = None) -> RestoreResult:
    return RestoreResult(image=255 - img, tools=["invert"], scores=[0.0, 0.5], seconds=0.01, policy_version=version)


def test_plan_lists_photos_at_any_depth_and_refuses_what_cannot_work(tmp_path):
    src = tmp_path / "in"
    photos(src, 3)
    photos(src / "sub", 1)
    (src / "notes.txt").write_text("not a photo")
    (src / ".hidden").mkdir()
    photos(src / ".hidden", 1)
    plan = b.plan_batch(str(src), str(tmp_path / "out"), shards=2, now=100.0)
    assert plan.keys == ("p00.png", "p01.png", "p02.png", "sub/p00.png") and plan.shards == 2 and plan.started == 100.0
    assert plan.shard_keys(0) + plan.shard_keys(1) == ("p00.png", "p02.png", "p01.png", "sub/p00.png")
    assert b.BatchPlan.from_json(plan.to_json()) == plan
    assert b.plan_batch(str(src), str(tmp_path / "out"), shards=9).shards == 4  # never an empty shard
    assert b.output_key("sub/p00.jpg") == "sub/p00.png" and b.record_key("sub/p00.jpg") == "_records/sub/p00.jpg.json"
    with pytest.raises(ValueError, match="lies inside the input"):
        b.plan_batch(str(src), str(src / "out"))
    with pytest.raises(ValueError, match="use s3://BUCKET/PREFIX or a folder"):
        b.plan_batch("gs://bucket/x", str(tmp_path / "out"))
    with pytest.raises(ValueError, match="names no bucket"):
        b.plan_batch("s3://", str(tmp_path / "out"))
    with pytest.raises(ValueError, match="shards 0"):
        b.plan_batch(str(src), str(tmp_path / "out"), shards=0)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        b.plan_batch(str(tmp_path / "missing"), str(tmp_path / "out"))
    with pytest.raises(ValueError, match="is a file"):
        b.plan_batch(str(src / "p00.png"), str(tmp_path / "out"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        b.plan_batch(str(tmp_path / "empty"), str(tmp_path / "out"))
    write_image(src / "p01.jpg", read_image(src / "p01.png"))
    with pytest.raises(ValueError, match="both be restored to p01.png"):
        b.plan_batch(str(src), str(tmp_path / "out"))
    with pytest.raises(ValueError, match="shard 2 out of range"):
        plan.shard_keys(2)


def test_a_killed_shard_resumes_and_nothing_truncated_is_left(tmp_path):
    photos(tmp_path / "in", 7)
    plan = b.plan_batch(str(tmp_path / "in"), str(tmp_path / "out"), shards=2)
    calls = []

    def dies_on_third(img):
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process is killed: nothing after this point runs
        calls.append(1)
        return fake_restore(img)

    with pytest.raises(KeyboardInterrupt):
        b.restore_shard(plan, 0, restore=dies_on_third)
    out = tmp_path / "out"
    assert sorted(p.name for p in (out / "_records").iterdir()) == ["p00.png.json", "p02.png.json"]
    assert not (out / b.MANIFESTS_DIR).exists()
    for png in out.glob("*.png"):
        read_image(png)  # whole files only at final names
    first = b.restore_shard(plan, 1, restore=fake_restore)
    again = b.restore_shard(plan, 0, restore=fake_restore)  # the rerun of the killed shard
    assert (again.photos, again.skipped, again.restored, again.failed) == (4, 2, 2, 0)
    assert (first.photos, first.restored) == (3, 3) and again.megapixels == pytest.approx(2 * 64 * 80 / 1e6)
    summary = b.finish_batch(plan, [again, first])
    assert (summary.photos, summary.done, summary.restored, summary.skipped, summary.failed) == (7, 7, 5, 2, 0)
    manifest = b.read_manifest(str(out))
    assert [Path(r["input"]).name for r in manifest] == [f"p{i:02d}.png" for i in range(7)]
    assert set(manifest[0]) == set(b.RECORD_FIELDS)
    for record in manifest:
        restored = read_image(record["output"])
        assert np.array_equal(restored, 255 - read_image(record["input"])) and record["tools"] == ["invert"]
    assert json.loads((out / b.SUMMARY_FILE).read_text())["done"] == 7
    assert summary.metrics()["batch_skipped"] == 2.0 and "batch_photos_per_second" in summary.metrics()
    assert "Batch restoration" in b.summary_markdown(summary)
    # --overwrite: everything again
    assert b.restore_shard(plan, 0, restore=fake_restore, overwrite=True).restored == 4
    with pytest.raises(ValueError, match="one for each of shards 0-1"):
        b.finish_batch(plan, [first])


def test_a_bad_photo_fails_alone_and_is_retried(tmp_path):
    photos(tmp_path / "in", 3)
    (tmp_path / "in" / "p01.png").write_bytes(b"not a png")
    plan = b.plan_batch(str(tmp_path / "in"), str(tmp_path / "out"))
    seen = []
    result = b.restore_shard(plan, 0, restore=fake_restore, on_failure=lambda key, message: seen.append(key))
    assert (result.restored, result.failed, seen) == (2, 1, ["p01.png"]) and result.failures[0].startswith("p01.png: ")
    assert not (tmp_path / "out" / "p01.png").exists()
    retry = b.restore_shard(plan, 0, restore=fake_restore)
    assert (retry.skipped, retry.failed) == (2, 1)
    summary = b.finish_batch(plan, [retry])
    assert (summary.done, summary.failed) == (2, 1) and "Failed photos" in b.summary_markdown(summary)


def test_policy_is_pinned_and_a_server_on_another_version_is_refused(tmp_path, monkeypatch):
    from restore_r1.registry import open_registry, publish_policy
    from restore_r1.serving.testing import make_random_policy

    registry = open_registry(tmp_path / "registry", cache_dir=tmp_path / "cache")
    policy = make_random_policy(tmp_path / "policy")
    publish_policy(registry, "pol", policy, stage="production")
    publish_policy(registry, "pol", policy)
    photos(tmp_path / "in", 2)
    plan = b.plan_batch(str(tmp_path / "in"), str(tmp_path / "out"), policy="registry://pol@production", registry=str(tmp_path / "registry"))
    assert (plan.policy, plan.policy_version) == ("registry://pol@1", "1")
    assert b.pin_policy("registry://pol@latest", str(tmp_path / "registry")) == ("registry://pol@2", "2")
    assert b.pin_policy(str(policy)) == (str(policy), None)
    served = b.restore_shard(plan, 0, restore=lambda img: fake_restore(img, "2"), triton_url="triton:8001")
    assert served.failed == 2 and "policy version 2, the batch is pinned to registry://pol@1" in served.failures[0]
    good = b.restore_shard(plan, 0, restore=lambda img: fake_restore(img, "1"), triton_url="triton:8001")
    assert good.restored == 2
    # in process, the pinned version is what is loaded, and the records carry it
    monkeypatch.setenv("RESTORE_R1_REGISTRY", str(tmp_path / "registry"))
    monkeypatch.setenv("RESTORE_R1_REGISTRY_CACHE", str(tmp_path / "cache"))
    local = b.restore_shard(plan, 0, overwrite=True, max_steps=1)
    assert local.restored == 2
    record = json.loads((tmp_path / "out" / b.record_key("p00.png")).read_text())
    assert record["policy_version"] == "1" and len(record["tools"]) <= 1 and len(record["scores"]) == len(record["tools"]) + 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["s3://", "-o", "s3://b/out"], "names no bucket"),
        (["s3://b/in", "s3://b/more", "-o", "s3://b/out"], "IN is one prefix or folder; got 2"),
        (["s3://b/in", "-o", "out.png"], "names one image file"),
        (["s3://b/in", "-o", "s3://b/in/out"], "lies inside the input"),
        (["s3://b/in", "-o", "s3://b/out", "--triton-url", "x:1", "--policy", "p"], "--policy is for in-process"),
    ],
)
def test_batch_command_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    from restore_r1.cli import main

    assert main(["restore", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("restore-r1 restore: error: ") and message in err[0]
