"""``restore-r1 synth`` end to end, through ``restore_r1.cli.main``."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import restore_r1.cli as cli
from restore_r1.cleanimages import load_clean
from restore_r1.images import write_image
from restore_r1.synth import read_manifest


@pytest.fixture(autouse=True)
def _only_present_commands(monkeypatch):
    """Lets this test run while sibling command modules are still being written."""
    present = tuple(c for c in cli.COMMANDS if importlib.util.find_spec(f"restore_r1.cli.{c}") is not None)
    assert "synth" in present
    monkeypatch.setattr(cli, "COMMANDS", present)


@pytest.fixture
def images_dir(tmp_path):
    folder = tmp_path / "clean"
    write_image(folder / "cat.png", np.ascontiguousarray(load_clean("chelsea")[60:140, 120:220]))
    write_image(folder / "coffee.png", np.ascontiguousarray(load_clean("coffee")[100:180, 200:296]))
    return folder


def test_synth_end_to_end_and_rerun(tmp_path, images_dir, capsys):
    out = tmp_path / "out"
    argv = ["synth", "--images", str(images_dir), "--out", str(out), "--cases", "1,9-10", "--per-case", "1",
            "--seed", "2", "--crop", "64", "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 0
    stdout = capsys.readouterr().out
    assert "6 pair(s) written" in stdout and "0 of 2 image(s) failed" in stdout
    records = read_manifest(out)
    assert sorted(r["case"] for r in records) == [1, 1, 9, 9, 10, 10]
    assert all((out / r["lq"]).is_file() and (out / r["gt"]).is_file() for r in records)
    assert cli.main(argv) == 0
    assert "0 pair(s) written, 6 already done" in capsys.readouterr().out


def test_synth_reports_bad_inputs_and_goes_on(tmp_path, images_dir, capsys):
    good = (images_dir / "cat.png").read_bytes()
    (images_dir / "broken.png").write_bytes(good[:200])
    (images_dir / "letter.jpg").write_text("Dear reader, this is not a JPEG.")
    (images_dir / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    code = cli.main(["synth", "--images", str(images_dir), "--out", str(out), "--cases", "4", "--crop", "64"])
    captured = capsys.readouterr()
    assert code == cli.EXIT_FAILED_ITEMS
    assert "2 of 4 item(s) failed" in captured.err
    assert "broken.png" in captured.err and "letter.jpg" in captured.err
    assert "notes.txt" in captured.err  # listed as ignored
    assert "2 pair(s) written" in captured.out
    assert sorted(r["source"] for r in read_manifest(out)) == ["cat.png", "coffee.png"]


def test_synth_degradation_chain_from_a_photo_folder(tmp_path, images_dir, capsys):
    out = tmp_path / "out"
    argv = ["synth", "--images", str(images_dir), "--out", str(out), "--degradations", "rain,noise", "--crop", "64",
            "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 0
    assert "2 pair(s) written" in capsys.readouterr().out
    records = read_manifest(out)
    assert [r["degradations"] for r in records] == [["rain", "noise"]] * 2 and {r["case"] for r in records} == {None}
    # several chains, and cases too when asked for
    assert cli.main([*argv, "--degradations", "dark", "--cases", "2"]) == 0
    assert "4 pair(s) written, 2 already done" in capsys.readouterr().out
    assert {r["case_name"] for r in read_manifest(out)} == {"rain+noise", "dark", "defocus_blur+jpeg"}


@pytest.mark.parametrize("chain, message", [("noise,jpgg", "did you mean jpeg?"), ("blur", "unknown degradation 'blur'")])
def test_synth_unknown_degradation_is_one_line_with_suggestions(tmp_path, capsys, chain, message):
    code = cli.main(["synth", "--out", str(tmp_path / "out"), "--degradations", chain, "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == cli.EXIT_ERROR and len(err) == 1 and message in err[0]
    assert not (tmp_path / "out").exists()


def test_synth_bundled_default_split(tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["synth", "--out", str(out), "--split", "heldout", "--cases", "2", "--crop", "32", "--no-progress"]) == 0
    assert {r["source"] for r in read_manifest(out)} == {"coffee", "rocket"}


@pytest.mark.parametrize(
    "extra, message",
    [(["--cases", "3-1"], "3 > 1"), (["--cases", "16"], "out of range"), (["--images", "/nonexistent/dir"], "no such directory")],
)
def test_synth_bad_arguments_exit_2(tmp_path, capsys, extra, message):
    code = cli.main(["synth", "--out", str(tmp_path / "out"), "--no-progress", *extra])
    assert code == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_synth_rejects_bad_numbers(tmp_path):
    with pytest.raises(SystemExit):
        cli.main(["synth", "--out", str(tmp_path / "out"), "--per-case", "0"])


def test_synth_none_makes_clean_pairs(tmp_path, images_dir, capsys):
    out = tmp_path / "out"
    assert cli.main(["synth", "--images", str(images_dir), "--degradations", "none", "--crop", "48", "--out", str(out), "--no-progress"]) == 0
    lq = sorted((out / "lq").iterdir())
    assert lq and all(p.read_bytes() == (out / "gt" / p.name).read_bytes() for p in lq)
    assert "chain none" in capsys.readouterr().out
