"""What the shipped bundle answers for images that are not breast ultrasound: scikit-image's example
images (photographs, microscopy, text, a phantom) and uniform noise.

Each image, in colour where it is, is classified through the inference API twice: around a box over
its central half, as if a user had drawn one, and with no box (the localiser's box). Per image and case,
``<out>/images.csv`` holds the feature distance (:mod:`monai_bus.familiarity`) and the outcome:
``refused as a colour image`` (the image reader's error, :data:`monai_bus.data.images.MAX_COLOUR_FRACTION`),
``unlike the training images`` (no class), ``no lesion found`` (no class), or the class given. The
summary counts them.

    python benchmarks/unfamiliar.py --out docs/results/familiarity
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import skimage.data

from monai_bus.data.records import DatasetError
from monai_bus.inference import BundleClassifier
from monai_bus.localiser import LesionLocaliser
from monai_bus.prediction_files import write_rows

EXAMPLES = ("astronaut", "brick", "camera", "cat", "chelsea", "clock", "coffee", "coins", "grass", "gravel",
            "horse", "immunohistochemistry", "moon", "page", "retina", "rocket", "shepp_logan_phantom", "text")
NOISE_IMAGES = 3  # uniform noise, 300 x 400 pixels


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


def outcome(prediction) -> str:
    if prediction.class_name is not None:
        return prediction.class_name
    return "no lesion found" if prediction.box is None else "unlike the training images"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default="bundle")
    parser.add_argument("--localiser", default="localiser")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    classifier = BundleClassifier(args.bundle, localiser=LesionLocaliser(args.localiser))
    rows = []
    for name, image in images().items():
        height, width = image.shape[:2]
        central_half = (height // 4, height - height // 4, width // 4, width - width // 4)
        for case, box in (("central box", central_half), ("no box", None)):
            try:
                prediction = classifier.predict(image, box=box)
            except DatasetError as error:
                if "in colour" not in error.problem:
                    raise
                rows.append({"image": name, "case": case, "outcome": "refused as a colour image",
                             "feature_distance": "", "p_malignant": ""})
                continue
            distance = prediction.feature_distance
            rows.append({"image": name, "case": case, "outcome": outcome(prediction),
                         "feature_distance": "" if distance is None else f"{distance:.3f}",
                         "p_malignant": "" if prediction.class_name is None else
                         f"{prediction.malignancy_probability:.6f}"})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_rows(out / "images.csv", ("image", "case", "outcome", "feature_distance", "p_malignant"), rows)
    summary = {"unfamiliar_above": classifier.unfamiliar_above, "weights_sha256": classifier.weights["sha256"],
               "images": len(rows) // 2, "cases": {}}
    for case in ("central box", "no box"):
        outcomes = [row["outcome"] for row in rows if row["case"] == case]
        summary["cases"][case] = {name: outcomes.count(name) for name in sorted(set(outcomes))}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
