"""Reading, checking and writing images.

Every layer works on ``uint8`` RGB arrays of shape H×W×3. This module is the one place that
turns files into such arrays, so bad input is handled in one way everywhere:

* unreadable, truncated or non-image files, 16-bit images, images smaller than
  ``MIN_SIDE`` on a side and images above the pixel limit raise :class:`ImageError`;
* grayscale images are converted to RGB (the channel replicated) and RGBA / LA images are
  composited onto white and the alpha dropped — a restoration tool has no use for alpha and a
  user who passes a PNG with transparency expects the picture they see in a viewer.

Files are written atomically (temporary file in the same folder, then ``os.replace``), so a
killed job never leaves a truncated image at a final path.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from restore_r1.errors import ImageError

#: Smallest accepted side in pixels; the 8×8 CLAHE tiles, 17×17 blur kernels and NIQE's
#: patches need a few pixels to work on.
MIN_SIDE = 16
#: Default largest accepted image, in pixels (64 MP); override with ``max_pixels`` or the
#: environment variable below.
DEFAULT_MAX_PIXELS = 64 * 1024 * 1024
MAX_PIXELS_ENV = "RESTORE_R1_MAX_PIXELS"
#: File suffix -> the PIL format :func:`write_image` encodes it as.
IMAGE_FORMATS: dict[str, str] = {
    ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP",
}  # fmt: skip
#: File suffixes treated as images when a folder is scanned (the ones written, too).
IMAGE_SUFFIXES = tuple(IMAGE_FORMATS)


def max_pixels_default() -> int:
    """The pixel limit: ``$RESTORE_R1_MAX_PIXELS`` when set, else ``DEFAULT_MAX_PIXELS``."""
    raw = os.environ.get(MAX_PIXELS_ENV)
    if raw is None:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{MAX_PIXELS_ENV}={raw!r} is not an integer") from None
    if value <= 0:
        raise ValueError(f"{MAX_PIXELS_ENV}={value} must be positive")
    return value


def check_rgb(img: np.ndarray, name: str = "image") -> np.ndarray:
    """Checks the library-wide image contract and returns ``img`` unchanged.

    Args:
        img: expected ``uint8`` RGB, H×W×3.
        name: how to call the array in the error message.

    Raises:
        ImageError: wrong type, dtype, shape or a side below ``MIN_SIDE``.
    """
    if not isinstance(img, np.ndarray):
        raise ImageError(f"{name}: expected a numpy array, got {type(img).__name__}")
    if img.dtype != np.uint8:
        raise ImageError(f"{name}: expected dtype uint8, got {img.dtype}")
    if img.ndim != 3 or img.shape[2] != 3:
        raise ImageError(f"{name}: expected shape H×W×3, got {img.shape}")
    if min(img.shape[:2]) < MIN_SIDE:
        raise ImageError(f"{name}: {img.shape[1]}×{img.shape[0]} is smaller than {MIN_SIDE}×{MIN_SIDE}")
    return img


def to_rgb(img: np.ndarray, name: str = "image") -> np.ndarray:
    """Converts an 8-bit gray, gray+alpha, RGB or RGBA array to uint8 RGB H×W×3.

    Alpha is composited onto white. Other dtypes raise :class:`ImageError`.
    """
    if img.dtype != np.uint8:
        raise ImageError(f"{name}: {img.dtype} pixels are not supported; convert to 8-bit first")
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4):
        raise ImageError(f"{name}: cannot interpret an array of shape {img.shape} as an image")
    channels = img.shape[2]
    if channels in (2, 4):
        colour, alpha = img[:, :, :-1].astype(np.float32), img[:, :, -1:].astype(np.float32) / 255.0
        img = np.clip(colour * alpha + 255.0 * (1.0 - alpha) + 0.5, 0, 255).astype(np.uint8)
        channels -= 1
    if channels == 1:
        img = np.repeat(img, 3, axis=2)
    return np.ascontiguousarray(img)


def read_image(path: str | os.PathLike, max_pixels: int | None = None) -> np.ndarray:
    """Reads an image file as uint8 RGB H×W×3.

    Args:
        path: the file.
        max_pixels: largest accepted width×height; ``None`` uses :func:`max_pixels_default`.

    Raises:
        ImageError: the file is missing, unreadable, truncated, not an image, 16-bit, too
            small or too large. The message starts with the path.
    """
    path = Path(path)
    limit = max_pixels_default() if max_pixels is None else max_pixels
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():
            # PIL's own decompression-bomb guard is replaced by our explicit limit below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            saved_limit = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
            try:
                with Image.open(path) as im:
                    width, height = im.size
                    if width * height > limit:
                        raise ImageError(
                            f"{path}: {width}×{height} = {width * height} pixels exceeds the limit of {limit} (set --max-pixels or ${MAX_PIXELS_ENV})"
                        )
                    if min(width, height) < MIN_SIDE:
                        raise ImageError(f"{path}: {width}×{height} is smaller than {MIN_SIDE}×{MIN_SIDE}")
                    mode = im.mode
                    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F") or (
                        im.info.get("bitdepth", 8) not in (None, 8) and mode not in ("P", "1", "L", "RGB", "RGBA")
                    ):
                        raise ImageError(f"{path}: {mode} ({_describe_mode(mode)}) is not supported; convert to 8-bit RGB")
                    if mode == "P":
                        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                    elif mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
                        im = im.convert("RGB")
                    elif mode not in ("L", "LA", "RGB", "RGBA"):
                        raise ImageError(f"{path}: image mode {mode} is not supported; convert to 8-bit RGB")
                    im.load()
                    arr = np.asarray(im)
            finally:
                Image.MAX_IMAGE_PIXELS = saved_limit
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{path}: not a readable image ({_one_line(exc)})") from None
    return to_rgb(arr, name=str(path))


def _describe_mode(mode: str) -> str:
    return {"I;16": "16-bit", "I;16B": "16-bit", "I;16L": "16-bit", "I;16N": "16-bit", "I": "32-bit integer", "F": "32-bit float"}.get(mode, mode)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def encode_image(img: np.ndarray, suffix: str = ".png") -> bytes:
    """Encodes uint8 RGB H×W×3 as PNG (lossless, deterministic) or JPEG (quality 95)."""
    import io

    check_rgb(img)
    buf = io.BytesIO()
    try:
        kind = IMAGE_FORMATS[suffix.lower()]
    except KeyError:
        raise ValueError(f"cannot write images with suffix {suffix!r}; use one of {sorted(IMAGE_FORMATS)}") from None
    options = {"quality": 95} if kind in ("JPEG", "WEBP") else {}
    Image.fromarray(img, mode="RGB").save(buf, format=kind, **options)
    return buf.getvalue()


def _process_umask() -> int:
    """The process umask (``os.umask`` can only be read by setting it, so it is set back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: Read once at import: reading it sets it for a moment, which is not safe while threads create files.
_UMASK = _process_umask()


def atomic_write_bytes(path: str | os.PathLike, data: bytes, overwrite: bool = True) -> Path:
    """Writes ``data`` to ``path`` atomically: a reader sees the old file or the whole new one.

    Args:
        path: the final file.
        data: its bytes.
        overwrite: replace an existing ``path``; when False the final step is a hard link, which
            fails if ``path`` exists, so even a file created meanwhile is kept.

    Raises:
        FileExistsError: ``overwrite`` is False and ``path`` exists.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file 0600; give it the mode open() would (0666 less the umask).
        if hasattr(os, "fchmod"):  # POSIX; Windows has no such mode bits
            os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            _link_if_absent(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def _link_if_absent(tmp: str, path: Path) -> None:
    """Moves ``tmp`` to ``path`` unless ``path`` exists, atomically where hard links work."""
    try:
        os.link(tmp, path)  # atomic, and fails if ``path`` exists
    except FileExistsError:
        raise FileExistsError(f"{path} already exists") from None
    except OSError:
        # No hard links here (FAT, some network file systems): check, then rename; a file
        # created between the two steps would be replaced, which no single call can prevent there.
        if os.path.lexists(path):
            raise FileExistsError(f"{path} already exists") from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def replace_directory(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Moves folder ``src`` to ``dst`` after fsyncing it and its entries, replacing an existing
    ``dst`` (moved aside first and removed after), so readers see the old folder or the new one."""
    src, dst = Path(src), Path(dst)
    for path in (src, *src.iterdir()):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    if dst.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".old", dir=dst.parent))
        os.replace(dst, old / dst.name)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)
    return dst


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike):
    """Builds a folder atomically: yields a temporary sibling of ``target`` to fill; on success it
    replaces ``target`` (:func:`replace_directory`), on any error it is removed and ``target`` is
    left as it was."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        replace_directory(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_image(path: str | os.PathLike, img: np.ndarray, overwrite: bool = True) -> Path:
    """Writes uint8 RGB H×W×3 to ``path`` atomically; the format follows the suffix.

    Raises:
        FileExistsError: ``overwrite`` is False and ``path`` exists.
    """
    path = Path(path)
    return atomic_write_bytes(path, encode_image(img, path.suffix or ".png"), overwrite=overwrite)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside ``folder`` (by suffix), sorted by name.

    Raises:
        FileNotFoundError: ``folder`` is not a directory.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such directory")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def image_digest(img: np.ndarray) -> str:
    """Hex sha256 of an array's shape, dtype and bytes (cache keys, determinism checks)."""
    h = hashlib.sha256()
    h.update(f"{img.shape}|{img.dtype}".encode())
    h.update(np.ascontiguousarray(img).tobytes())
    return h.hexdigest()
