"""A behaviour fingerprint for refactors that must change no number.

With fixed seeds: the per-image records of a small evaluation (two synthetic scenes, cases 1, 5
and 11, 96-pixel crops, the default policy and judge, every method but the oracle, pyiqa's psnr,
ssim and piqe; the timings dropped), the sha256 of the degraded inputs, of the judge features
(``judge_features_one``) and of the stats and EfficientNet-Lite0 features of every image, and the
plain-array PSNR and SSIM. Run it before and after and compare the files byte for byte::

    git stash   # or check out the commit before
    PYTHONPATH=$PWD python bench/fingerprint.py /tmp/before.json
    git stash pop
    PYTHONPATH=$PWD python bench/fingerprint.py /tmp/after.json && cmp /tmp/before.json /tmp/after.json

About 20 s on two cores.
"""

import hashlib
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from restore_r1.evaluate import EvalConfig, evaluate, held_out_pairs
from restore_r1.images import write_image
from tests.scenes import textured_scene  # noqa: E402

out = {}
with tempfile.TemporaryDirectory() as d:
    imgs = Path(d) / "clean"
    for s in range(2):
        write_image(imgs / f"scene{s}.png", textured_scene(seed=s, size=128))
    cfg = EvalConfig(
        cases=[1, 5, 11],
        per_case=1,
        seed=7,
        crop=96,
        images=str(imgs),
        methods=["input", "random", "fixed", "exploration", "policy"],
        metrics=["psnr", "ssim", "piqe"],
        max_steps=3,
    )
    evaluate(cfg, Path(d) / "ev", progress=False)
    recs = [json.loads(l) for l in (Path(d) / "ev" / "records.jsonl").read_text().splitlines()]
    for r in recs:
        r.pop("seconds")
    out["records"] = recs
    pairs = held_out_pairs(cfg)
    out["lq_sha"] = [hashlib.sha256(p.lq.tobytes()).hexdigest() for p in pairs]
from restore_r1.encoders import create_encoder, encoder_availability
from restore_r1.judges.features import judge_features_one
from restore_r1.metrics import psnr, ssim

ims = [p.lq for p in pairs] + [p.gt for p in pairs]
out["judge_features"] = [hashlib.sha256(judge_features_one(i).tobytes()).hexdigest() for i in ims]
for name in ("stats", "efficientnet_lite0"):
    if encoder_availability(name)[0]:
        out[f"enc_{name}"] = hashlib.sha256(create_encoder(name).encode(ims).tobytes()).hexdigest()
out["psnr"] = [repr(psnr(p.lq, p.gt)) for p in pairs]
out["ssim"] = [repr(ssim(p.lq, p.gt)) for p in pairs]
Path(sys.argv[1]).write_text(json.dumps(out, indent=1, sort_keys=True))
print("records", len(recs), "keys", sorted(out))
