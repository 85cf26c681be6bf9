"""Ablation of the default recipe's candidate remedies, several seeds each, through the study harness.

Each variant is the bundle's default recipe (Attention-VGG16, CE-logcosh) as the study runs it (the
paper's head, no mask loss, no flip, the milder intensity augmentation of :mod:`monai_bus.study.runner`)
with a few bundle ids changed (:data:`VARIANTS`). Every (variant, seed) run is a study run (``monai-bus study``'s code):
trained and evaluated by the bundle's own workflows, its test predictions appended to
``<out>/<variant>/predictions.csv``. Stopped and started again, finished runs are skipped and an
interrupted run resumes from its last epoch. Runs go seed by seed, so every variant gets its
seed 0 before any gets its seed 1.

Then ``<out>/ablation.md`` and ``ablation.json`` are written from the predictions alone: per variant,
each seed's test AUC, sensitivity and specificity at the argmax, whether the seed collapsed (fewer
than 10% of either class called right), the seed-mean AUC with its group-bootstrap 95% CI, the
spread of AUC across seeds, the paired AUC difference from its base (:data:`BASES`) and each run's wall time
(``times.json``; a resumed run's time adds its parts).

    python benchmarks/recipes.py --datalist docs/results/lists/busi.json --out docs/results/recipe/busi \\
        --seeds 3 --max-epochs 15
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from localiser_boxes import SUFFIX as LOCALISER_BOXES_SUFFIX
from monai_bus.metrics import classification_metrics, roc_auc
from monai_bus.study.predictions import read_predictions
from monai_bus.study.runner import run_study
from monai_bus.study.statistics import group_resamples, percentile_interval

CONFIGURATION = "attention_vgg16_ce_logcosh"
WIDE_HEAD = {"hidden": 256}
VARIANTS = {
    "default": {},
    "wide_head": WIDE_HEAD,
    "balanced_sampling": {
        "train#dataloader#shuffle": False,
        "train#dataloader#sampler": "$torch.utils.data.WeightedRandomSampler("
                                    "[1.0 / [j['label'] for j in @train#dataset#data].count(i['label']) "
                                    "for i in @train#dataset#data], len(@train#dataset#data))",
    },
    # wide_head, validated, kept and resumed with an exponential moving average of its weights (ignite's EMAHandler)
    "ema": {
        **WIDE_HEAD,
        "train#ema": {"_target_": "ignite.handlers.EMAHandler", "model": "@network", "momentum": 0.02,
                      "handle_buffers": "update"},
        "train#trainer#train_handlers": "$@train#handlers + [@train#ema]",
        "validate#evaluator#network": "$@train#ema.ema_model",
        "best_model#network": "$@train#ema.ema_model",
        "train#handlers#3#save_dict#ema_model": "$@train#ema.ema_model",
    },
    # wide_head with the attention gate supervised by the lesion mask (monai_bus.handlers.AttentionMaskLoss)
    "mask_loss": {**WIDE_HEAD, "mask_loss_weight": 0.5},
    # mask_loss with stronger intensity augmentation (train.json's flip and affine, then contrast, gain, blur
    # and noise; the localiser's probe of docs/results/localiser/intensity_augmentation.json): the default
    # recipe's since bundle 0.7.0, where the other variants keep the study's milder STUDY_INTENSITY_TRANSFORMS
    "intensity": {
        **WIDE_HEAD, "mask_loss_weight": 0.5,
        "train#random_transforms": [
            {"_target_": "RandFlipd", "keys": ["image", "lesion"], "allow_missing_keys": True, "spatial_axis": 1,
             "prob": 0.5},
            {"_target_": "RandAffined", "keys": ["image", "lesion"], "allow_missing_keys": True, "prob": 0.5,
             "rotate_range": 0.15, "scale_range": 0.1, "translate_range": "$[@image_size // 16, @image_size // 16]",
             "padding_mode": "zeros"},
            {"_target_": "RandAdjustContrastd", "keys": "image", "prob": 0.5, "gamma": [0.7, 1.5]},
            {"_target_": "RandScaleIntensityd", "keys": "image", "factors": 0.2, "prob": 0.5},
            {"_target_": "RandGaussianSmoothd", "keys": "image", "prob": 0.2, "sigma_x": [0.5, 1.5],
             "sigma_y": [0.5, 1.5]},
            {"_target_": "RandGaussianNoised", "keys": "image", "std": 0.1, "prob": 0.2},
        ],
    },
}
# intensity at 192 x 192 in place of 128 x 128 (2.25 times the pixels, and about as much more compute)
VARIANTS["large_input"] = {**VARIANTS["intensity"], "image_size": 192}
# intensity with its VGG16 features pretrained without labels (SimCLR) on the lesion regions of busi_busbra.json's
# training and validation images: run `python benchmarks/pretrain.py --datalist docs/results/lists/busi_busbra.json
# --out runs/self_supervised` first, from the repository's folder
VARIANTS["self_supervised"] = {**VARIANTS["intensity"], "pretrained": True,
                               "pretrained_path": "runs/self_supervised/features.pt"}
# intensity with stochastic weight averaging (monai_bus.handlers.WeightAveraging): the learning rate falls linearly to
# half over the first half of the epochs and stays there; the weights at the end of each epoch of the second half are
# averaged (batch norm's running statistics too), and that average is what validation scores and model.pt keeps;
# before start_epoch it holds the network's own weights (until 2026-12-03 the starting network's: docs/results/recipe/)
VARIANTS["swa"] = {
    **VARIANTS["intensity"],
    "lr_scheduler": {"_target_": "torch.optim.lr_scheduler.LambdaLR", "optimizer": "@optimizer",
                     "lr_lambda": "$lambda epoch: max(0.5, 1 - 0.5 * epoch / max(1, @max_epochs // 2))"},
    "train#averaged": {"_target_": "torch.optim.swa_utils.AveragedModel", "model": "@network", "use_buffers": True},
    "train#weight_averaging": {"_target_": "monai_bus.handlers.WeightAveraging", "averaged": "@train#averaged",
                               "network": "@network", "start_epoch": "$@max_epochs // 2 + 1"},
    "train#trainer#train_handlers": "$@train#handlers[:1] + [@train#weight_averaging] + @train#handlers[1:]",
    "validate#evaluator#network": "$@train#averaged.module",
    "best_model#network": "$@train#averaged.module",
    "train#handlers#3#save_dict#averaged_model": "@train#averaged",
}
# intensity trained around the localiser's boxes of the training images in place of the datasets' boxes (the
# datalist's copy <name>_localiser_boxes.json, written by benchmarks/localiser_boxes.py); validated and tested with the
# datasets' boxes
VARIANTS["localiser_boxes"] = {
    **VARIANTS["intensity"],
    "train#dataset#data": "$monai_bus.data.loading.load_split(@datalist_file[:-len('.json')] + "
                          f"'{LOCALISER_BOXES_SUFFIX}.json', 'training', @dataset_dir)",
}
BASES = {"wide_head": "default", "balanced_sampling": "default", "ema": "wide_head", "mask_loss": "wide_head",
         "intensity": "mask_loss", "large_input": "intensity",
         "self_supervised": "intensity", "swa": "intensity", "localiser_boxes": "intensity"}
"""The variant each one changes, which the table compares it with."""
COLLAPSE = 0.1  # a seed collapses when its sensitivity or specificity at the argmax is below this


def train_variants(datalist: Path, out: Path, variants: list[str], seeds: int, max_epochs: int) -> None:
    times_file = out / "times.json"
    for seed in range(seeds):
        for variant in variants:
            runs_csv = out / variant / "predictions.csv"
            if runs_csv.is_file() and (CONFIGURATION, seed) in read_predictions(runs_csv):
                continue
            start = time.perf_counter()
            run_study(datalist, out / variant, seeds=seed + 1, max_epochs=max_epochs,
                      configurations=[CONFIGURATION], overrides=VARIANTS[variant])
            key = f"{variant}/seed_{seed}"
            times = json.loads(times_file.read_text()) if times_file.is_file() else {}  # another variant's may be new
            times[key] = times.get(key, 0.0) + time.perf_counter() - start
            partial = times_file.with_name(f".{times_file.name}.partial")
            partial.write_text(json.dumps(times, indent=1) + "\n")
            partial.replace(times_file)


def _seed_mean_auc(runs: list, resample: np.ndarray) -> float:
    return float(np.mean([roc_auc(run.labels[resample], run.p_malignant[resample]) for run in runs]))


def _interval(resampled: np.ndarray) -> list[float]:
    """95% percentile interval of one statistic's resampled values [B]."""
    return [float(bound[0]) for bound in percentile_interval(resampled[:, None])]


