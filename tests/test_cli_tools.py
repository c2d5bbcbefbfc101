"""``restore-r1 tools``: table and JSON listings of the catalogue."""

from __future__ import annotations

import json

import torch

from restore_r1.cli import main
from restore_r1.tools import list_tools


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
    assert not fbcnn["available"] and "fbcnn_q5/fbcnn_q5.pt" in fbcnn["reason"]


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
