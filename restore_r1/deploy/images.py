"""Build the two images for real with podman (``make images``), from locally built bases.

    python -m restore_r1.deploy.images [--only component|serving] [--rebuild-bases]

The images are built from the project's own Dockerfiles; only their base (a build ARG) differs
from a registry build:

* ``docker/Dockerfile`` (the Kubeflow component image) gets ``PYTHON_IMAGE`` =
  :data:`BASE_PYTHON` (``docker/base/python.Dockerfile``: Debian bookworm's Python 3.11 in a venv,
  in place of ``python:3.11-slim-bookworm``);
* ``docker/serving.Dockerfile`` (the Triton serving image) gets ``TRITON_IMAGE`` =
  :data:`BASE_TRITON` (``docker/base/tritonserver.Dockerfile``: Debian bookworm with the
  tritonserver 2.51 of the nvidia-pytriton wheel, laid out as in NGC's 24.10 image).

Both bases stand on :data:`BASE_DEBIAN`, a Debian root file system built by ``mmdebstrap`` and
``podman import``-ed (an imported image has no environment: the import sets ``PATH``). Nothing is
pulled from an image registry. Debian's archive and PyPI are reached over the host's network.

pip inside a build sees the host's pip settings (``pip config list``: its index URLs, find-links,
constraints and CA bundle): :func:`pip_mounts` writes them into a pip.conf that the build ARG
``PIP_CONFIG_FILE`` names, and bind-mounts it and each local file or folder they name, read-only,
under :data:`HOST_IN_BUILD`; nothing of it lands in an image. So a wheel that lies on the host's
disk (torch, with its CUDA libraries) is installed from there rather than downloaded, and a TLS
proxy's CA is trusted; without such settings pip uses PyPI, as in a registry build.

podman reads ``docker/containers.conf`` (``$CONTAINERS_CONF``): runc, explicit ulimits. Images
are tagged ``<version>`` and ``<version>-<commit>`` (``-dirty`` when tracked files differ from the
commit); each holds its ``pip freeze`` (``/opt/restore-r1/pip-freeze.txt``). What was built, its
size and its build time go to ``.cache/images/build.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from restore_r1.errors import RestoreR1Error

#: Repository root (the Dockerfiles are not part of the package).
REPO_ROOT = Path(__file__).resolve().parents[2]
#: podman's settings for these builds and the e2e run.
CONTAINERS_CONF = REPO_ROOT / "docker" / "containers.conf"
#: Ignored folder for the root file system tarball, the generated pip.conf and the build report.
CACHE = REPO_ROOT / ".cache" / "images"
REPORT = CACHE / "build.json"
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
#: The imported Debian root file system, and the two bases built on it (docker/base/).
BASE_DEBIAN = f"localhost/restore-r1-base/debian:{DEBIAN_SUITE}"
BASE_PYTHON = f"localhost/restore-r1-base/python:3.11-{DEBIAN_SUITE}"
BASE_TRITON = f"localhost/restore-r1-base/tritonserver:2.51-{DEBIAN_SUITE}"
#: The two project images.
COMPONENT_REPOSITORY = "localhost/restore-r1"
SERVING_REPOSITORY = "localhost/restore-r1-triton"
#: What an imported image lacks: the environment Debian's own images set.
IMPORT_CHANGES = ("ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 'CMD ["/bin/bash"]')
#: Host tools the builds need (Debian packages of the same names).
HOST_TOOLS = ("podman", "runc", "mmdebstrap", "catatonit")
#: Free disk podman's storage needs for a build of the serving image (its last stage copies a 7 GB
#: venv, and the commit stages it once more): a build on 21 GB free failed with ENOSPC.
BUILD_NEED_GB = 25
#: Where a build sees the host's pip settings and the local paths they name (see :func:`pip_mounts`).
HOST_IN_BUILD = "/dev/restore-r1-host"


class ImageError(RestoreR1Error, RuntimeError):
    """A build step failed (the message names it and ends with the tool's last output lines)."""


@dataclass(frozen=True)
class ImageSpec:
    """One ``podman build``: what, from which Dockerfile and ignore file, with which ARGs."""

    name: str
    dockerfile: Path
    tags: tuple[str, ...]
    build_args: Mapping[str, str] = field(default_factory=dict)
    ignorefile: Path | None = None
    context: Path = REPO_ROOT


def podman_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment podman runs with: ``CONTAINERS_CONF`` names :data:`CONTAINERS_CONF`."""
    out = dict(os.environ if env is None else env)
    out["CONTAINERS_CONF"] = str(CONTAINERS_CONF)
    return out


def run(cmd: Sequence[str], *, what: str, capture: bool = False, log: Path | None = None, timeout: float | None = None) -> str:
    """Run ``cmd`` (podman with :func:`podman_env`); raise :class:`ImageError` naming ``what``."""
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as fh:
            proc = subprocess.run(list(cmd), env=podman_env(), stdout=fh, stderr=subprocess.STDOUT, timeout=timeout)
        if proc.returncode:
            tail = log.read_text(errors="replace").splitlines()[-15:]
            raise ImageError(f"{what} failed (exit {proc.returncode}; log {log}):\n" + "\n".join(tail))
        return ""
    proc = subprocess.run(list(cmd), env=podman_env(), capture_output=True, text=True, timeout=timeout)
    if proc.returncode:
        raise ImageError(f"{what} failed (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()[-2000:]}")
    return proc.stdout if capture else ""


def missing_host_tools(which=shutil.which) -> list[str]:
    """The :data:`HOST_TOOLS` not on ``PATH``."""
    return [tool for tool in HOST_TOOLS if which(tool) is None]


# -- version and tags ---------------------------------------------------------------------------


def project_version(root: Path = REPO_ROOT) -> str:
    """``project.version`` of pyproject.toml."""
    return tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]


def changed_paths(porcelain: str, ignore: Sequence[str] = ()) -> list[str]:
    """The tracked paths of ``git status --porcelain`` output (a rename's new name), less those
    starting with one of ``ignore``."""
    paths = [line[3:].split(" -> ")[-1] for line in porcelain.splitlines() if line.strip()]
    return [p for p in paths if not p.startswith(tuple(ignore))]


def git_commit(root: Path = REPO_ROOT, ignore: Sequence[str] = ()) -> str:
    """The short (12) commit of ``root``, ``-dirty`` appended when tracked files differ from it
    (changes under the folders ``ignore`` names, e.g. ``("bench/",)``, do not count)."""
    commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, check=True).stdout
    return commit + ("-dirty" if changed_paths(status, ignore) else "")


def image_tags(repository: str, version: str, commit: str) -> tuple[str, str]:
    """``repository:version`` and ``repository:version-commit``."""
    return f"{repository}:{version}", f"{repository}:{version}-{commit}"


# -- the host's pip settings inside a build -----------------------------------------------------

_CONFIG_LINE = re.compile(r"^(?P<section>[^.\s]*)\.(?P<key>[\w-]+)='(?P<value>.*)'$")


def parse_pip_config(listing: str) -> dict[str, dict[str, str]]:
    """``pip config list`` output as ``{section: {key: value}}``; ``:env:`` (``PIP_*`` variables)
    entries go to ``global``, where they take precedence as they do for pip itself."""
    out: dict[str, dict[str, str]] = {}
    env: dict[str, str] = {}
    for line in listing.splitlines():
        match = _CONFIG_LINE.match(line.strip())
        if not match:
            continue
        if match["section"] == ":env:":
            env[match["key"]] = match["value"]
        else:
            out.setdefault(match["section"], {})[match["key"]] = match["value"]
    if env:
        out.setdefault("global", {}).update(env)
    return out


def local_paths(settings: Mapping[str, Mapping[str, str]], exists=os.path.exists) -> list[str]:
    """The local paths to mount for the settings: each absolute path they name (plain or
    ``file://``, whitespace-separated lists included) that exists here, sorted, without duplicates.
    A PEP 503 index (``.../simple``) links its files relative to itself (``../../files/...``):
    its parent folder is mounted instead."""
    paths = set()
    for values in settings.values():
        for value in values.values():
            for token in value.split():
                path = os.path.normpath(token.removeprefix("file://")) if token.removeprefix("file://").startswith("/") else ""
                if path and exists(path):
                    paths.add(os.path.dirname(path) if token.startswith("file://") and os.path.basename(path) == "simple" else path)
    return sorted(paths)


def in_build(settings: Mapping[str, Mapping[str, str]], paths: Sequence[str]) -> dict[str, dict[str, str]]:
    """The settings with every local path at or under one of ``paths`` moved under :data:`HOST_IN_BUILD`."""

    def move(token: str) -> str:
        scheme = "file://" if token.startswith("file://") else ""
        path = os.path.normpath(token.removeprefix("file://"))
        inside = token.removeprefix("file://").startswith("/") and any(path == root or path.startswith(root.rstrip("/") + "/") for root in paths)
        return f"{scheme}{HOST_IN_BUILD}{path}" if inside else token

    return {section: {key: " ".join(move(t) for t in value.split()) for key, value in values.items()} for section, values in settings.items()}


def pip_conf_text(settings: Mapping[str, Mapping[str, str]]) -> str:
    """The settings as a pip.conf."""
    lines = ["# Generated by restore_r1.deploy.images from the host's `pip config list`; mounted only at build time."]
    for section in sorted(settings, key=lambda s: (s != "global", s)):
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {value}" for key, value in sorted(settings[section].items()))
    return "\n".join(lines) + "\n"


def pip_mounts(listing: str, conf_path: Path) -> tuple[list[str], dict[str, str]]:
    """What gives a build the host's pip settings: ``podman build`` ``-v`` options and build ARGs.

    Writes ``conf_path`` (the settings, their local paths moved under :data:`HOST_IN_BUILD`) and
    mounts it and every local path it names there, read-only; the ARG ``PIP_CONFIG_FILE`` (declared
    by the Dockerfiles' pip stages) names it. :data:`HOST_IN_BUILD` is under ``/dev``, the
    runtime's tmpfs, so not even an empty mount point lands in a layer. No settings: nothing."""
    settings = parse_pip_config(listing)
    if not settings:
        return [], {}
    paths = local_paths(settings)
    conf_path.parent.mkdir(parents=True, exist_ok=True)
    conf_path.write_text(pip_conf_text(in_build(settings, paths)))
    target = f"{HOST_IN_BUILD}/pip.conf"
    options = ["-v", f"{conf_path}:{target}:ro"]
    for path in paths:
        options += ["-v", f"{path}:{HOST_IN_BUILD}{path}:ro"]
    return options, {"PIP_CONFIG_FILE": target}


def host_pip_config() -> str:
    """``pip config list`` of this interpreter's pip ("" when pip cannot say)."""
    proc = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else ""


# -- podman -------------------------------------------------------------------------------------


def image_exists(ref: str) -> bool:
    return subprocess.run(["podman", "image", "exists", ref], env=podman_env()).returncode == 0


def image_size(ref: str) -> int:
    """The image's size in bytes, as ``podman images`` reports it (all layers, uncompressed)."""
    return int(run(["podman", "image", "inspect", "--format", "{{.Size}}", ref], what=f"podman image inspect {ref}", capture=True).strip())


def build_command(spec: ImageSpec, mounts: Sequence[str]) -> list[str]:
    """The ``podman build`` command line of ``spec``: host network, no registry pulls, the ignore
    file given explicitly (podman does not read Docker's ``<Dockerfile>.dockerignore``)."""
    cmd = ["podman", "build", "--network=host", "--pull=never", "--layers", "-f", str(spec.dockerfile)]
    if spec.ignorefile is not None:
        cmd += ["--ignorefile", str(spec.ignorefile)]
    for key, value in spec.build_args.items():
        cmd += ["--build-arg", f"{key}={value}"]
    for tag in spec.tags:
        cmd += ["-t", tag]
    return cmd + list(mounts) + [str(spec.context)]


def build(spec: ImageSpec, mounts: Sequence[str], pip_args: Mapping[str, str] | None = None) -> dict:
    """Build ``spec`` (with ``pip_args`` added to its ARGs); its tags, image id, size and build time."""
    cmd = build_command(ImageSpec(spec.name, spec.dockerfile, spec.tags, {**spec.build_args, **(pip_args or {})}, spec.ignorefile, spec.context), mounts)
    print(f"images: building {spec.tags[-1]}  ({shlex.join(cmd[:6])} ...)", flush=True)
    start = time.monotonic()
    run(["nice", "-n", "19", *cmd], what=f"podman build of {spec.name}", log=CACHE / f"{spec.name}.log")
    seconds = time.monotonic() - start
    image_id = run(["podman", "image", "inspect", "--format", "{{.Id}}", spec.tags[-1]], what="podman image inspect", capture=True).strip()
    size = image_size(spec.tags[-1])
    print(f"images: {spec.tags[-1]}: {size / 1e9:.2f} GB in {seconds:.0f} s", flush=True)
    return {"name": spec.name, "tags": list(spec.tags), "id": image_id, "size_bytes": size, "build_s": round(seconds, 1)}


def debian_rootfs(tarball: Path) -> float:
    """``mmdebstrap`` a minimal Debian root file system (with CA certificates) into ``tarball``;
    the seconds it took. ``/dev`` is left empty, as in images built by a container engine: the
    runtime provides it, and a ``/dev/shm`` in the image would hand its 0755 mode to the
    ``/dev/shm`` volume podman mounts over it (unwritable by the pod's non-root user)."""
    tarball.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    tmp = tarball.with_suffix(".tmp.tar")
    run(
        [
            "nice",
            "-n",
            "19",
            "mmdebstrap",
            "--variant=minbase",
            "--include=ca-certificates",
            "--mode=root",
            "--skip=output/dev",
            DEBIAN_SUITE,
            str(tmp),
            DEBIAN_MIRROR,
        ],
        what="mmdebstrap",
        log=CACHE / "mmdebstrap.log",
    )
    tmp.replace(tarball)
    return time.monotonic() - start


def import_debian(tarball: Path, ref: str = BASE_DEBIAN) -> None:
    """``podman import`` the root file system as ``ref`` with :data:`IMPORT_CHANGES`."""
    cmd = ["podman", "import"]
    for change in IMPORT_CHANGES:
        cmd += ["--change", change]
    run([*cmd, str(tarball), ref], what="podman import")


def base_specs() -> list[ImageSpec]:
    """The two bases, in build order."""
    base = REPO_ROOT / "docker" / "base"
    return [
        ImageSpec("base-python", base / "python.Dockerfile", (BASE_PYTHON,), {"DEBIAN_IMAGE": BASE_DEBIAN}, context=base),
        ImageSpec(
            "base-tritonserver", base / "tritonserver.Dockerfile", (BASE_TRITON,), {"DEBIAN_IMAGE": BASE_DEBIAN, "PYTHON_IMAGE": BASE_PYTHON}, context=base
        ),
    ]


def project_specs(version: str, commit: str) -> dict[str, ImageSpec]:
    """The component and serving images, tagged :func:`image_tags`."""
    docker = REPO_ROOT / "docker"
    args = {"VERSION": version, "GIT_COMMIT": commit}
    return {
        "component": ImageSpec(
            "component",
            docker / "Dockerfile",
            image_tags(COMPONENT_REPOSITORY, version, commit),
            {**args, "PYTHON_IMAGE": BASE_PYTHON},
            ignorefile=docker / "Dockerfile.dockerignore",
        ),
        "serving": ImageSpec(
            "serving",
            docker / "serving.Dockerfile",
            image_tags(SERVING_REPOSITORY, version, commit),
            {**args, "TRITON_IMAGE": BASE_TRITON},
            ignorefile=docker / "serving.Dockerfile.dockerignore",
        ),
    }


def graph_root() -> Path:
    """podman's image storage."""
    return Path(run(["podman", "info", "--format", "{{.Store.GraphRoot}}"], what="podman info", capture=True).strip())


def check_disk(need_gb: float = BUILD_NEED_GB, root: Path | None = None) -> None:
    """Raise :class:`ImageError` when ``root`` (podman's storage) has less than ``need_gb`` free."""
    root = root or graph_root()
    free = shutil.disk_usage(root if root.exists() else root.parent).free / 2**30
    if free < need_gb:
        raise ImageError(f"a build needs about {need_gb} GB free under {root}, {free:.0f} GB free (old images: podman images; podman rmi ...)")


def stale_tags(repositories: Sequence[str], keep: Sequence[str], listing: str) -> list[str]:
    """Tags of ``repositories`` in ``podman images --format {{.Repository}}:{{.Tag}}`` output that are
    not in ``keep``: the images of earlier commits, which hold several GB each."""
    refs = [line.strip() for line in listing.splitlines() if line.strip()]
    return [ref for ref in refs if ref.rsplit(":", 1)[0] in repositories and ref not in keep and not ref.endswith(":<none>")]


def build_all(only: Sequence[str] = ("component", "serving"), rebuild_bases: bool = False, reuse: bool = False) -> dict:
    """Build the bases and the project images; the report (also written to :data:`REPORT`). The
    Debian root file system is made and imported only when absent (or ``rebuild_bases``).
    ``reuse``: keep a project image that already carries this commit's tag."""
    missing = missing_host_tools()
    if missing:
        raise ImageError(f"the image builds need {', '.join(missing)} on PATH (Debian: apt-get install {' '.join(missing)}; `make container-tools`)")
    CACHE.mkdir(parents=True, exist_ok=True)
    version, commit = project_version(), git_commit()
    report: dict = {"version": version, "commit": commit, "bases": [], "images": {}}
    mounts, pip_args = pip_mounts(host_pip_config(), CACHE / "pip.conf")
    tarball = CACHE / f"debian-{DEBIAN_SUITE}.tar"
    if rebuild_bases or not image_exists(BASE_DEBIAN):
        seconds = debian_rootfs(tarball) if rebuild_bases or not tarball.exists() else 0.0
        import_debian(tarball)
        report["bases"].append({"name": "base-debian", "tags": [BASE_DEBIAN], "size_bytes": image_size(BASE_DEBIAN), "build_s": round(seconds, 1)})
    for spec in base_specs():  # always built: podman's layer cache makes an unchanged base a few seconds
        report["bases"].append(build(spec, mounts, pip_args))
    specs = project_specs(version, commit)
    for name, spec in specs.items():
        if name not in only:
            continue
        if not (reuse and image_exists(spec.tags[-1]) and not commit.endswith("-dirty")):
            check_disk()
        if reuse and image_exists(spec.tags[-1]) and not commit.endswith("-dirty"):
            print(f"images: reusing {spec.tags[-1]}", flush=True)
            report["images"][name] = {"name": name, "tags": list(spec.tags), "size_bytes": image_size(spec.tags[-1]), "build_s": None, "reused": True}
            continue
        report["images"][name] = build(spec, mounts, pip_args)
    keep = [tag for spec in specs.values() for tag in spec.tags]
    listing = run(["podman", "images", "--format", "{{.Repository}}:{{.Tag}}"], what="podman images", capture=True)
    for ref in stale_tags((COMPONENT_REPOSITORY, SERVING_REPOSITORY), keep, listing):
        print(f"images: removing {ref} (an earlier commit's)", flush=True)
        run(["podman", "rmi", ref], what=f"podman rmi {ref}")
    previous = json.loads(REPORT.read_text()) if REPORT.exists() else {}
    merged = {**previous, **report, "images": {**previous.get("images", {}), **report["images"]}}
    if not report["bases"]:
        merged["bases"] = previous.get("bases", [])
    REPORT.write_text(json.dumps(merged, indent=2) + "\n")
    return merged


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("component", "serving"), action="append", help="build only this image (repeatable)")
    parser.add_argument("--rebuild-bases", action="store_true", help="re-run mmdebstrap and rebuild the two bases")
    parser.add_argument("--reuse", action="store_true", help="keep an image that already carries this commit's tag")
    args = parser.parse_args(argv)
    try:
        build_all(tuple(args.only or ("component", "serving")), rebuild_bases=args.rebuild_bases, reuse=args.reuse)
    except ImageError as exc:
        print(f"images: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
