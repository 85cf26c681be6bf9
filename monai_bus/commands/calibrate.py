"""``monai-bus calibrate``: fit a trained bundle's operating point on validation data, and report it on test data.

From the datalist's ``validation`` split only (:mod:`monai_bus.calibration`): the temperature that
minimises the negative log-likelihood of the network's probabilities; then, from the inference API's
predictions at that temperature, the largest threshold on P(malignant) that reaches the target
sensitivity (rounded down to 6 decimals), and the uncertainty above which the most uncertain tenth of the images lie
(:func:`monai_bus.uncertainty.refer_cutoff`). From the ``training`` split, the statistics of the network's
features at each layer of :data:`monai_bus.familiarity.LAYERS` (:mod:`monai_bus.familiarity`), written to
``<bundle>/models/feature_statistics.npz``, and from the validation split each layer's distance above which
an image is unlike the training images (:func:`monai_bus.familiarity.unfamiliar_cutoff`). All go into the
bundle's ``configs/metadata.json`` as ``operating_point``, which the inference API (``monai-bus infer``,
Slicer, MONAI Label) applies. The bundle's own operating point is ignored meanwhile, so a stale one, or one
of an older form, is replaced.

On the ``test`` split it reports ECE (10 bins) before and after scaling, sensitivity and specificity
at the threshold, how many images are referred and how many errors at the threshold they hold, and how
many are unlike the training images (and, at each layer, how many of the training images themselves lie
beyond its cut-off). ``--out`` receives ``calibration.json``, the calibrated per-image predictions of both
splits, with their uncertainty, refer flag, feature distance at each layer and whether any is above its
cut-off (``validation_predictions.csv``, ``test_predictions.csv``; image paths as the datalist writes them) and
the test split's reliability diagram (``reliability.png``, which needs the ``study`` extra's matplotlib).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from monai_bus.errors import CommandError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", default="bundle", help="trained bundle folder (default: %(default)s)")
    parser.add_argument("--datalist", required=True, help="datalist with 'validation' and 'test' lists")
    parser.add_argument("--target-sensitivity", type=float, default=0.9, help="(default: %(default)s)")
    parser.add_argument("--out", required=True, help="folder for the report and the per-image predictions")
    parser.add_argument("--device", help="torch device (default: CUDA when available)")


def _predict(classifier, items: list[dict]):
    """The items' predictions through the inference API: P(malignant) [N], and, when the classifier
    measures it, the uncertainty [N], whether each was classified whole by a model trained on lesion
    regions [N] (which the API always refers), as numpy arrays, and its pooled features [N, F] by layer."""
    import numpy as np

    predictions, features = [], []
    for item in items:
        predictions.append(classifier.predict_item(item))
        features.append(dict(classifier.pooled_features.last))
    p_malignant = np.array([p.malignancy_probability for p in predictions])
    if not classifier.uncertainty:
        return p_malignant
    return (p_malignant, np.array([p.uncertainty for p in predictions]),
            np.array([bool(classifier.roi) and p.roi is None for p in predictions]), _stacked(features))


def _stacked(features: list[dict]) -> dict:
    """Per-image features by layer ([F] each) as one array [N, F] per layer."""
    import numpy as np

    return {layer: np.stack([image[layer] for image in features]) for layer in features[0]}


def _features(classifier, item: dict) -> dict:
    """The pooled features [F] by layer of the item's network input, as the inference API classifies it."""
    return classifier.forward(item).features


