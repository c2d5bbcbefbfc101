"""Clean colour photographs bundled with scikit-image, split once into train and held-out sets.

These are the only natural colour photos that ``skimage.data`` ships inside the wheel (no pooch
download, so they load offline): ``astronaut`` (512×512), ``chelsea`` (451×300), ``coffee``
(600×400), ``rocket`` (640×427) and the stereo pair ``motorcycle_left`` / ``motorcycle_right``
(741×500). Left out on purpose: ``hubble_deep_field`` (astronomy, mostly black), ``retina`` and
``immunohistochemistry`` (medical/microscopy), and the synthetic or grey images.

The split is fixed (never random) so held-out photos are never used in training:

* ``TRAIN_NAMES``: astronaut, chelsea, motorcycle_left, motorcycle_right — the two halves of the
  stereo pair show the same scene, so they stay on the same side;
* ``HELDOUT_NAMES``: coffee, rocket (2 of 6 photos, two distinct scenes: indoor close-up and
  outdoor landscape).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from restore_r1.images import check_rgb, to_rgb, write_image

#: Photos used for training (fixed; see the module docstring).
TRAIN_NAMES: tuple[str, ...] = ("astronaut", "chelsea", "motorcycle_left", "motorcycle_right")
#: Photos never used in training.
HELDOUT_NAMES: tuple[str, ...] = ("coffee", "rocket")
#: All bundled photos, train first.
ALL_NAMES: tuple[str, ...] = TRAIN_NAMES + HELDOUT_NAMES
#: Split names accepted by :func:`split_names` and :func:`export_clean`.
SPLITS: tuple[str, ...] = ("all", "train", "heldout")


def _loaders() -> dict[str, Callable[[], np.ndarray]]:
    from skimage import data

    return {
        "astronaut": data.astronaut,
        "chelsea": data.chelsea,
        "coffee": data.coffee,
        "rocket": data.rocket,
        "motorcycle_left": lambda: data.stereo_motorcycle()[0],
        "motorcycle_right": lambda: data.stereo_motorcycle()[1],
    }


def split_names(split: str = "all") -> tuple[str, ...]:
    """The photo names of ``split`` ("all", "train" or "heldout")."""
    if split == "all":
        return ALL_NAMES
    elif split == "train":
        return TRAIN_NAMES
    elif split == "heldout":
        return HELDOUT_NAMES
    else:
        raise ValueError(f"unknown split {split!r}; use one of {list(SPLITS)}")


def load_clean(name: str) -> np.ndarray:
    """Loads a bundled photo.

    Args:
        name: one of ``ALL_NAMES``.

    Returns:
        uint8 RGB, H×W×3.

    Raises:
        KeyError: unknown name.
    """
    loaders = _loaders()
    if name not in loaders:
        import difflib

        close = difflib.get_close_matches(str(name), list(loaders), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown clean image {name!r}{hint} (available: {', '.join(ALL_NAMES)})")
    return check_rgb(to_rgb(np.ascontiguousarray(loaders[name]()), name=name), name=name)


def export_clean(out_dir: str | os.PathLike, split: str = "all") -> list[Path]:
    """Writes the photos of ``split`` as ``<out_dir>/<name>.png`` (atomically).

    Returns:
        The written paths, in ``split_names(split)`` order.
    """
    names = split_names(split)
    out = Path(out_dir)
    return [write_image(out / f"{name}.png", load_clean(name)) for name in names]
