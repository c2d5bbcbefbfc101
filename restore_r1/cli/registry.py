"""``restore-r1 registry``: list, show, promote, pull and publish model versions.

    restore-r1 registry list [NAME] [--json]
    restore-r1 registry show NAME[@REF] [--json]
    restore-r1 registry promote NAME@VERSION --to production|staging
    restore-r1 registry pull NAME[@REF] [--out DIR]
    restore-r1 registry publish POLICY_DIR --name NAME [--metrics results.json] [--stage STAGE]
    restore-r1 registry publish-vlm MODEL_DIR --name NAME [--stage STAGE]
    restore-r1 registry publish-tool TOOL [--name NAME] [--stage STAGE]
    restore-r1 registry gc NAME [--min-age-hours 24] [--dry-run]

NAME may be written ``registry://NAME@REF``; REF is a version number, a stage or ``latest``
(default: production for pull, latest for show). ``publish`` takes a policy folder of either
planner kind and records the kind as the version's format (``restore_r1.policy`` for an MLP
policy, ``restore_r1.vlm_planner`` for a VLM planner); ``publish-vlm`` publishes a base
transformers vision-language model folder to train a VLM planner from
(``restore-r1 train --planner vlm --vlm-model registry://NAME@REF``). ``publish-tool`` verifies a tool's installed
weights file (``restore-r1 weights add``) and publishes it as ``tool-<TOOL>``; pods install it with
``restore-r1 weights pull TOOL``. The registry is ``--registry`` or
``$RESTORE_R1_REGISTRY`` (a folder or ``s3://bucket/prefix``; ``--endpoint`` or
``$RESTORE_R1_S3_ENDPOINT`` for MinIO).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

NAME = "registry"
HELP = "list, show, promote, pull and publish model versions (policies, tool weights) in the registry; collect its garbage"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from restore_r1.registry import DEFAULT_REGISTRY_DIR, REGISTRY_ENV, STAGES

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--registry", metavar="LOCATION", help=f"folder or s3://bucket/prefix (default ${REGISTRY_ENV} or {DEFAULT_REGISTRY_DIR})")
    common.add_argument("--endpoint", metavar="URL", help="S3 endpoint URL, e.g. MinIO's (default $RESTORE_R1_S3_ENDPOINT / $AWS_ENDPOINT_URL)")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("list", parents=[common], help="models, or the versions of one model")
    p.add_argument("name", nargs="?", help="model name (default: list the models)")
    p.add_argument("--json", action="store_true", help="JSON on stdout")
    p = sub.add_parser("show", parents=[common], help="one version: files, sha256, metrics, parameters, data set, run")
    p.add_argument("ref", metavar="NAME[@REF]")
    p.add_argument("--json", action="store_true", help="JSON on stdout")
    p = sub.add_parser("promote", parents=[common], help="point a stage at a version")
    p.add_argument("ref", metavar="NAME@VERSION")
    p.add_argument("--to", required=True, choices=STAGES, help="the stage")
    p = sub.add_parser("pull", parents=[common], help="download a version (verified by sha256)")
    p.add_argument("ref", metavar="NAME[@REF]")
    p.add_argument("--out", metavar="DIR", help="target folder (default: the registry cache)")
    p = sub.add_parser("publish", parents=[common], help="publish a policy folder (MLP policy or VLM planner) as a new version")
    p.add_argument("source", metavar="POLICY_DIR")
    p.add_argument("--name", required=True, help="model name")
    p.add_argument("--metrics", metavar="RESULTS_JSON", help="an evaluation's results.json: its policy metrics are recorded")
    p.add_argument("--stage", choices=STAGES, help="also point this stage at the new version")
    p.add_argument("--description", default="", help="free text")
    p = sub.add_parser("publish-vlm", parents=[common], help="publish a base vision-language model folder (to train a VLM planner from)")
    p.add_argument("source", metavar="MODEL_DIR", help="a local transformers folder (config.json, weights, processor files)")
    p.add_argument("--name", required=True, help="model name")
    p.add_argument("--stage", choices=STAGES, help="also point this stage at the new version")
    p.add_argument("--description", default="", help="free text")
    p = sub.add_parser("publish-tool", parents=[common], help="publish a tool's verified weights file (sha256 recorded) as tool-<TOOL>")
    p.add_argument("tool", metavar="TOOL", help="a neural tool whose file is installed (restore-r1 weights list)")
    p.add_argument("--name", help="model name (default tool-<TOOL>)")
    p.add_argument("--stage", choices=STAGES, help="also point this stage at the new version (pods pull production)")
    p.add_argument("--description", default="", help="free text")
    p = sub.add_parser("gc", parents=[common], help="delete uploads that no version references (left by failed publishes)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--min-age-hours", type=float, default=24.0, help="leave younger uploads alone: a publish may be in flight (default 24)")
    p.add_argument("--dry-run", action="store_true", help="only list what would be deleted")


def _split(ref: str, default: str) -> tuple[str, str]:
    from restore_r1.registry import parse_registry_uri

    name, _, explicit = ref.removeprefix("registry://").partition("@")
    return parse_registry_uri(f"{name}@{explicit or default}")


def _describe(version) -> str:
    from dataclasses import asdict

    lines = [
        f"{version.uri}  ({version.format})",
        f"  aliases:   {', '.join(version.aliases) or '-'}",
        f"  created:   {version.created}",
        f"  artifacts: {version.artifact_uri}",
    ]
    lines += [f"    {f.path}  {f.size} B  sha256 {f.sha256}" for f in version.files]
    if version.metrics:
        lines.append("  metrics:   " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(version.metrics.items())))
    for key in ("parameters", "dataset", "run"):
        value = asdict(version)[key]
        if value:
            lines.append(f"  {key + ':':<10} {json.dumps(value, sort_keys=True)}")
    if version.description:
        lines.append(f"  description: {version.description}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from restore_r1.registry import LATEST, open_registry, publish_policy, publish_tool_weights, publish_vlm_model

    registry = open_registry(args.registry, endpoint_url=args.endpoint)
    if args.action == "list":
        if args.name is None:
            models = {name: registry.aliases(name) | {"versions": len(registry.version_numbers(name))} for name in registry.models()}
            if args.json:
                print(json.dumps(models, indent=2))
            elif not models:
                print(f"{registry.location}: no models")
            for name, info in [] if args.json else models.items():
                stages = ", ".join(f"{k}={v}" for k, v in info.items() if k != "versions")
                print(f"{name}  {info['versions']} version(s)  {stages}")
            return 0
        versions = registry.list_versions(_split(args.name, LATEST)[0])
        if args.json:
            print(json.dumps([asdict(v) for v in versions], indent=2))
            return 0
        if not versions:
            print(f"{registry.location}: no versions of {args.name}")
        for v in versions:
            metrics = ", ".join(f"{k}={val:.4g}" for k, val in sorted(v.metrics.items())[:4])
            print(f"{v.version:>4}  {v.created}  {','.join(v.aliases) or '-':<20} {metrics}")
        return 0
    if args.action == "show":
        version = registry.get(*_split(args.ref, LATEST))
        print(json.dumps(asdict(version), indent=2) if args.json else _describe(version))
        return 0
    if args.action == "promote":
        name, ref = _split(args.ref, LATEST)
        if not ref.isdigit():
            version = registry.get(name, ref)  # allow NAME@staging -> production
            ref = str(version.version)
        version = registry.promote(name, int(ref), args.to)
        print(f"{args.to} -> {version.uri}")
        return 0
    if args.action == "pull":
        name, ref = _split(args.ref, "production")
        folder = registry.pull(name, ref, dest=Path(args.out) if args.out else None)
        print(folder)
        return 0
    if args.action == "publish":
        metrics = {}
        if args.metrics:
            from restore_r1.pipeline.report import key_metrics

            metrics = key_metrics(json.loads(Path(args.metrics).read_text()))
        version = publish_policy(registry, args.name, args.source, metrics=metrics, description=args.description, stage=args.stage)
        print(f"published {version.uri} ({version.format}) at {version.artifact_uri}")
        return 0
    if args.action == "publish-vlm":
        version = publish_vlm_model(registry, args.name, args.source, description=args.description, stage=args.stage)
        print(f"published {version.uri} ({version.format}) at {version.artifact_uri}")
        return 0
    if args.action == "publish-tool":
        version = publish_tool_weights(registry, args.tool, name=args.name, stage=args.stage, description=args.description)
        f = version.files[0]
        print(f"published {version.uri} at {version.artifact_uri}: {f.path} {f.size} B sha256 {f.sha256}")
        return 0
    if args.action == "gc":
        name = _split(args.name, LATEST)[0]
        orphans = registry.collect_garbage(name, min_age_s=args.min_age_hours * 3600, dry_run=args.dry_run)
        for orphan in orphans:
            what = "deleted" if orphan.deleted else ("would delete" if args.dry_run and orphan.age_s >= args.min_age_hours * 3600 else "kept (too young)")
            print(f"{what}: {orphan.uri}  {len(orphan.keys)} file(s), {orphan.age_s / 3600:.1f} h old")
        print(f"{registry.location}: {sum(o.deleted for o in orphans)} of {len(orphans)} unreferenced upload(s) of {name} deleted")
        return 0
    raise ValueError(f"unknown registry action {args.action!r}")
