"""``restore-r1 restore -o``: a file or a folder, and never a silent overwrite.

The shipped policy with ``--max-steps 0`` keeps each run to the agent's load time: the output is
the input, which is all these tests need (the restoration itself is tested in test_agent_cli).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import restore_r1.cli as cli
from restore_r1.cli.common import output_targets
from restore_r1.images import IMAGE_FORMATS, read_image, write_image


@pytest.fixture(autouse=True)
def _only_restore(monkeypatch):
    monkeypatch.setattr(cli, "COMMANDS", ("restore",))


@pytest.fixture
def inputs(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "in"
    a = write_image(folder / "a.png", rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
    b = write_image(folder / "b.jpg", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    return a, b


def _restore(capsys, *argv):
    code = cli.main(["restore", *map(str, argv), "--max-steps", "0", "--json"])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err


@pytest.mark.parametrize("suffix", sorted(IMAGE_FORMATS))
def test_plan_one_input_and_an_image_suffix_is_a_file(tmp_path, suffix):
    assert output_targets([tmp_path / "x.png"], str(tmp_path / f"out{suffix}")) == [tmp_path / f"out{suffix}"]


def test_plan_a_folder_names_outputs_after_the_inputs(tmp_path):
    inputs = [tmp_path / "a.jpg", tmp_path / "sub" / "b.png"]
    assert output_targets(inputs, str(tmp_path / "out")) == [tmp_path / "out" / "a.png", tmp_path / "out" / "b.png"]
    (tmp_path / "shots.png").mkdir()  # an existing folder stays a folder, whatever its name
    assert output_targets(inputs[:1], str(tmp_path / "shots.png")) == [tmp_path / "shots.png" / "a.png"]


def test_single_file_output(inputs, tmp_path, capsys):
    a, _ = inputs
    target = tmp_path / "restored.png"
    code, records, err = _restore(capsys, a, "-o", target)
    assert code == 0 and err == ""
    assert target.is_file() and records[0]["output"] == str(target)
    assert np.array_equal(read_image(target), read_image(a))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporaries left


def test_single_file_output_follows_the_suffix(inputs, tmp_path, capsys):
    a, _ = inputs
    target = tmp_path / "restored.jpg"
    assert _restore(capsys, a, "-o", target)[0] == 0
    assert target.read_bytes()[:2] == b"\xff\xd8"  # a JPEG, not a PNG named .jpg


def test_folder_output(inputs, tmp_path, capsys):
    a, b = inputs
    out = tmp_path / "out"
    code, records, _ = _restore(capsys, a.parent, "-o", out)
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]
    assert [r["output"] for r in records] == [str(out / "a.png"), str(out / "b.png")]
    # one input and a folder name (no image suffix): still a folder
    code, records, _ = _restore(capsys, a, "-o", tmp_path / "one")
    assert code == 0 and (tmp_path / "one" / "a.png").is_file()


def test_refuses_to_overwrite_and_names_the_file(inputs, tmp_path, capsys):
    a, _ = inputs
    target = tmp_path / "restored.png"
    target.write_bytes(b"precious")
    code, records, err = _restore(capsys, a, "-o", target)
    assert code == cli.EXIT_ERROR and records == []
    assert err.strip().splitlines() == [f"restore-r1 restore: error: {target} already exists; pass --overwrite to replace"]
    assert target.read_bytes() == b"precious"


def test_refuses_before_restoring_anything_in_a_folder(inputs, tmp_path, capsys):
    a, _ = inputs
    out = tmp_path / "out"
    write_image(out / "b.png", np.zeros((16, 16, 3), np.uint8))
    code, records, err = _restore(capsys, a.parent, "-o", out)
    assert code == cli.EXIT_ERROR and records == [] and "b.png already exists" in err
    assert sorted(p.name for p in out.iterdir()) == ["b.png"]  # a.png was not written either


def test_overwrite_replaces(inputs, tmp_path, capsys):
    a, _ = inputs
    target = tmp_path / "restored.png"
    target.write_bytes(b"old")
    code, _, err = _restore(capsys, a, "-o", target, "--overwrite")
    assert code == 0 and err == ""
    assert np.array_equal(read_image(target), read_image(a))


def test_several_inputs_and_an_image_suffix_is_an_error(inputs, tmp_path, capsys):
    a, b = inputs
    code, records, err = _restore(capsys, a, b, "-o", tmp_path / "out.png")
    assert code == cli.EXIT_ERROR and records == []
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "names one image file but 2 images were given" in lines[0]
    assert not (tmp_path / "out.png").exists()


def test_help_documents_the_output_rule(capsys):
    with pytest.raises(SystemExit):
        cli.main(["restore", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "image suffix" in text and "--overwrite" in text and "several images is an error" in text


def test_the_report_says_where_the_time_went(inputs, tmp_path, capsys):
    from restore_r1.agent.inference import Agent
    from restore_r1.cli.restore import time_breakdown

    a, _ = inputs
    result = Agent.load(None).restore(read_image(a), progress=True)
    tools = [k for k in result.timings if k.startswith("tool:")]
    assert [k.removeprefix("tool:") for k in tools] == sorted(set(result.tools), key=result.tools.index)
    assert {"encoder", "policy", "judge"} <= set(result.timings)
    assert 0 < sum(result.timings.values()) <= result.seconds
    assert "restore" in capsys.readouterr().err  # the progress bar, on stderr
    text = time_breakdown({"tool:nlm_denoise": 3.1, "judge": 0.4, "policy": 0.001})
    assert text == "nlm_denoise 3.10 s, judge 0.40 s"
    code, records, _ = _restore(capsys, a, "-o", tmp_path / "out.png")
    assert code == 0 and set(records[0]["timings"]) == {"judge"}  # no step: only the input's score