def summarise(out: Path, variants: list[str], n_resamples: int = 2000) -> dict:
    times = json.loads((out / "times.json").read_text())
    runs = {v: [run for _, run in sorted(read_predictions(out / v / "predictions.csv").items())] for v in variants}
    reference = runs[variants[0]][0]
    resamples = group_resamples(reference.groups, n_resamples, seed=0)
    resampled = {v: np.array([_seed_mean_auc(runs[v], r) for r in resamples]) for v in variants}
    mean_auc = {v: float(np.mean([roc_auc(run.labels, run.p_malignant) for run in runs[v]])) for v in variants}
    summary = {"test_images": len(reference.labels), "malignant": int(reference.labels.sum()),
               "bootstrap": {"resamples": n_resamples, "seed": 0, "by": "group"}, "variants": {}}
    for variant in variants:
        seeds = []
        for seed, run in enumerate(runs[variant]):
            metrics = classification_metrics(run.labels, run.probabilities)
            seeds.append({"seed": seed, "auc": metrics["auc"], "sensitivity": metrics["sensitivity"],
                          "specificity": metrics["specificity"],
                          "collapsed": min(metrics["sensitivity"], metrics["specificity"]) < COLLAPSE,
                          "minutes": times[f"{variant}/seed_{seed}"] / 60})
        aucs = [s["auc"] for s in seeds]
        base = BASES.get(variant)
        paired = base in runs and len(runs[base]) == len(runs[variant])  # seed means over the same seeds
        difference = resampled[variant] - resampled[base] if paired else None
        summary["variants"][variant] = {
            "overrides": VARIANTS[variant], "seeds": seeds, "auc": mean_auc[variant],
            "auc_ci": _interval(resampled[variant]), "auc_spread": max(aucs) - min(aucs),
            "collapsed_seeds": sum(s["collapsed"] for s in seeds),
            "auc_minus_base": None if difference is None else {
                "base": base, "mean": mean_auc[variant] - mean_auc[base], "ci": _interval(difference)},
        }
    return summary


