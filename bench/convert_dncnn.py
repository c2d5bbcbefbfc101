"""Converts scico's trained DnCNN denoisers (flax msgpack, BSD-3) into the shipped safetensors.

scico's wheel carries ``scico/data/flax/dncnn<depth><L|M|H|N>.mpk``: ``flax.serialization``
msgpack of ``{"params": ..., "batch_stats": ...}`` in which every array is a msgpack extension
of type 1 whose payload is itself msgpack of ``(shape, dtype name, C-order bytes)``. This script
decodes that with ``msgpack`` alone (no jax, no flax), checks the tree is scico's ``DnCNNNet``,
and writes each tree leaf unchanged (float32, flax layout: kernels H×W×in×out, BatchNorm
scale/bias/mean/var) to ``<out>/dncnn<variant>.safetensors`` under its ``/``-joined path; the
PyTorch model is built from those arrays by :mod:`restore_r1.tools.dncnn`. It also writes
``weights.json`` (sha256 of every file, the wheel's sha256) and copies scico's licence.

    make dncnn-weights
    # or: pip download --no-deps scico==0.0.7 -d /tmp/scico
    #     python bench/convert_dncnn.py --wheel /tmp/scico/scico-0.0.7-py3-none-any.whl

Needs ``msgpack`` (the ``dev`` extra) and ``safetensors``; the runtime needs only the latter.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import zipfile
from pathlib import Path

import numpy as np

from restore_r1.tools.dncnn import (
    DNCNN_DATA_DIR,
    DNCNN_INDEX,
    DNCNN_LICENCE_FILE,
    SHIPPED_VARIANTS,
    check_variables,
    variant_info,
    weights_filename,
)

#: The scico release the shipped files come from (``make dncnn-weights`` downloads this one).
SCICO_VERSION = "0.0.7"
SCICO_WHEEL_SHA256 = "0fd6ba6b1d1e321d8bba39d8000ec1101fa6109db26a08f58af952c5e7cde4c1"
#: flax.serialization's msgpack extension codes (flax/serialization.py, ``_MsgpackExtType``).
EXT_NDARRAY = 1
EXT_NATIVE_COMPLEX = 2
EXT_NPSCALAR = 3


def _ext_hook(code: int, data: bytes):
    import msgpack

    if code == EXT_NDARRAY:
        shape, dtype_name, buffer = msgpack.unpackb(data, raw=True)
        return np.frombuffer(buffer, dtype=np.dtype(dtype_name.decode())).reshape(shape).copy()
    elif code == EXT_NPSCALAR:
        shape, dtype_name, buffer = msgpack.unpackb(data, raw=True)
        return np.frombuffer(buffer, dtype=np.dtype(dtype_name.decode()))[0]
    elif code == EXT_NATIVE_COMPLEX:
        real, imag = msgpack.unpackb(data, raw=True)
        return complex(real, imag)
    else:
        raise ValueError(f"unknown flax msgpack extension type {code}")


def decode_flax_msgpack(data: bytes) -> dict:
    """A flax ``msgpack_serialize`` byte string as nested dicts of numpy arrays."""
    import msgpack

    return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)


def flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    """Nested dicts -> ``{"params/conv_start/kernel": array, ...}`` (``/``-joined paths)."""
    flat: dict[str, np.ndarray] = {}
    for key, value in tree.items():
        path = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, dict):
            flat.update(flatten(value, path))
        elif isinstance(value, np.ndarray):
            flat[path] = np.ascontiguousarray(value)
        else:
            raise TypeError(f"{path}: expected an array, got {type(value).__name__}")
    return flat


def read_wheel_variables(wheel: Path, variant: str) -> dict[str, np.ndarray]:
    """The flattened variables of ``dncnn<variant>.mpk`` inside scico's wheel."""
    member = f"scico/data/flax/dncnn{variant}.mpk"
    with zipfile.ZipFile(wheel) as zf:
        try:
            data = zf.read(member)
        except KeyError:
            raise FileNotFoundError(f"{wheel} has no {member}") from None
    tree = decode_flax_msgpack(data)
    if set(tree) != {"params", "batch_stats"}:
        raise ValueError(f"{wheel}:{member}: top-level keys {sorted(tree)}, expected params and batch_stats")
    flat = flatten(tree)
    check_variables(flat, variant)
    return flat


