"""Builds paired data sets: clean photos degraded by the 15 cases of docs/method.md §3, or by free chains
of degradations in a given order (e.g. ``("noise", "jpeg")``).

Layout of an output folder::

    out/gt/<id>.png        the clean (possibly cropped) image
    out/lq/<id>.png        the degraded image
    out/manifest.jsonl     one JSON object per finished pair (fields: see ``build_dataset``)

Pair ids are ``<image stem>_c<case:02d>_<index:03d>`` for a case and
``<image stem>_<name+name>_<index:03d>`` for a chain (e.g. ``cat_noise+jpeg_000``). Every pair
draws from its own random generator, seeded by ``numpy.random.SeedSequence`` from (global seed,
source image name, case number or chain, index): adding cases, chains, images or more pairs per
case never changes the pairs already defined, and
a pair is byte-identical from run to run. The crop and the degradations use two independent
children of that sequence, so turning cropping on or off does not change the drawn parameters.

Restartable: images are written atomically (temporary file + rename), then the manifest line is
appended and fsynced. A pair is finished when its manifest line exists and both files exist;
re-running into the same folder skips finished pairs and redoes the rest, so an interrupted run
never leaves a truncated image at a final path and completes when run again. Do not run two
builds into the same folder at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from restore_r1.cleanimages import load_clean, split_names
from restore_r1.degradations import CASES, DEGRADATIONS, NO_DEGRADATION, apply_chain, get_case, parse_cases, parse_degradations
from restore_r1.depth import find_depth, load_depth
from restore_r1.errors import ImageError
from restore_r1.images import IMAGE_SUFFIXES, MIN_SIDE, list_images, read_image, write_image

MANIFEST_NAME = "manifest.jsonl"
LQ_DIR = "lq"
GT_DIR = "gt"


@dataclass
class SynthSummary:
    """What :func:`build_dataset` did.

    Attributes:
        out_dir: the output folder.
        sources: number of source images considered.
        pairs: number of pairs planned (sources × cases × per_case).
        written: pairs generated in this run.
        skipped: pairs already finished by an earlier run.
        failures: (source name, one-line message) for each source that could not be used; its
            pairs are neither written nor skipped.
        ignored: files in ``images_dir`` without an image suffix (not read).
    """

    out_dir: Path
    sources: int = 0
    pairs: int = 0
    written: int = 0
    skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    @property
    def manifest(self) -> Path:
        return self.out_dir / MANIFEST_NAME


@dataclass(frozen=True)
class _Source:
    name: str  # file name (folder input) or photo name (bundled); part of the seed
    stem: str  # first part of the pair ids
    load: Callable[[], np.ndarray]
    depth_path: Path | None = None


#: What degrades a pair: a case number (1..15) or a chain of degradation names in order.
Recipe = int | tuple[str, ...]
#: Marks a chain's entropy words apart from a case number's in the seed sequence ("CHAI").
CHAIN_SEED_TAG = 0x49414843


def chain_name(chain: Sequence[str]) -> str:
    """A chain as text, e.g. ``"noise+jpeg"`` (the form of a case's ``name``); ``"none"`` for
    the empty chain (clean pairs)."""
    return "+".join(chain) if chain else NO_DEGRADATION


def pair_id(stem: str, case: Recipe, index: int) -> str:
    """The id of a pair, e.g. ``astronaut_c03_000`` (case 3) or ``astronaut_noise+jpeg_000``."""
    if isinstance(case, tuple):
        return f"{stem}_{chain_name(case)}_{index:03d}"
    return f"{stem}_c{case:02d}_{index:03d}"


def _name_words(text: str) -> list[int]:
    """The first 16 bytes of the UTF-8 sha256 of ``text`` as four uint32 words."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()[:16]
    return [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]


def pair_seed_sequence(seed: int, source: str, case: Recipe, index: int) -> np.random.SeedSequence:
    """The seed sequence of one pair, from (global seed, source name, case or chain, index).

    The source name (and a chain's name) enters as the first 16 bytes of its UTF-8 sha256, so
    names of any length and alphabet give well-spread, platform-independent entropy. A chain's
    words follow :data:`CHAIN_SEED_TAG`, so a chain never shares a sequence with a case.
    """
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed {seed!r} must be a non-negative integer")
    recipe = [CHAIN_SEED_TAG, *_name_words(chain_name(case))] if isinstance(case, tuple) else [int(case)]
    return np.random.SeedSequence([int(seed), *_name_words(source), *recipe, int(index)])


def pair_rngs(seed: int, source: str, case: Recipe, index: int) -> tuple[np.random.Generator, np.random.Generator]:
    """(crop generator, degradation generator) of one pair; see :func:`pair_seed_sequence`."""
    crop_ss, degrade_ss = pair_seed_sequence(seed, source, case, index).spawn(2)
    return np.random.default_rng(crop_ss), np.random.default_rng(degrade_ss)


def _recipe_degradations(recipe: Recipe) -> tuple[str, ...]:
    return recipe if isinstance(recipe, tuple) else CASES[recipe].degradations


def crop_box(shape: tuple[int, ...], crop: int, rng: np.random.Generator) -> dict[str, int]:
    """A random crop of ``crop``×``crop`` pixels inside an image of ``shape`` (H, W, ...).

    A side shorter than ``crop`` is kept whole (an image smaller than ``crop`` is used whole).

    Returns:
        ``{"top", "left", "height", "width"}`` in pixels.
    """
    h, w = int(shape[0]), int(shape[1])
    ch, cw = min(h, crop), min(w, crop)
    top = int(rng.integers(0, h - ch + 1))
    left = int(rng.integers(0, w - cw + 1))
    return {"top": top, "left": left, "height": ch, "width": cw}


def _apply_box(arr: np.ndarray, box: dict[str, int] | None) -> np.ndarray:
    if box is None:
        return arr
    return np.ascontiguousarray(arr[box["top"] : box["top"] + box["height"], box["left"] : box["left"] + box["width"]])


# --- manifest -------------------------------------------------------------------------------------


def read_manifest(out_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of ``<out_dir>/manifest.jsonl`` (empty when absent).

    A truncated last line (a run killed while appending) is ignored; it is removed by the next
    :func:`build_dataset` into that folder.

    Raises:
        ValueError: a line other than the last is not valid JSON.
    """
    path = Path(out_dir) / MANIFEST_NAME
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    records: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if number == len(lines):  # no newline after it: an interrupted append
                break
            raise ValueError(f"{path}: line {number} is not valid JSON ({exc.msg})") from None
    return records


def _repair_manifest(path: Path) -> None:
    """Cuts a partial last line (no trailing newline) left by an interrupted append."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return
    keep = data.rfind(b"\n") + 1
    with open(path, "r+b") as fh:
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())


def _append_manifest(path: Path, record: dict[str, Any]) -> None:
    line = json.dumps(record, ensure_ascii=False) + "\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def _remove_stale_temporaries(folder: Path) -> None:
    """Deletes temporary files left by a killed :func:`restore_r1.images.write_image`."""
    if folder.is_dir():
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)


