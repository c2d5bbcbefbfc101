"""``restore-r1 score`` end to end through ``restore_r1.cli.main``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from skimage import data, transform

import restore_r1.cli as cli
from restore_r1.images import write_image
from restore_r1.judges import JUDGES, create_judge, judge_availability, judge_is_relative
from restore_r1.metrics import psnr


@pytest.fixture(autouse=True)
def only_score_command(tmp_path, monkeypatch):
    """Parse with the score command alone (other commands may be absent or slow to import) and
    empty weight caches, so unavailable metrics are the same on every machine."""
    monkeypatch.setattr(cli, "COMMANDS", ("score",))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))


@pytest.fixture
def files(tmp_path):
    """Two 128-px images, a folder of references named like them, and bad files."""
    clean = (transform.resize(data.astronaut(), (128, 128), anti_aliasing=True) * 255).round().astype(np.uint8)
    shifted = np.clip(clean.astype(np.int16) + 10, 0, 255).astype(np.uint8)
    paths = {"a": write_image(tmp_path / "a.png", clean), "b": write_image(tmp_path / "b.png", shifted)}
    gt = tmp_path / "gt"
    write_image(gt / "a.png", clean)
    write_image(gt / "b.png", clean)
    paths["gt"] = gt
    paths["text"] = tmp_path / "text.png"
    paths["text"].write_bytes(b"this is not an image\n")
    png = paths["a"].read_bytes()
    paths["truncated"] = tmp_path / "truncated.png"
    paths["truncated"].write_bytes(png[: len(png) // 2])
    paths["tiny"] = tmp_path / "tiny.png"
    Image.new("RGB", (1, 1)).save(paths["tiny"])
    paths["clean"], paths["shifted"] = clean, shifted
    return paths


def _run(capsys, *argv):
    code = cli.main(["score", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_table_with_one_reference(files, capsys):
    code, out, err = _run(capsys, files["b"], "--ref", files["gt"] / "a.png", "--metrics", "psnr,ssim,piqe")
    assert code == 0 and err == ""
    header, row = out.strip().splitlines()
    assert header.split() == ["image", "psnr", "ssim", "piqe"]
    cells = row.split()
    assert cells[0] == str(files["b"])
    assert float(cells[1]) == pytest.approx(psnr(files["shifted"], files["clean"]), abs=1e-3)
    assert 0.0 < float(cells[2]) < 1.0


def test_json_with_a_folder_of_references(files, capsys):
    code, out, err = _run(capsys, files["a"], files["b"], "--ref", files["gt"], "--metrics", "psnr,niqe,lpips", "--json")
    assert code == 0 and err == ""
    rows = json.loads(out)
    assert [r["image"] for r in rows] == [str(files["a"]), str(files["b"])]
    assert rows[0]["scores"]["psnr"] == pytest.approx(80.0)  # a.png is its own reference
    assert rows[1]["scores"]["psnr"] == pytest.approx(psnr(files["shifted"], files["clean"]), abs=1e-3)
    assert rows[0]["scores"]["niqe"] > 0
    # lpips cannot run without its weights: null score, and the reason names the file
    assert rows[0]["scores"]["lpips"] is None
    assert "LPIPS_v0.1_alex-df73285e.pth" in rows[0]["unavailable"]["lpips"]
    assert set(rows[0]["unavailable"]) == {"lpips"}


def test_unavailable_metric_is_shown_and_explained_once(files, capsys):
    code, out, _ = _run(capsys, files["a"], files["b"], "--metrics", "piqe,musiq")
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].split() == ["image", "piqe", "musiq"]
    assert lines[1].split()[-1] == "unavailable" and lines[2].split()[-1] == "unavailable"
    reasons = [line for line in lines if "musiq_koniq_ckpt-e95806b9.pth" in line]
    assert len(reasons) == 1 and reasons[0].startswith("musiq is unavailable")


def test_bad_files_are_listed_and_the_others_scored(files, capsys):
    bad = [files["text"], files["truncated"], files["tiny"]]
    code, out, err = _run(capsys, files["a"], *bad, files["b"], "--metrics", "piqe", "--json")
    assert code == 1
    rows = json.loads(out)
    assert [r["image"] for r in rows] == [str(files["a"]), str(files["b"])]
    assert all(r["scores"]["piqe"] is not None for r in rows)
    error_lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 3
    for path, line in zip(bad, error_lines):
        assert str(path) in line
    assert "1×1 is smaller" in error_lines[2]
    assert "3 of 5 item(s) failed" in err


def test_reference_of_another_size_fails_that_item(files, capsys, tmp_path):
    refs = tmp_path / "refs"
    write_image(refs / "a.png", files["clean"][:96, :96])
    write_image(refs / "b.png", files["clean"])
    code, out, err = _run(capsys, files["a"], files["b"], "--ref", refs, "--metrics", "psnr")
    assert code == 1
    assert "96×96 but the image is 128×128" in err
    assert str(files["b"]) in out and str(files["a"]) not in out


def test_missing_reference_in_folder_fails_that_item(files, capsys, tmp_path):
    refs = tmp_path / "refs"
    write_image(refs / "a.png", files["clean"])
    code, out, err = _run(capsys, files["a"], files["b"], "--ref", refs, "--metrics", "psnr")
    assert code == 1
    assert "no such file" in err and str(refs / "b.png") in err


def test_metric_error_on_one_image_is_reported(files, capsys, tmp_path):
    small = write_image(tmp_path / "small.png", files["clean"][:64, :64])
    code, out, err = _run(capsys, files["a"], small, "--metrics", "piqe,niqe")
    assert code == 1
    assert "niqe" in err and "96" in err
    row = [line for line in out.splitlines() if line.startswith(str(small))][0]
    assert row.split()[-1] == "error" and float(row.split()[1]) > 0


def test_unknown_metric_exits_2_with_suggestion(files, capsys):
    code, out, err = _run(capsys, files["a"], "--metrics", "psnr,nique")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert "unknown metric 'nique'" in err and "niqe" in err


def test_full_reference_metric_without_ref_exits_2(files, capsys):
    code, _, err = _run(capsys, files["a"], "--metrics", "psnr,piqe")
    assert code == 2 and "--ref" in err


def test_several_images_need_a_reference_folder(files, capsys):
    code, _, err = _run(capsys, files["a"], files["b"], "--ref", files["gt"] / "a.png", "--metrics", "psnr")
    assert code == 2 and "must be a folder" in err


# --- judges as metrics ----------------------------------------------------------------------------


@pytest.mark.parametrize("judge", [*JUDGES.names(), "default"])
def test_every_judge_is_a_metric_column(files, capsys, judge):
    column = f"judge:{judge}"
    if judge_is_relative(judge):  # scored against the input it was restored from: needs --ref
        code, _, err = _run(capsys, files["a"], "--metrics", column)
        assert code == 2 and "--ref" in err
        return
    code, out, err = _run(capsys, files["a"], files["b"], "--metrics", f"piqe,{column}", "--json")
    assert code == 0 and err == ""
    rows = json.loads(out)
    ok, reason = judge_availability(judge)
    if not ok:
        assert [r["scores"][column] for r in rows] == [None, None]
        assert rows[0]["unavailable"] == {column: f"{column} is unavailable: {reason}"}
        return
    expected = create_judge(judge).score([files["clean"], files["shifted"]])
    assert [r["scores"][column] for r in rows] == pytest.approx(expected)
    assert all(r["scores"]["piqe"] is not None and r["unavailable"] == {} for r in rows)


def test_relative_judge_scores_an_image_against_its_input(files, capsys):
    code, out, err = _run(capsys, files["b"], "--ref", files["a"], "--metrics", "judge:relative", "--json")
    assert code == 0 and err == ""
    (row,) = json.loads(out)
    expected = create_judge("relative").score_relative([files["clean"]], [files["shifted"]])[0]
    assert row["scores"]["judge:relative"] == pytest.approx(expected)


def test_judges_and_full_reference_metrics_in_one_table(files, capsys):
    code, out, err = _run(capsys, files["b"], "--ref", files["gt"] / "a.png", "--metrics", "psnr,judge:calibrated,ssim")
    assert code == 0 and err == ""
    header, row = out.strip().splitlines()
    assert header.split() == ["image", "psnr", "judge:calibrated", "ssim"]
    cells = row.split()
    assert float(cells[1]) == pytest.approx(psnr(files["shifted"], files["clean"]), abs=1e-3)
    assert float(cells[2]) == pytest.approx(create_judge("calibrated").score([files["shifted"]])[0], abs=1e-4)


@pytest.mark.parametrize(
    "metrics, message",
    [("psnr,judge:calibratd", "unknown judge 'calibratd'; did you mean calibrated"), ("judge:", "names no judge")],
)
def test_bad_judge_exits_2_in_one_line(files, capsys, metrics, message):
    code, out, err = _run(capsys, files["a"], "--metrics", metrics)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err
