"""Run a study: train and evaluate configurations of Table 1 through the bundle, then write the report.

The output folder's layout is documented in :mod:`monai_bus.commands.study`. A run (configuration,
seed) is finished once its rows are in ``predictions.csv``; a later call skips it, and an interrupted
run resumes from its last epoch (the bundle's ``models/checkpoint_last.pt``).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path

from monai_bus.data.loading import absent_classes, load_split
from monai_bus.metrics import classification_metrics
from monai_bus.study import StudyError
from monai_bus.study.bundle_runs import attention_maps, predict_test_split, prepare_run, train
from monai_bus.study.configurations import BY_ID, CONFIGURATIONS, RECIPES
from monai_bus.study.figures import attention_gallery, confusion_grid, gallery_cases, roc_curves
from monai_bus.study.predictions import RunPredictions, read_predictions, write_predictions
from monai_bus.study.report import summarise, write_comparisons, write_table

# bundle ids the study sets itself, per run
STUDY_IDS = ("datalist", "attention", "loss", "seed", "max_epochs", "bundle_root")
# the paper's head: Table 1's networks have 10 hidden units whatever the bundle's default (overridable)
PAPER_HIDDEN = 10
# nor do they supervise the attention gate with the lesion masks (overridable)
PAPER_MASK_LOSS_WEIGHT = 0
# nor average each test image with its mirror image (overridable)
PAPER_FLIP_TTA = False
# and every study and recipe run (but the recipes' `intensity` variant) has the milder intensity augmentation
# of bundles before 0.7.0 (gain ±0.1, noise 0.05) in place of the default recipe's contrast, gain, blur and
# noise, so that their results stay reproducible (overridable)
STUDY_INTENSITY_TRANSFORMS = [
    {"_target_": "RandScaleIntensityd", "keys": "image", "factors": 0.1, "prob": 0.5},
    {"_target_": "RandGaussianNoised", "keys": "image", "std": 0.05, "prob": 0.2},
]


def _log(message: str) -> None:
    print(f"[study] {message}", flush=True)


def _check_arguments(datalist: Path, seeds: int, max_epochs: int | None, recipe: str,
                     configurations: Sequence[str], bundle: Path, overrides: dict) -> None:
    if not datalist.is_file():
        raise StudyError(f"{datalist}: datalist not found (build one with `monai-bus datalist`).")
    if seeds < 1 or (max_epochs is not None and max_epochs < 1):
        raise StudyError(f"seeds and max_epochs must be at least 1, got {seeds} and {max_epochs}.")
    if recipe not in RECIPES:
        raise StudyError(f"recipe must be one of {sorted(RECIPES)}, got {recipe!r}.")
    unknown = [name for name in configurations if name not in BY_ID]
    if unknown or not configurations:
        raise StudyError(f"unknown or no configurations {unknown}; choose from {list(BY_ID)}.")
    for name in (*RECIPES[recipe], "inference.json", "metadata.json"):
        if not (bundle / "configs" / name).is_file():
            raise StudyError(f"{bundle / 'configs' / name}: not found; is {bundle} the monai-bus bundle folder?")
    reserved = sorted(set(overrides) & set(STUDY_IDS))
    if reserved:
        raise StudyError(f"overrides may not set {reserved}: the study sets them for each run.")


def _check_study_file(path: Path, settings: dict) -> None:
    """Write the study's settings, or check that they are those of the study already in the folder."""
    settings = json.loads(json.dumps(settings))
    if not path.is_file():
        path.write_text(json.dumps(settings, indent=1) + "\n")
        return
    try:
        recorded = json.loads(path.read_text())
    except ValueError as error:
        raise StudyError(f"{path}: not valid JSON ({error}).") from error
    differing = sorted(key for key in settings if key != "datalist" and recorded.get(key) != settings[key])
    if differing:
        raise StudyError(f"{path}: this folder holds a study with other settings ({', '.join(differing)}: "
                         f"{[recorded.get(k) for k in differing]} there, {[settings[k] for k in differing]} now); "
                         "its runs would not be comparable. Use another --out.")


def _test_items(datalist: Path) -> tuple[list[str], list[dict]]:
    """The test images as the datalist writes them, and the items with resolved paths (same order)."""
    try:
        items = load_split(str(datalist), "test")
    except ValueError as error:
        raise StudyError(str(error)) from error
    absent = absent_classes(items)
    if absent:  # each run's sensitivity or specificity, and its AUC, would read as measured
        raise StudyError(f"{datalist}: the 'test' list holds no {' and no '.join(absent)} image; the study's "
                         "metrics need both classes.")
    return [item["image"] for item in json.loads(datalist.read_text())["test"]], items


def _train_and_predict(run_dir: Path, datalist: str, images: list[str], items: list[dict]) -> RunPredictions:
    train(run_dir)
    p_malignant = predict_test_split(run_dir, datalist)
    missing = [item["image"] for item in items if item["image"] not in p_malignant]
    if missing or len(p_malignant) != len(items):
        raise StudyError(f"{run_dir / 'eval' / 'predictions.csv'}: {len(p_malignant)} predictions for {len(items)} "
                         f"test images; missing {missing[:3]}.")
    return RunPredictions.rounded(images, [str(item.get("group", "")) for item in items],
                                  [item["label"] for item in items], [p_malignant[item["image"]] for item in items])