def read_wheel_licence(wheel: Path) -> str:
    """scico's LICENSE from the wheel's dist-info."""
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if re.fullmatch(r"scico-[^/]+\.dist-info/(licenses/)?LICENSE", n)]
        if not names:
            raise FileNotFoundError(f"{wheel} has no dist-info LICENSE")
        return zf.read(names[0]).decode()


def safetensors_bytes(tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    """The safetensors file of float32 ``tensors``, byte for byte the same on every run.

    Written here because ``safetensors.numpy.save`` orders the metadata of its header by hash,
    which changes from run to run. Layout (the safetensors format): 8-byte little-endian header
    size, the JSON header (names sorted, padded with spaces to a multiple of 8), the C-order data.
    Checked by reading it back with ``safetensors``.
    """
    from safetensors.numpy import load

    header: dict[str, object] = {"__metadata__": dict(sorted(metadata.items()))}
    chunks, offset = [], 0
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name], dtype="<f4")
        if tensors[name].dtype != np.float32:
            raise ValueError(f"{name}: {tensors[name].dtype}, expected float32")
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, offset + arr.nbytes]}
        chunks.append(arr.tobytes())
        offset += arr.nbytes
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode()
    text += b" " * (-len(text) % 8)
    blob = len(text).to_bytes(8, "little") + text + b"".join(chunks)
    back = load(blob)
    if set(back) != set(tensors) or any(not np.array_equal(back[k], tensors[k]) for k in tensors):
        raise RuntimeError("safetensors round trip changed the tensors")
    return blob


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def convert(wheel: Path, out: Path, variants: tuple[str, ...] = SHIPPED_VARIANTS, expected_sha256: str = SCICO_WHEEL_SHA256) -> dict:
    """Writes the safetensors files, ``weights.json`` and the licence to ``out``; returns the index.

    Raises:
        ValueError: the wheel is not the pinned scico release, or a model is not scico's DnCNNNet.
    """
    wheel_sha = sha256_bytes(wheel.read_bytes())
    if wheel_sha != expected_sha256:
        raise ValueError(f"{wheel}: sha256 {wheel_sha} differs from scico {SCICO_VERSION}'s {expected_sha256}")
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("dncnn*.safetensors"):
        stale.unlink()
    files = {}
    for variant in variants:
        info = variant_info(variant)
        metadata = {
            "variant": variant,
            "depth": str(info.depth),
            "channels": str(info.channels),
            "train_sigma": "blind 0-0.2, sigma input" if info.train_sigma is None else f"{info.train_sigma:g}",
            "source": f"{wheel.name}:scico/data/flax/dncnn{variant}.mpk",
            "licence": "BSD-3-Clause, Copyright (c) 2021-2025, Los Alamos National Laboratory",
        }
        blob = safetensors_bytes(read_wheel_variables(wheel, variant), metadata)
        name = weights_filename(variant)
        (out / name).write_bytes(blob)
        files[name] = {"variant": variant, "sha256": sha256_bytes(blob), "bytes": len(blob)}
    (out / DNCNN_LICENCE_FILE).write_text(read_wheel_licence(wheel))
    index = {
        "source": {
            "package": "scico",
            "version": SCICO_VERSION,
            "wheel": wheel.name,
            "wheel_sha256": wheel_sha,
            "url": "https://pypi.org/project/scico/",
            "licence": "BSD-3-Clause (see " + DNCNN_LICENCE_FILE + ")",
        },
        "format": "safetensors, float32 flax variables under their /-joined tree paths (kernels H×W×in×out)",
        "command": "make dncnn-weights (python bench/convert_dncnn.py --wheel " + wheel.name + " --variants " + " ".join(variants) + ")",
        "files": files,
    }
    (out / DNCNN_INDEX).write_text(json.dumps(index, indent=2, ensure_ascii=False) + "\n")
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", required=True, type=Path, help=f"scico wheel (pip download --no-deps scico=={SCICO_VERSION})")
    parser.add_argument("--out", type=Path, default=DNCNN_DATA_DIR, help="folder to write (default: the package's)")
    parser.add_argument("--variants", nargs="+", default=list(SHIPPED_VARIANTS), help="variants to convert")
    args = parser.parse_args(argv)
    index = convert(args.wheel, args.out, tuple(args.variants))
    for name, entry in index["files"].items():
        sys.stdout.write(f"{args.out / name}: {entry['bytes']} bytes, sha256 {entry['sha256']}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
