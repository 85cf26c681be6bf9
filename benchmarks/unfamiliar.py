"""What the shipped bundle answers for images that are not breast ultrasound: scikit-image's example
images (photographs, microscopy, text, a phantom), uniform noise, and pydicom's test files (CT, MR,
computed radiography, other ultrasound, and files that are no image at all).

Each image, in colour where it is, is classified through the inference API twice: around a box over
its central half, as if a user had drawn one, and with no box (the localiser's box). Per image and case,
``<out>/images.csv`` holds the set it comes from, the feature distance at each layer
(:mod:`monai_bus.familiarity`), a short SHA-256 of the pixels as read (several of pydicom's files hold one
image in different encodings) and the outcome: ``refused as a colour image``
(:data:`monai_bus.data.images.MAX_COLOUR_FRACTION`), ``refused by the reader`` (the one-line error's
problem in ``problem``), ``unlike the training images`` (no class), ``no lesion found`` (no class), or the
class given. The summary counts them per set and case, and how many images the pool3 check alone turned
away (pool5's distance within its cut-off).

    python benchmarks/unfamiliar.py --out docs/results/familiarity
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import pydicom.data
import skimage.data

from monai_bus.data.images import read_image
from monai_bus.data.records import DatasetError
from monai_bus.familiarity import LAYERS
from monai_bus.inference import BundleClassifier
from monai_bus.localiser import LesionLocaliser
from monai_bus.prediction_files import write_rows

EXAMPLES = ("astronaut", "brick", "camera", "cat", "chelsea", "clock", "coffee", "coins", "grass", "gravel",
            "horse", "immunohistochemistry", "moon", "page", "retina", "rocket", "shepp_logan_phantom", "text")
NOISE_IMAGES = 3  # uniform noise, 300 x 400 pixels
CASES = ("central box", "no box")
COLUMNS = ("set", "image", "case", "outcome", *(f"feature_distance_{layer}" for layer in LAYERS), "p_malignant",
           "pixels", "problem")


def images() -> dict[str, np.ndarray]:
    """The test images, uint8, grey [H, W] or RGB [H, W, 3] as scikit-image gives them, by name."""
    examples = {}
    for name in EXAMPLES:
        image = np.asarray(getattr(skimage.data, name)(), dtype=np.float64)
        image = image[..., :3] if image.ndim == 3 else image
        examples[name] = np.round(255 * (image - image.min()) / np.ptp(image)).astype(np.uint8)
    rng = np.random.default_rng(0)
    examples |= {f"noise_{i}": rng.integers(0, 256, (300, 400), dtype=np.uint8) for i in range(NOISE_IMAGES)}
    return examples


def dicom_files() -> dict[str, Path]:
    """pydicom's test files, every file (DICOM or not) of the folder its wheel ships, by their path in it (not the
    files that ``get_testdata_files`` would also find in an installed pydicom-data, or download)."""
    root = Path(pydicom.data.__file__).parent / "test_files"
    return {file.relative_to(root).as_posix(): file for file in sorted(root.rglob("*")) if file.is_file()}


def classify(classifier: BundleClassifier, image) -> list[dict]:
    """The rows of one image (a file or an array) for both cases, without ``set`` and ``image``."""
    try:
        grey, name = read_image(image)
    except DatasetError as error:
        refused = "refused as a colour image" if "in colour" in error.problem else "refused by the reader"
        return [{"case": case, "outcome": refused, "problem": error.problem} for case in CASES]
    height, width = grey.shape
    pixels = hashlib.sha256(np.ascontiguousarray(grey).tobytes()).hexdigest()[:12]
    rows = []
    for case, box in zip(CASES, ((height // 4, height - height // 4, width // 4, width - width // 4), None)):
        prediction = classifier.predict(image, box=box)
        distance = prediction.feature_distance or {}
        rows.append({"case": case, "outcome": prediction.class_name or prediction.unclassified_reason, "pixels": pixels,
                     **{f"feature_distance_{layer}": f"{value:.3f}" for layer, value in distance.items()},
                     "p_malignant": "" if prediction.class_name is None else
                     f"{prediction.malignancy_probability:.6f}"})
    return rows


def summarise(rows: list[dict], cutoffs: dict[str, float]) -> dict:
    """Per set and case, the count of each outcome, of images turned away by pool3 alone, and of distinct images."""
    summary = {}
    for image_set in dict.fromkeys(row["set"] for row in rows):
        summary[image_set] = {"files": sum(row["set"] == image_set for row in rows) // len(CASES),
                              "distinct images read": len({row["pixels"] for row in rows
                                                           if row["set"] == image_set and row.get("pixels")})}
        for case in CASES:
            chosen = [row for row in rows if row["set"] == image_set and row["case"] == case]
            outcomes = [row["outcome"] for row in chosen]
            pool3_alone = [row for row in chosen if row["outcome"] == "unlike the training images"
                           and float(row["feature_distance_pool5"]) <= cutoffs["pool5"]]
            summary[image_set][case] = {**{name: outcomes.count(name) for name in sorted(set(outcomes))},
                                        "turned away by pool3 alone": len(pool3_alone)}
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default="bundle")
    parser.add_argument("--localiser", default="localiser")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    classifier = BundleClassifier(args.bundle, localiser=LesionLocaliser(args.localiser))
    sources = [("scikit-image", images()), ("pydicom", dicom_files())]
    rows = [{"set": image_set, "image": name, **row} for image_set, source in sources
            for name, image in source.items() for row in classify(classifier, image)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_rows(out / "images.csv", COLUMNS, [{column: row.get(column, "") for column in COLUMNS} for row in rows])
    summary = {"unfamiliar_above": classifier.unfamiliar_above, "weights_sha256": classifier.weights["sha256"],
               "sets": summarise(rows, classifier.unfamiliar_above)}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
