"""Learning curves of the bundle's training recipes, measured in one run.

Trains the bundle once per recipe on the same datalist and seed, and prints the validation AUC
after every epoch, plus each run's best AUC and wall time. Used to choose the default recipe.
The per-image validation predictions of every epoch go to
``<out>/<recipe>/val_predictions/epoch_NNN.csv``; ``monai-bus metrics`` recomputes any epoch's figures.

    python benchmarks/learning_curves.py --max-epochs 20                       # synthetic demo data
    python benchmarks/learning_curves.py --datalist busbra.json --max-epochs 20 --out runs/recipes

``benchmarks/recipes.py`` measures candidate changes of the default recipe on the test split, over
several seeds.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ignite.engine import Events
from monai.bundle import ConfigWorkflow

from monai_bus.prediction_files import LABELLED_COLUMNS, labelled_row, write_rows
from monai_bus.study.bundle_runs import prepare_run

BUNDLE = Path(__file__).resolve().parents[1] / "bundle"
RECIPES = {
    "default": ["train.json"],
    "paper (from scratch)": ["train.json", "paper_recipe.json"],
}


def write_predictions(path: Path, images: list[str], outputs: list[dict]) -> None:
    """One CSV row (LABELLED_COLUMNS) per validation image, then empty ``outputs`` for the next epoch.

    ``outputs`` are the evaluator's decollated output items, in the order of ``images`` (the
    validation loader does not shuffle).
    """
    if len(images) != len(outputs):
        raise RuntimeError(f"{len(outputs)} validation outputs for {len(images)} images")
    write_rows(path, LABELLED_COLUMNS, [labelled_row(Path(image).name, int(item["label"]), float(item["pred"][1]))
                                        for image, item in zip(images, outputs)])
    outputs.clear()


def learning_curve(config_files: list[str], out: Path, overrides: dict) -> tuple[list[float], float]:
    prepare_run(BUNDLE, out, config_files, {})  # a bundle folder of the recipe's merged configs
    flow = ConfigWorkflow(
        config_file=str(out / "configs" / "train.json"),
        meta_file=str(out / "configs" / "metadata.json"),
        logging_file=False,
        workflow_type="train",
        bundle_root=str(out),
        **overrides,
    )
    flow.initialize()
    curve: list[float] = []
    evaluator = flow.parser.get_parsed_content("validate#evaluator")
    evaluator.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: curve.append(engine.state.metrics["val_auc"]))
    images = [item["image"] for item in flow.parser.get_parsed_content("validate#dataset").data]
    outputs: list[dict] = []
    evaluator.add_event_handler(Events.ITERATION_COMPLETED, lambda engine: outputs.extend(engine.state.output))
    evaluator.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: write_predictions(
        out / "val_predictions" / f"epoch_{len(curve):03d}.csv", images, outputs))
    start = time.perf_counter()
    flow.run()
    flow.finalize()
    return curve, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datalist", help="MONAI datalist JSON (default: the synthetic demo data)")
    parser.add_argument("--max-epochs", type=int, default=20)
    parser.add_argument("--out", default="runs/recipes", help="folder for the runs' bundles")
    args = parser.parse_args()
    overrides = {"max_epochs": args.max_epochs, "pretrained": False, "resume": False}
    if args.datalist:
        overrides["datalist"] = args.datalist
    results = {}
    for name, config_files in RECIPES.items():
        out = Path(args.out) / name.split()[0]
        results[name] = learning_curve(config_files, out, overrides)
    print(f"\nvalidation AUC per epoch ({args.datalist or 'synthetic demo data'}, {args.max_epochs} epochs)")
    for name, (curve, seconds) in results.items():
        print(f"{name:22s} best {max(curve):.3f} at epoch {curve.index(max(curve)) + 1}, {seconds / 60:.1f} min: "
              + " ".join(f"{auc:.2f}" for auc in curve))


if __name__ == "__main__":
    main()