def run(args: argparse.Namespace) -> int:
    from importlib.util import find_spec

    if find_spec("matplotlib") is None:
        raise CommandError("the reliability diagram needs matplotlib: pip install 'monai-bus[study]'")
    if not 0.0 < args.target_sensitivity <= 1.0:
        raise CommandError(f"--target-sensitivity must be in (0, 1], got {args.target_sensitivity}")
    import json
    import math

    import numpy as np

    from monai_bus.calibration import expected_calibration_error, fit_temperature, threshold_for_sensitivity
    from monai_bus.data.loading import absent_classes, load_split
    from monai_bus.familiarity import LAYERS, STATISTICS_FILE, FeatureStatistics, save_statistics, unfamiliar_cutoff
    from monai_bus.inference import BundleClassifier
    from monai_bus.metrics import classification_metrics
    from monai_bus.prediction_files import LABELLED_COLUMNS, labelled_row, write_rows
    from monai_bus.study.figures import reliability_diagram
    from monai_bus.uncertainty import REFER_FRACTION, refer_cutoff
    from monai_bus.weights import sha256

    splits = {name: load_split(args.datalist, name) for name in ("validation", "test")}
    labels = {name: np.array([item["label"] for item in items]) for name, items in splits.items()}
    training = load_split(args.datalist, "training")
    training_labels = np.array([item["label"] for item in training])
    for name, fitted, items in (("validation", "the operating point", splits["validation"]),
                                ("training", "the feature statistics", training)):
        absent = absent_classes(items)
        if absent:  # checked before any prediction: fitting needs both classes
            raise CommandError(f"{args.datalist}: the {name} split has no {' and no '.join(absent)} image; fitting "
                               f"{fitted} needs both classes.")
    # the network's own probabilities, every image classified however unlike the training images
    classifier = BundleClassifier(args.bundle, device=args.device, uncertainty=False, operating_point=False)
    raw = {name: _predict(classifier, items) for name, items in splits.items()}
    try:
        temperature = fit_temperature(labels["validation"], raw["validation"])
    except ValueError as error:
        raise CommandError(f"{args.bundle} on {args.datalist}: {error}") from None
    classifier.temperature, classifier.uncertainty = temperature, True  # the API's answers at that temperature
    calibrated, uncertainty, whole, features = {}, {}, {}, {}
    for name, items in splits.items():
        calibrated[name], uncertainty[name], whole[name], features[name] = _predict(classifier, items)
    training_features = _stacked([_features(classifier, item) for item in training])
    statistics = {layer: FeatureStatistics.fit(training_features[layer], training_labels) for layer in LAYERS}
    distance = {name: {layer: statistics[layer].distance(features[name][layer]) for layer in LAYERS} for name in splits}
    unfamiliar_above = {layer: unfamiliar_cutoff(distance["validation"][layer]) for layer in LAYERS}
    unfamiliar = {name: np.any([distance[name][layer] > unfamiliar_above[layer] for layer in LAYERS], axis=0)
                  for name in splits}
    fitted = threshold_for_sensitivity(labels["validation"], calibrated["validation"], args.target_sensitivity)
    # rounded down to the prediction files' 6 decimals, so the API, the files and the report call the image it was
    # fitted at malignant alike; rounded to nearest, it could rise above that image
    threshold = math.floor(fitted * 1e6) / 1e6
    if threshold <= 0.0:  # the API refuses it: P >= 0 would call every image malignant
        raise CommandError(f"{args.bundle}: the threshold reaching the target sensitivity on {args.datalist}'s "
                           f"validation split, {fitted:.1e}, rounds down to 0; check the bundle's weights.")
    around_a_box = uncertainty["validation"][~whole["validation"]]
    if not len(around_a_box):
        raise CommandError(f"{args.datalist}: no validation image has a lesion box (a bbox or masks) to fit the refer "
                           "cut-off on.")
    refer_above = refer_cutoff(around_a_box)  # images classified whole are referred anyway
    refer = {name: whole[name] | (uncertainty[name] > refer_above) for name in splits}

    out = Path(args.out)
    listed = json.loads(Path(args.datalist).read_text())  # the image paths as the datalist writes them
    rows = {name: [{"group": item.get("group", ""), **labelled_row(entry["image"], item["label"], p, threshold),
                    "uncertainty": f"{u:.6f}", "refer": int(r),
                    **{f"feature_distance_{layer}": f"{distance[name][layer][i]:.3f}" for layer in LAYERS},
                    "unfamiliar": int(unfamiliar[name][i])}
                   for i, (item, entry, p, u, r) in enumerate(zip(items, listed[name], calibrated[name],
                                                                  uncertainty[name], refer[name]))]
            for name, items in splits.items()}
    columns = ("group", *LABELLED_COLUMNS, "uncertainty", "refer", *(f"feature_distance_{layer}" for layer in LAYERS),
               "unfamiliar")
    for name in splits:
        write_rows(out / f"{name}_predictions.csv", columns, rows[name])
    # the errors of the written rows, whose P(malignant) is rounded: the report counts what the file holds
    errors = np.array([row["predicted"] != row["label"] for row in rows["test"]])
    test = classification_metrics(labels["test"], np.stack([1 - calibrated["test"], calibrated["test"]], 1), threshold)
    report = {
        "bundle": str(args.bundle), "weights": classifier.weights, "datalist": str(args.datalist),
        "validation_images": len(splits["validation"]), "test_images": len(splits["test"]),
        "temperature": temperature, "threshold": threshold, "target_sensitivity": args.target_sensitivity,
        "refer_above": refer_above, "validation_fraction_referred": REFER_FRACTION,
        "training_images": len(training), "unfamiliar_above": unfamiliar_above,
        "training_beyond_cutoff": {layer: int((statistics[layer].distance(training_features[layer]) >
                                               unfamiliar_above[layer]).sum()) for layer in LAYERS},
        "test": {"ece_before": expected_calibration_error(labels["test"], raw["test"]),
                 "ece_after": expected_calibration_error(labels["test"], calibrated["test"]),
                 "sensitivity": test["sensitivity"], "specificity": test["specificity"], "auc": test["auc"],
                 "referred": int(refer["test"].sum()), "errors": int(errors.sum()),
                 "errors_referred": int(errors[refer["test"]].sum()),
                 "unfamiliar": int(unfamiliar["test"].sum())},
    }
    (out / "calibration.json").write_text(json.dumps(report, indent=1) + "\n")
    reliability_diagram(labels["test"], raw["test"], calibrated["test"], out / "reliability.png")

    statistics_file = Path(args.bundle) / "models" / STATISTICS_FILE
    save_statistics(statistics_file, statistics)
    meta_file = Path(args.bundle) / "configs" / "metadata.json"
    metadata = json.loads(meta_file.read_text())
    metadata["operating_point"] = {
        # as fitted: rounded, the temperature and refer_above could move the image at a cut-off across it
        "threshold": threshold, "temperature": temperature, "refer_above": refer_above,
        "unfamiliar_above": unfamiliar_above,
        "weights_sha256": classifier.weights["sha256"],
        "feature_statistics_sha256": sha256(statistics_file),
        "description": f"temperature scaling, the largest threshold reaching sensitivity {args.target_sensitivity} and "
                       f"the uncertainty of the most uncertain {REFER_FRACTION:.0%} on the validation split of "
                       f"{args.datalist} ({len(splits['validation'])} images); the feature statistics at "
                       f"{' and '.join(LAYERS)} of its {len(training)} training images, and their cut-offs on the "
                       "validation split"}
    meta_file.write_text(json.dumps(metadata, indent=4) + "\n")
    print(json.dumps(report["test"] | {"temperature": temperature, "threshold": threshold, "refer_above": refer_above},
                     indent=1))
    print(f"operating point written to {meta_file}; report in {out}")
    return 0
