"""The versions of everything that touches pixels, read back from the running environment.

A tool's output depends on the numerical libraries under it: OpenCV 5 and OpenCV 4.11 give
different bytes for the same call, and numpy 2 promotes integer arithmetic differently from
numpy 1. The project therefore runs one set of versions everywhere a tool runs — the main venv,
the Triton venv, the component image and the serving image — written once in the repository's
``constraints.txt`` (the *pixel lock*). This module reads back what is installed, so that:

* an evaluation records the versions it ran with (``results.json``: ``pixel_versions``);
* the Triton model repository records the versions it was exported with (a ``pixel_versions``
  parameter of every model config), and each model compares them with its own environment at
  load: a difference refuses the model (the server does not become ready) unless
  :data:`ALLOW_MISMATCH_ENV` is set, in which case it is logged as an error on every load;
* the judge fit keys its feature cache on them (features computed under other versions are stale).
"""

from __future__ import annotations

import os
from importlib import metadata

#: Distributions whose versions decide a tool's bytes (PyPI names, as in ``constraints.txt``).
PIXEL_PACKAGES: tuple[str, ...] = ("numpy", "scipy", "opencv-python-headless", "scikit-image", "pillow", "torch", "torchvision", "spandrel")
#: What :func:`pixel_versions` reports for a distribution that is not installed.
ABSENT = "absent"
#: Set to ``1`` to serve despite a version difference (logged as an error, never silent).
ALLOW_MISMATCH_ENV = "RESTORE_R1_ALLOW_VERSION_MISMATCH"


def pixel_versions() -> dict[str, str]:
    """``{distribution: version}`` of :data:`PIXEL_PACKAGES` in this interpreter, as
    ``constraints.txt`` pins them: the public version, without a local label such as torch's
    ``+cu130`` (the same release as a CPU or a CUDA build; the classic tools never run on a GPU)."""
    out = {}
    for name in PIXEL_PACKAGES:
        try:
            out[name] = metadata.version(name).split("+")[0]
        except metadata.PackageNotFoundError:
            out[name] = ABSENT
    return out


def format_versions(versions: dict[str, str]) -> str:
    """``name==version,...`` in :data:`PIXEL_PACKAGES` order (a config-parameter string)."""
    return ",".join(f"{k}=={versions[k]}" for k in PIXEL_PACKAGES if k in versions)


def parse_versions(text: str) -> dict[str, str]:
    """Inverse of :func:`format_versions`.

    Raises:
        ValueError: an item is not ``name==version``.
    """
    out = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, sep, version = item.partition("==")
        if not sep or not name or not version:
            raise ValueError(f"pixel versions: {item!r} is not name==version (in {text!r})")
        out[name] = version
    return out


def version_differences(expected: dict[str, str], actual: dict[str, str] | None = None) -> list[str]:
    """``"name: expected X, running Y"`` for each package of ``expected`` that differs here."""
    actual = pixel_versions() if actual is None else actual
    return [f"{k}: expected {v}, running {actual.get(k, ABSENT)}" for k, v in expected.items() if actual.get(k, ABSENT) != v]


def check_versions(expected: dict[str, str], what: str, actual: dict[str, str] | None = None) -> list[str]:
    """Compares ``expected`` with this environment; returns the differences when
    :data:`ALLOW_MISMATCH_ENV` is ``1`` (the caller logs them), raises otherwise.

    Raises:
        RuntimeError: a difference, naming every package, ``what`` was made with, and the override.
    """
    diffs = version_differences(expected, actual)
    if diffs and os.environ.get(ALLOW_MISMATCH_ENV) != "1":
        raise RuntimeError(
            f"{what} was made with other pixel-library versions than this environment ({'; '.join(diffs)}): "
            f"its outputs would differ from the evaluated ones; install constraints.txt, or set {ALLOW_MISMATCH_ENV}=1 to serve anyway"
        )
    return diffs
