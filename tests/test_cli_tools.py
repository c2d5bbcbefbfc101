"""``restore-r1 tools``: table and JSON listings of the catalogue, and ``tools run``."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from restore_r1.cli import main
from restore_r1.images import read_image, write_image
from restore_r1.tools import get_tool, list_tools


def test_json_lists_every_tool(capsys):
    assert main(["tools", "--json"]) == 0
    items = json.loads(capsys.readouterr().out)
    assert [i["name"] for i in items] == [t.name for t in list_tools()]
    for item in items:
        assert {"name", "degradation", "paper", "available", "reason", "backend", "licence"} <= set(item)
        assert isinstance(item["paper"], bool) and isinstance(item["available"], bool)
        assert (item["reason"] == "") == item["available"]
    assert sum(i["paper"] for i in items) == 28
    fbcnn = next(i for i in items if i["name"] == "fbcnn_q5")
    assert not fbcnn["available"] and "fbcnn/fbcnn_color.pth" in fbcnn["reason"] and fbcnn["loader"] == "spandrel"


def test_available_filter_follows_the_weights_folder(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("RESTORE_R1_WEIGHTS", str(tmp_path))
    assert main(["tools", "--json", "--available"]) == 0
    names = {i["name"] for i in json.loads(capsys.readouterr().out)}
    assert "clahe" in names and "dehazeformer_dehaze" not in names

    (tmp_path / "dehazeformer_dehaze").mkdir()
    torch.jit.save(torch.jit.script(torch.nn.Identity()), str(tmp_path / "dehazeformer_dehaze" / "dehazeformer_dehaze.pt"))
    assert main(["tools", "--json", "--available"]) == 0
    names = {i["name"] for i in json.loads(capsys.readouterr().out)}
    assert "dehazeformer_dehaze" in names


def test_table(capsys):
    assert main(["tools"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["name", "degradation", "paper", "backend", "licence", "available"]
    row = next(line for line in lines if line.startswith("gamma_correction "))
    assert row.split()[1:4] == ["dark", "yes", "function"] and row.split()[-1] == "yes"
    assert "unavailable" in out


# --- tools run ------------------------------------------------------------------------------------

FUNCTION_TOOLS = [t.name for t in list_tools() if t.backend == "function"]


@pytest.fixture
def photos(tmp_path):
    """Two small photos in a folder (one PNG, one JPEG) and a file that is not an image."""
    from restore_r1.cleanimages import load_clean

    folder = tmp_path / "in"
    a = write_image(folder / "a.png", np.ascontiguousarray(load_clean("chelsea")[60:108, 120:184]))
    b = write_image(folder / "b.jpg", np.ascontiguousarray(load_clean("coffee")[100:140, 200:240]))
    return a, b


def _tools_run(capsys, *argv):
    code = main(["tools", "run", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", FUNCTION_TOOLS)
def test_run_writes_what_the_tool_returns(name, photos, tmp_path, capsys):
    a, b = photos
    out = tmp_path / "out"
    code, stdout, err = _tools_run(capsys, name, a.parent, "-o", out, "--json")
    assert code == 0 and err == ""
    records = [json.loads(line) for line in stdout.splitlines()]
    assert [r["output"] for r in records] == [str(out / "a.png"), str(out / "b.png")]
    tool = get_tool(name)
    for record, src in zip(records, (a, b), strict=True):
        assert record["tool"] == name and record["input"] == str(src) and record["seconds"] >= 0
        assert np.array_equal(read_image(record["output"]), tool(read_image(src)))
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]  # no temporaries left


def test_run_prints_seconds_per_image_and_writes_one_file(photos, tmp_path, capsys):
    a, _ = photos
    target = tmp_path / "a_clahe.png"
    code, stdout, _ = _tools_run(capsys, "clahe", a, "-o", target)
    assert code == 0 and target.is_file()
    assert re.fullmatch(rf"{re.escape(str(a))}: clahe \d+\.\d{{3}} s -> {re.escape(str(target))}", stdout.strip())


def test_run_refuses_to_overwrite_unless_asked(photos, tmp_path, capsys):
    a, _ = photos
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"keep me")
    code, stdout, err = _tools_run(capsys, "clahe", a, "-o", out)
    assert code == 2 and stdout == "" and (out / "a.png").read_bytes() == b"keep me"
    assert err.strip().splitlines() == [f"restore-r1 tools: error: {out / 'a.png'} already exists; pass --overwrite to replace"]
    assert _tools_run(capsys, "clahe", a, "-o", out, "--overwrite")[0] == 0
    assert np.array_equal(read_image(out / "a.png"), get_tool("clahe")(read_image(a)))


def test_run_goes_on_past_bad_images(photos, tmp_path, capsys):
    a, _ = photos
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    code, stdout, err = _tools_run(capsys, "gamma_correction", bad, a, "-o", tmp_path / "out")
    assert code == 1 and "bad.png" in err and "1 of 2 item(s) failed" in err
    assert (tmp_path / "out" / "a.png").is_file() and not (tmp_path / "out" / "bad.png").exists()


def test_run_unknown_tool_is_one_line_with_close_matches(photos, tmp_path, capsys):
    code, _, err = _tools_run(capsys, "clahee", photos[0], "-o", tmp_path / "out")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "unknown tool 'clahee'" in lines[0] and "did you mean clahe" in lines[0]
    assert not (tmp_path / "out").exists()


def test_run_unavailable_tool_gives_the_reason(photos, tmp_path, capsys):
    tool = next(t for t in list_tools() if t.weights is not None)
    ok, reason = tool.availability()
    assert not ok
    code, _, err = _tools_run(capsys, tool.name, photos[0], "-o", tmp_path / "out")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1
    assert lines[0] == f"restore-r1 tools: error: tool {tool.name!r} is unavailable: {' '.join(reason.split())}"
    assert not (tmp_path / "out").exists()


def test_run_a_torchscript_tool_once_its_weights_exist(photos, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RESTORE_R1_WEIGHTS", str(tmp_path / "w"))
    (tmp_path / "w" / "dehazeformer_dehaze").mkdir(parents=True)
    torch.jit.save(torch.jit.script(torch.nn.Identity()), str(tmp_path / "w" / "dehazeformer_dehaze" / "dehazeformer_dehaze.pt"))
    a, _ = photos
    code, _, err = _tools_run(capsys, "dehazeformer_dehaze", a, "-o", tmp_path / "out.png")
    assert code == 0 and err == ""
    assert np.array_equal(read_image(tmp_path / "out.png"), read_image(a))  # an identity model


def test_list_is_the_default_action(capsys):
    assert main(["tools", "list", "--json", "--available"]) == 0
    explicit = json.loads(capsys.readouterr().out)
    assert main(["tools", "--json", "--available"]) == 0
    assert json.loads(capsys.readouterr().out) == explicit
