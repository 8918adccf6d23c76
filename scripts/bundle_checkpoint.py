"""Copy a trained generator into ``checkpoints/`` and register it in the manifest.

    python scripts/bundle_checkpoint.py runs/perov5_csp/generator.safetensors --mode csp [--default] \
        [--corrector-step-lr 5e-6] [--coord-noise-scale 0.5] [--num-steps 100] [--corrector-steps 5] [--corrector-min-t 20] \
        [--name mp20_csp]

The file is first loaded (format and weight hash checked), then copied to
``checkpoints/<name>.safetensors``, the name being its config's unless ``--name`` gives
another (a study's run that replaces a bundled model: the config inside records the new
name); ``checkpoints/manifest.json`` records it under that name with its SHA-256 (checked
before every use) and, with ``--default``, makes it the model used when no ``--checkpoint``
is given for its mode. ``--corrector-step-lr``, ``--coord-noise-scale``,
``--num-steps``, ``--corrector-steps`` and ``--corrector-min-t`` replace sampler defaults recorded in the config
(sampling-time settings, e.g. ones tuned with ``scripts/tune_corrector.py``); the weights are
unchanged, and a bundled file may be rebundled in place this way. Prints the model-card facts
(data, steps, wall time, hardware, hash) for ``checkpoints/README.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

from diffcrystal.checkpoint import BUNDLED_DIR, MANIFEST_NAME, file_sha256, load_checkpoint, save_checkpoint
from diffcrystal.errors import InputError
from diffcrystal.training.config import SamplingConfig

MAX_BUNDLED_MB = 20


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("generator", type=Path, help="generator.safetensors of a training run")
    parser.add_argument("--mode", choices=["csp", "denovo"], required=True)
    parser.add_argument("--default", action="store_true", help="make it the default model of its mode")
    parser.add_argument("--corrector-step-lr", type=float, metavar="LR",
                        help="record this Langevin corrector step_lr as the sampler default (weights unchanged)")
    parser.add_argument("--coord-noise-scale", type=float, metavar="LAMBDA",
                        help="record this factor on the coordinates' sampling noise as the default (weights unchanged)")
    parser.add_argument("--num-steps", type=int, metavar="K", help="record K predictor steps as the sampler default")
    parser.add_argument("--corrector-steps", type=int, metavar="C",
                        help="record C corrector steps per predictor step as the sampler default")
    parser.add_argument("--corrector-min-t", type=int, metavar="T",
                        help="record T as the timestep at and below which the sampler runs no corrector")
    parser.add_argument("--name", help="bundle under this name instead of the config's (e.g. a study run replacing mp20_csp)")
    args = parser.parse_args(argv)

    tensors, config = load_checkpoint(args.generator)
    experiment = config["experiment"]
    if experiment["diffusion"]["mode"] != args.mode:
        raise SystemExit(f"{args.generator} is a {experiment['diffusion']['mode']} generator, not {args.mode}")
    size_mb = args.generator.stat().st_size / 1e6
    if size_mb > MAX_BUNDLED_MB:
        raise SystemExit(f"{args.generator} is {size_mb:.1f} MB; bundled checkpoints stay under {MAX_BUNDLED_MB} MB")
    renamed = args.name is not None and args.name != experiment["name"]
    if renamed:
        if not args.name.isidentifier():
            raise SystemExit(f"--name must be a plain identifier such as mp20_csp, got {args.name!r}")
        experiment["name"] = args.name
    target = BUNDLED_DIR / f"{experiment['name']}.safetensors"
    sampling = {key: value for key, value in (("num_steps", args.num_steps),
                                              ("corrector_steps", args.corrector_steps),
                                              ("corrector_min_t", args.corrector_min_t)) if value is not None}
    diffusion = {key: value for key, value in (("corrector_step_lr", args.corrector_step_lr),
                                               ("coord_noise_scale", args.coord_noise_scale)) if value is not None}
    for key, value in diffusion.items():
        if not (math.isfinite(value) and value >= 0):
            raise SystemExit(f"--{key.replace('_', '-')} must be a finite number >= 0, got {value}")
    if not diffusion and not sampling and not renamed:
        if not (target.exists() and target.samefile(args.generator)):
            shutil.copyfile(args.generator, target)
    else:
        experiment["diffusion"].update(diffusion)
        experiment["sampling"] = {**experiment.get("sampling", {}), **sampling}
        try:
            SamplingConfig(**experiment["sampling"])
        except InputError as error:
            raise SystemExit(str(error)) from None
        save_checkpoint(target, tensors, config)
    manifest_path = BUNDLED_DIR / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"models": {}, "defaults": {}}
    name = experiment["name"]
    earlier = manifest["models"].get(name, {})
    manifest["models"][name] = {
        "file": target.name,
        "sha256": file_sha256(target),
        "mode": args.mode,
        "data": experiment["data"]["train"],
    }
    if earlier.get("data") == experiment["data"]["train"] and "training_summary" in earlier:
        # same training data: its summary (scripts/summarize_training_data.py) still holds
        manifest["models"][name]["training_summary"] = earlier["training_summary"]
    if earlier.get("data") == experiment["data"]["train"] and "analogues" in earlier:
        # same training data: its analogue table (scripts/build_analogue_table.py) still holds
        manifest["models"][name]["analogues"] = earlier["analogues"]
    if args.default or args.mode not in manifest["defaults"]:
        manifest["defaults"][args.mode] = name
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    facts = {
        "file": target.name,
        "sha256": manifest["models"][name]["sha256"],
        "size_MB": round(size_mb, 2),
        "data": experiment["data"]["train"],
        "structures": config["statistics"]["num_structures"],
        "training": config["training"],
    }
    print(json.dumps(facts, indent=2))


if __name__ == "__main__":
    main()