# --- sources --------------------------------------------------------------------------------------


def _folder_sources(images_dir: Path, depth_dir: Path | None, summary: SynthSummary) -> list[_Source]:
    paths = list_images(images_dir)
    summary.ignored = sorted(p.name for p in images_dir.iterdir() if p.is_file() and p not in set(paths) and not p.name.startswith("."))
    if not paths:
        raise ValueError(f"{images_dir}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    sources: list[_Source] = []
    seen: dict[str, str] = {}
    for path in paths:
        if path.stem in seen:
            summary.failures.append((path.name, f"{path.name}: same name stem as {seen[path.stem]}; pair ids would clash, rename one"))
            continue
        seen[path.stem] = path.name
        depth_path = find_depth(depth_dir, path.stem) if depth_dir is not None else None
        sources.append(_Source(path.name, path.stem, (lambda p=path: read_image(p)), depth_path))
    return sources


def _bundled_sources(split: str, depth_dir: Path | None) -> list[_Source]:
    return [_Source(name, name, (lambda n=name: load_clean(n)), find_depth(depth_dir, name) if depth_dir is not None else None) for name in split_names(split)]


def _check_compatible(records: Iterable[dict[str, Any]], seed: int, crop: int | None, out_dir: Path) -> None:
    for record in records:
        if record.get("seed") != seed or record.get("crop_size") != crop:
            raise ValueError(
                f"{out_dir} already holds pairs built with seed {record.get('seed')} and crop {record.get('crop_size')}, "
                f"not seed {seed} and crop {crop}; use another output folder or the same settings"
            )


# --- the build ------------------------------------------------------------------------------------


def build_dataset(
    out_dir: str | os.PathLike,
    images_dir: str | os.PathLike | None = None,
    cases: Sequence[int] | str | None = None,
    per_case: int = 1,
    seed: int = 0,
    crop: int | None = None,
    depth_dir: str | os.PathLike | None = None,
    progress: bool = True,
    split: str = "all",
    chains: Sequence[Sequence[str] | str] | None = None,
) -> SynthSummary:
    """Degrades every source image with every case and chain, ``per_case`` times.

    Each manifest line holds: ``id``, ``case`` (null for a chain), ``case_name`` (e.g.
    ``"dark+noise"``), ``setting`` ("I".."IV"; null for a chain), ``degradations`` (names in
    application order), ``params`` (the
    parameters each degradation drew, aligned with ``degradations``), ``seed``, ``index``,
    ``source`` (image name), ``crop`` (``{"top", "left", "height", "width"}`` or null),
    ``crop_size``, ``depth`` (depth file name used by haze, or null for the prior / no haze),
    ``lq`` and ``gt`` (paths relative to ``out_dir``).

    Args:
        out_dir: output folder (created; may hold an earlier run with the same seed and crop).
        images_dir: folder of clean images (files directly inside, by suffix); None uses the
            photos bundled with scikit-image (:mod:`restore_r1.cleanimages`).
        cases: case numbers, or text such as ``"1,3,9-12"``; None: all 15 unless ``chains``
            is given, then none.
        per_case: pairs per (image, case or chain), ≥ 1.
        seed: global seed, ≥ 0.
        crop: side of random square crops in pixels (≥ ``MIN_SIDE``), or None for whole
            images. A side shorter than ``crop`` is kept whole.
        depth_dir: folder of depth maps named after the image stems (``.npy``, ``.mat``,
            ``.png``); images without one, or all when None, use the depth prior.
        progress: show a tqdm bar on stderr.
        split: for the bundled photos only: "all", "train" or "heldout".
        chains: degradation chains, each applied in its order: names from
            ``DEGRADATION_TYPES`` (``("noise", "jpeg")``) or text (``"noise,jpeg"``).

    Returns:
        A :class:`SynthSummary`. Unreadable sources and depth maps are collected in
        ``failures`` and skipped.

    Raises:
        ValueError: bad arguments, or ``out_dir`` built with another seed or crop.
        KeyError: an unknown degradation name in ``chains`` (with close matches).
        FileNotFoundError: ``images_dir`` or ``depth_dir`` is not a folder.
    """
    recipes = _recipes(cases, chains)
    if isinstance(per_case, bool) or int(per_case) != per_case or per_case < 1:
        raise ValueError(f"per_case {per_case!r} must be a positive integer")
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ValueError(f"seed {seed!r} must be a non-negative integer")
    if crop is not None and (isinstance(crop, bool) or int(crop) != crop or crop < MIN_SIDE):
        raise ValueError(f"crop {crop!r} must be an integer ≥ {MIN_SIDE}")
    depth_folder = Path(depth_dir) if depth_dir is not None else None
    if depth_folder is not None and not depth_folder.is_dir():
        raise FileNotFoundError(f"{depth_folder}: no such depth directory")

    out = Path(out_dir)
    summary = SynthSummary(out_dir=out)
    if images_dir is None:
        sources = _bundled_sources(split, depth_folder)
    elif split != "all":
        raise ValueError(f"split {split!r} applies to the bundled photos only, not to {images_dir}")
    else:
        sources = _folder_sources(Path(images_dir), depth_folder, summary)
    summary.sources = len(sources) + len(summary.failures)

    (out / LQ_DIR).mkdir(parents=True, exist_ok=True)
    (out / GT_DIR).mkdir(parents=True, exist_ok=True)
    manifest = out / MANIFEST_NAME
    _repair_manifest(manifest)
    records = read_manifest(out)
    _check_compatible(records, int(seed), crop, out)
    recorded = {r.get("id") for r in records}
    for folder in (out / LQ_DIR, out / GT_DIR):
        _remove_stale_temporaries(folder)

    plan = [(r, i) for r in recipes for i in range(int(per_case))]
    summary.pairs = summary.sources * len(plan)
    needs_depth = any(DEGRADATIONS.get(n).uses_depth for r in recipes for n in _recipe_degradations(r))

    from tqdm import tqdm

    with tqdm(total=summary.pairs, desc="synth", unit="pair", file=sys.stderr, disable=not progress) as bar:
        bar.update(len(plan) * len(summary.failures))
        for source in sources:
            todo = [
                (c, i)
                for c, i in plan
                if not (
                    pair_id(source.stem, c, i) in recorded
                    and (out / LQ_DIR / f"{pair_id(source.stem, c, i)}.png").is_file()
                    and (out / GT_DIR / f"{pair_id(source.stem, c, i)}.png").is_file()
                )
            ]
            summary.skipped += len(plan) - len(todo)
            bar.update(len(plan) - len(todo))
            if not todo:
                continue
            try:
                img = source.load()
                depth = None
                if needs_depth and source.depth_path is not None:
                    depth = load_depth(source.depth_path, shape=img.shape[:2])
            except (ImageError, ValueError, OSError) as exc:
                summary.failures.append((source.name, _one_line(exc)))
                bar.update(len(todo))
                continue
            for case, index in todo:
                record = _make_pair(out, source, img, depth, case, index, int(seed), crop)
                if record["id"] not in recorded:
                    _append_manifest(manifest, record)
                    recorded.add(record["id"])
                summary.written += 1
                bar.update(1)
    return summary


def _recipes(cases: Sequence[int] | str | None, chains: Sequence[Sequence[str] | str] | None) -> list[Recipe]:
    """Case numbers (sorted, distinct) then chains (in the given order, distinct)."""
    if cases is None:
        case_numbers = [] if chains else sorted(CASES)
    elif isinstance(cases, str):
        case_numbers = parse_cases(cases)
    else:
        case_numbers = sorted({get_case(c).number for c in cases})
    parsed = [parse_degradations(c if isinstance(c, str) else ",".join(c) or NO_DEGRADATION) for c in chains or ()]
    recipes: list[Recipe] = [*case_numbers, *dict.fromkeys(parsed)]
    if not recipes:
        raise ValueError("no cases or degradation chains given")
    return recipes


def _make_pair(
    out: Path,
    source: _Source,
    img: np.ndarray,
    depth: np.ndarray | None,
    case: Recipe,
    index: int,
    seed: int,
    crop: int | None,
) -> dict[str, Any]:
    """Generates and writes one pair; returns its manifest record."""
    ident = pair_id(source.stem, case, index)
    crop_rng, degrade_rng = pair_rngs(seed, source.name, case, index)
    box = crop_box(img.shape, crop, crop_rng) if crop is not None else None
    gt = _apply_box(img, box)
    names = _recipe_degradations(case)
    if names:
        lq, steps = apply_chain(names, gt, degrade_rng, depth=_apply_box(depth, box) if depth is not None else None)
    else:  # the "none" chain: a clean pair
        lq, steps = gt.copy(), []
    lq_rel, gt_rel = f"{LQ_DIR}/{ident}.png", f"{GT_DIR}/{ident}.png"
    write_image(out / gt_rel, gt)
    write_image(out / lq_rel, lq)
    uses_haze = any(DEGRADATIONS.get(n).uses_depth for n in names)
    is_case = not isinstance(case, tuple)
    return {
        "id": ident,
        "case": case if is_case else None,
        "case_name": chain_name(names),
        "setting": CASES[case].setting if is_case else None,
        "degradations": list(names),
        "params": [step["params"] for step in steps],
        "seed": seed,
        "index": index,
        "source": source.name,
        "crop": box,
        "crop_size": crop,
        "depth": source.depth_path.name if (uses_haze and depth is not None and source.depth_path) else None,
        "lq": lq_rel,
        "gt": gt_rel,
    }


def _one_line(exc: BaseException) -> str:
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(str(text).split()) or type(exc).__name__