def _galleries(out: Path, runs: dict, items_by_image: dict[str, dict]) -> None:
    for configuration in (c for c in CONFIGURATIONS if c.attention):
        seeds = sorted(seed for name, seed in runs if name == configuration.id)
        if not seeds:
            continue
        run_dir = out / "runs" / configuration.id / f"seed_{seeds[0]}"
        path = out / f"gallery_{configuration.id}.png"
        if not (run_dir / "models" / "model.pt").is_file():
            _log(f"{path.name} not redrawn: no model in {run_dir} (the runs folder is not committed)")
            continue
        run = runs[(configuration.id, seeds[0])]
        rows = gallery_cases(run)
        indices = sorted({index for row in rows for index in row})
        maps = dict(zip(indices, attention_maps(run_dir, [items_by_image[run.images[i]] for i in indices])))
        attention_gallery(f"{configuration.title}, seed {seeds[0]}: attention on the network input", run, rows, maps,
                          path)


def run_study(datalist: str | Path, out: str | Path, seeds: int = 3, max_epochs: int | None = None,
              recipe: str = "default", configurations: Sequence[str] = tuple(BY_ID), bundle: str | Path = "bundle",
              overrides: dict | None = None, n_resamples: int = 2000) -> dict:
    """Train and evaluate ``configurations`` x seeds ``0 .. seeds-1`` on ``datalist``, then report.

    Every run is the bundle's own training and inference (:mod:`~monai_bus.study.bundle_runs`) on the
    datalist's splits; the runs differ only in ``attention``, ``loss`` and ``seed``. Their head is the
    paper's (:data:`PAPER_HIDDEN` units), without the mask loss, they classify each test image once
    (no flip test-time augmentation) and train with the milder :data:`STUDY_INTENSITY_TRANSFORMS`,
    unless ``overrides`` sets ``hidden``, ``mask_loss_weight``, ``flip_tta`` or ``train#intensity_transforms``
    (or ``train#random_transforms``).

    Args:
        datalist: MONAI datalist with ``training``, ``validation`` and ``test`` lists.
        out: output folder; a folder holding a study with other settings is refused.
        seeds: number of seeds per configuration.
        max_epochs: training epochs; default the recipe's.
        recipe: a key of :data:`~monai_bus.study.configurations.RECIPES`.
        configurations: ids of :data:`~monai_bus.study.configurations.BY_ID` to run.
        bundle: the source bundle folder, whose configs every run copies.
        overrides: further bundle ids for every run (e.g. ``image_size``), recorded in ``study.json``.
        n_resamples: bootstrap resamples of the report.

    Returns:
        The report's summary (:func:`~monai_bus.study.report.summarise`).

    Raises:
        StudyError: for a bad argument, a datalist without a usable test list, or an output folder
            holding another study.
    """
    datalist, out, bundle, overrides = Path(datalist), Path(out), Path(bundle), dict(overrides or {})
    _check_arguments(datalist, seeds, max_epochs, recipe, configurations, bundle, overrides)
    images, items = _test_items(datalist)
    out.mkdir(parents=True, exist_ok=True)
    _check_study_file(out / "study.json", {
        "datalist": str(datalist), "datalist_sha256": hashlib.sha256(datalist.read_bytes()).hexdigest(),
        "recipe": recipe, "max_epochs": max_epochs, "overrides": overrides})
    predictions_csv = out / "predictions.csv"
    runs = read_predictions(predictions_csv) if predictions_csv.is_file() else {}
    selected = [c for c in CONFIGURATIONS if c.id in configurations]
    plan = [(configuration, seed) for seed in range(seeds) for configuration in selected]
    for number, (configuration, seed) in enumerate(plan, start=1):
        prefix = f"run {number}/{len(plan)}, {configuration.id} seed {seed}"
        if (configuration.id, seed) in runs:
            _log(f"{prefix}: finished before, in {predictions_csv}")
            continue
        run_dir = out / "runs" / configuration.id / f"seed_{seed}"
        settings = {"datalist": str(datalist.resolve()), "attention": configuration.attention,
                    "loss": configuration.loss, "seed": seed, "hidden": PAPER_HIDDEN,
                    "mask_loss_weight": PAPER_MASK_LOSS_WEIGHT, "flip_tta": PAPER_FLIP_TTA,
                    "train#intensity_transforms": STUDY_INTENSITY_TRANSFORMS, **overrides}
        if max_epochs is not None:
            settings["max_epochs"] = max_epochs
        prepare_run(bundle, run_dir, RECIPES[recipe], settings)
        _log(f"{prefix}: training in {run_dir}")
        start = time.perf_counter()
        runs[(configuration.id, seed)] = run = _train_and_predict(run_dir, settings["datalist"], images, items)
        write_predictions(predictions_csv, runs)
        metrics = classification_metrics(run.labels, run.probabilities)
        _log(f"{prefix}: done in {(time.perf_counter() - start) / 60:.1f} min; test AUC {metrics['auc']:.3f}, "
             f"accuracy {metrics['accuracy']:.3f}")
    _log(f"writing the report from {predictions_csv}")
    runs = read_predictions(predictions_csv)
    summary = summarise(runs, n_resamples)
    write_table(summary, out)
    write_comparisons(summary, out)
    confusion_grid(runs, out / "confusion_matrices.png")
    roc_curves(runs, out / "roc_curves.png")
    _galleries(out, runs, dict(zip(images, items)))
    return summary
