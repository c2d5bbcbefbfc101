"""The image contract and the bad-input policy of restore_r1.images."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from restore_r1.errors import ImageError
from restore_r1.images import (
    MIN_SIDE,
    atomic_write_bytes,
    check_rgb,
    image_digest,
    list_images,
    read_image,
    to_rgb,
    write_image,
)


def _rgb(h=32, w=40, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_png_round_trip_is_exact(tmp_path):
    img = _rgb()
    path = write_image(tmp_path / "a.png", img)
    np.testing.assert_array_equal(read_image(path), img)


def test_grayscale_is_replicated_to_rgb(tmp_path):
    gray = _rgb()[:, :, 0]
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.shape == (32, 40, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray)


def test_rgba_is_composited_onto_white(tmp_path):
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:16, :, 3] = 255  # top half opaque red-ish, bottom transparent
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    np.testing.assert_array_equal(out[0, 0], [200, 0, 0])
    np.testing.assert_array_equal(out[-1, -1], [255, 255, 255])


def test_half_alpha_blends():
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 3] = 128
    out = to_rgb(rgba)
    assert abs(int(out[0, 0, 0]) - round(255 * (1 - 128 / 255))) <= 1


@pytest.mark.parametrize(
    "writer, message",
    [
        (lambda p: p.write_bytes(b"this is not an image at all"), "not a readable image"),
        (lambda p: p.write_bytes(b""), "not a readable image"),
    ],
)
def test_non_image_bytes(tmp_path, writer, message):
    path = tmp_path / "bad.png"
    writer(path)
    with pytest.raises(ImageError, match=message):
        read_image(path)


def test_truncated_png(tmp_path):
    write_image(tmp_path / "full.png", _rgb(64, 64))
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cut.png"):
        read_image(tmp_path / "cut.png")


def test_truncated_jpeg(tmp_path):
    Image.fromarray(_rgb(64, 64)).save(tmp_path / "full.jpg", quality=90)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cut.jpg"):
        read_image(tmp_path / "cut.jpg")


def test_16_bit_is_refused(tmp_path):
    arr = (np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 60).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "deep.png")
    with pytest.raises(ImageError, match="16-bit"):
        read_image(tmp_path / "deep.png")


def test_tiny_image_is_refused(tmp_path):
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(tmp_path / "dot.png")
    with pytest.raises(ImageError, match="smaller than"):
        read_image(tmp_path / "dot.png")


def test_pixel_limit_is_checked_before_decoding(tmp_path, monkeypatch):
    write_image(tmp_path / "big.png", _rgb(64, 64))
    with pytest.raises(ImageError, match="exceeds the limit of 1000"):
        read_image(tmp_path / "big.png", max_pixels=1000)
    monkeypatch.setenv("RESTORE_R1_MAX_PIXELS", "4000")
    with pytest.raises(ImageError, match="exceeds the limit of 4000"):
        read_image(tmp_path / "big.png")
    monkeypatch.setenv("RESTORE_R1_MAX_PIXELS", "lots")
    with pytest.raises(ValueError, match="not an integer"):
        read_image(tmp_path / "big.png")


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        read_image(tmp_path / "nope.png")


@pytest.mark.parametrize(
    "arr, message",
    [
        (np.zeros((32, 32, 3), np.float32), "dtype uint8"),
        (np.zeros((32, 32), np.uint8), "H×W×3"),
        (np.zeros((32, 32, 4), np.uint8), "H×W×3"),
        (np.zeros((MIN_SIDE - 1, 32, 3), np.uint8), "smaller than"),
        ([[1, 2, 3]], "numpy array"),
    ],
)
def test_check_rgb(arr, message):
    with pytest.raises(ImageError, match=message):
        check_rgb(arr)


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "out.bin"
    atomic_write_bytes(target, b"old")

    import os

    def boom(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


@pytest.mark.parametrize("links", [True, False], ids=["hard-link", "no-hard-links"])
def test_write_without_overwrite_keeps_an_existing_file(tmp_path, monkeypatch, links):
    import os

    if not links:  # a file system without hard links (FAT, some network mounts)

        def no_link(*_args, **_kwargs):
            raise PermissionError("operation not permitted")

        monkeypatch.setattr(os, "link", no_link)
    target = tmp_path / "out.png"
    assert write_image(target, _rgb(), overwrite=False) == target  # absent: written
    assert np.array_equal(read_image(target), _rgb())
    target.write_bytes(b"old")
    with pytest.raises(FileExistsError, match="out.png already exists"):
        write_image(target, _rgb(), overwrite=False)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]  # no temporary left behind
    write_image(target, _rgb())  # the default replaces it
    assert np.array_equal(read_image(target), _rgb())


def test_written_files_get_the_usual_mode(tmp_path):
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    path = write_image(tmp_path / "a.png", _rgb())
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    assert os.stat(path).st_mode & 0o777 == os.stat(plain).st_mode & 0o777 == 0o666 & ~mask


def test_list_images_and_digest(tmp_path):
    write_image(tmp_path / "b.png", _rgb())
    write_image(tmp_path / "a.jpg", _rgb())
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.png"]
    assert image_digest(_rgb(seed=1)) == image_digest(_rgb(seed=1))
    assert image_digest(_rgb(seed=1)) != image_digest(_rgb(seed=2))
    with pytest.raises(FileNotFoundError):
        list_images(tmp_path / "missing")


def test_atomic_directory_replaces_whole_or_not_at_all(tmp_path):
    from restore_r1.images import atomic_directory

    target = tmp_path / "ckpt"
    with atomic_directory(target) as tmp:
        (tmp / "a.txt").write_text("v1")
    assert (target / "a.txt").read_text() == "v1"
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_directory(target) as tmp:
            (tmp / "a.txt").write_text("v2-partial")
            raise RuntimeError("killed")
    assert (target / "a.txt").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temporary left behind
    with atomic_directory(target) as tmp:
        (tmp / "b.txt").write_text("v3")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
