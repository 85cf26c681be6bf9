"""One run of the study (a configuration and a seed) as a bundle folder of its own, trained and
evaluated by the bundle's own workflows.

A run folder is a copy of the source bundle (configs, docs, LICENSE; no models or data) whose configs
carry the run's settings, so it is a complete bundle:

- ``configs/metadata.json``'s ``model_settings`` (``attention``, ``batch_norm``, ``flip_tta``, ``hidden``,
  ``image_size``, ``roi``, ``roi_margin``, ``width``), which ``train.json`` and ``inference.json`` both read, hold
  the run's values (and a recipe's own, such as the paper recipe's ``batch_norm`` false), so that
  training, the bundle's inference workflow and :class:`~monai_bus.inference.BundleClassifier` build
  the same network and preprocessing;
- ``configs/train.json`` is the recipe's config files merged into one (``train.json``, plus
  ``paper_recipe.json`` for the paper recipe), with the run's other settings (``loss``, ``seed``,
  ``datalist``, ...) written into its ids.

Training is ``python -m monai.bundle run training --config_file <run>/configs/train.json --bundle_root
<run>``; ``monai-bus infer --bundle <run>`` classifies with the run's model.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from monai.bundle import ConfigParser, ConfigWorkflow

from monai_bus.prediction_files import read_predictions
from monai_bus.study import StudyError


def prepare_run(source: Path, run_dir: Path, recipe_files: Sequence[str], settings: dict) -> None:
    """Make ``run_dir`` a copy of the ``source`` bundle whose configs hold ``settings`` (see the module).

    Files already in ``run_dir`` (a checkpoint of an interrupted run) are kept; its configs are rewritten.
    The source's shipped weights and operating point are not copied, nor their entries in the metadata.

    Raises:
        StudyError: when a setting is neither a model setting, nor a top-level id of the merged
            training config, nor a nested id (``train#dataloader#sampler``) whose parent is in it.
    """
    configs = source / "configs"
    train = ConfigParser(ConfigParser.load_config_files([str(configs / name) for name in recipe_files]))
    metadata = ConfigParser.load_config_file(str(configs / "metadata.json"))
    model_settings = metadata["model_settings"]
    unknown = sorted(key for key in settings if key not in model_settings and key.rsplit("#", 1)[0] not in train)
    if unknown:
        raise StudyError(f"{configs}: {unknown} are neither model_settings of metadata.json, nor top-level ids of "
                         f"{' + '.join(recipe_files)}, nor inside one of its ids.")
    for key in model_settings:  # a recipe's own value (the paper's batch_norm false) moves to the metadata
        if train[key] != f"$@model_settings['{key}']":
            model_settings[key], train[key] = train[key], f"$@model_settings['{key}']"
    for key, value in settings.items():
        if key in model_settings:
            model_settings[key] = value
        else:
            train[key] = value
    for key in ("weights", "operating_point"):  # they describe the source's models/, which the run does not copy
        metadata.pop(key, None)
    shutil.copytree(source, run_dir, ignore=shutil.ignore_patterns("models", "eval", "demo_data"), dirs_exist_ok=True)
    ConfigParser.export_config_file(train.get(), str(run_dir / "configs" / "train.json"), indent=4)
    ConfigParser.export_config_file(metadata, str(run_dir / "configs" / "metadata.json"), indent=4)


def _workflow(run_dir: Path, config_name: str, workflow_type: str, **overrides) -> ConfigWorkflow:
    configs = run_dir / "configs"
    return ConfigWorkflow(
        config_file=str(configs / config_name),
        meta_file=str(configs / "metadata.json"),
        logging_file=str(configs / "logging.conf"),
        workflow_type=workflow_type,
        bundle_root=str(run_dir),
        **overrides,
    )


def _run(flow: ConfigWorkflow) -> None:
    flow.initialize()
    flow.run()
    flow.finalize()


def train(run_dir: Path) -> None:
    """Train the run's bundle (``run training``); it resumes from ``models/checkpoint_last.pt`` when
    the bundle's ``resume`` is on and the file exists. The best model goes to ``models/model.pt``."""
    _run(_workflow(run_dir, "train.json", "train"))


def predict_test_split(run_dir: Path, datalist: str) -> dict[str, float]:
    """P(malignant) of every test image of ``datalist``, by the bundle's inference workflow (``run
    evaluating`` of ``inference.json``, which writes ``eval/predictions.csv``, read by
    :func:`monai_bus.prediction_files.read_predictions`).

    Returns:
        image path, as the bundle resolved it from the datalist -> P(malignant).
    """
    _run(_workflow(run_dir, "inference.json", "infer", datalist=datalist))
    predictions = read_predictions(run_dir / "eval" / "predictions.csv")
    return {image: p_malignant for image, (_, p_malignant) in predictions.items()}


def attention_maps(run_dir: Path, items: Sequence[dict]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The network input and its attention map for each datalist item, with the run's model.

    Each item goes through :meth:`BundleClassifier.forward <monai_bus.inference.BundleClassifier.forward>`,
    the inference API's one forward pass, so the image is what the network saw: the lesion region when
    the bundle's ``roi`` is on, resized to ``image_size`` and normalised.

    Yields:
        image [H, W] and attention [H, W] in [0, 1], at ``image_size``.
    """
    from monai_bus.inference import BundleClassifier

    classifier = BundleClassifier(run_dir, uncertainty=False)
    if not classifier.has_attention:
        raise StudyError(f"{run_dir}: its network has no attention gate.")
    for item in items:
        classified = classifier.forward(item)
        yield np.asarray(classified.data["image"][0].cpu(), dtype=np.float32), classified.attention.numpy()