def write_summary(summary: dict, out: Path, command: str) -> None:
    (out / "ablation.json").write_text(json.dumps(summary, indent=1) + "\n")
    lines = [f"# Recipe ablation: {summary['test_images']} test images ({summary['malignant']} malignant)", "",
             f"Command: `{command}`", "",
             "| variant | seed AUCs | seed sens / spec at argmax | collapsed | mean AUC [95% CI] | AUC spread "
             "| AUC − its base [95% CI] | minutes per run |", "|---|---|---|---|---|---|---|---|"]
    for name, variant in summary["variants"].items():
        seeds = variant["seeds"]
        difference = variant["auc_minus_base"]
        aucs = " ".join(f"{s['auc']:.3f}" for s in seeds)
        rates = " ".join(f"{s['sensitivity']:.2f}/{s['specificity']:.2f}" for s in seeds)
        minutes = " ".join(f"{s['minutes']:.1f}" for s in seeds)
        low, high = variant["auc_ci"]
        versus = "" if difference is None else \
            f"{difference['mean']:+.3f} [{difference['ci'][0]:+.3f}, {difference['ci'][1]:+.3f}] ({difference['base']})"
        lines.append(f"| {name} | {aucs} | {rates} | {variant['collapsed_seeds']} of {len(seeds)} "
                     f"| {variant['auc']:.3f} [{low:.3f}, {high:.3f}] | {variant['auc_spread']:.3f} | {versus} "
                     f"| {minutes} |")
    lines += ["", f"CIs: 95% percentile intervals of {summary['bootstrap']['resamples']} bootstrap resamples of the "
              "test groups (seed 0), of the seed-mean AUC; the differences are paired (same resamples). "
              f"A seed is collapsed when its sensitivity or specificity at the argmax is below {COLLAPSE}. "
              "Overrides of each variant: ablation.json. Per-image predictions: <variant>/predictions.csv."]
    (out / "ablation.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datalist", required=True, help="MONAI datalist with training, validation and test lists")
    parser.add_argument("--out", required=True, help="output folder, one study folder per variant")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max-epochs", type=int, default=15)
    args = parser.parse_args()
    out = Path(args.out)
    train_variants(Path(args.datalist), out, args.variants, args.seeds, args.max_epochs)
    command = (f"python benchmarks/recipes.py --datalist {args.datalist} --out {args.out} --variants "
               f"{' '.join(args.variants)} --seeds {args.seeds} --max-epochs {args.max_epochs}")
    write_summary(summarise(out, args.variants), out, command)
    print((out / "ablation.md").read_text())


if __name__ == "__main__":
    main()
