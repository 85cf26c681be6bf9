"""``monai-bus study``: the paper's Table 1 study on one datalist, through the bundle.

Trains and evaluates {VGG16, Attention-VGG16} x {CE, logcosh, CE-logcosh} with the same splits (the
datalist's) and the same seeds, each run by the bundle's own training and inference workflows, then
writes the tables, comparisons and figures. It prints its progress; stopped and started again with the
same arguments, it skips the finished runs and resumes an interrupted one from its last epoch.

Output folder (``--out``)::

    study.json                  settings shared by every run: datalist (and its SHA-256), recipe,
                                max_epochs, bundle overrides; a later call must repeat them
    predictions.csv             one row per test image, configuration and seed (see
                                monai_bus.study.predictions); the record of the finished runs, and
                                the source of every table and figure below but the galleries
    table1.md, .csv, .json      the six metrics of Table 1 plus AUC: mean over seeds, 95% CI by a
                                bootstrap over test images (by group when the datalist has groups)
    comparisons.md, .json       attention vs plain (per loss), CE-logcosh vs CE (per network): paired
                                bootstrap CI and p for every metric, DeLong's test for AUC
    confusion_matrices.png      as the paper's Figure 5, (a) to (f)
    roc_curves.png              one panel per network, one curve per seed
    gallery_<config>.png        per Attention-VGG16 configuration (first seed): correct and wrong
                                cases of each class, attention over the network input
    runs/<config>/seed_<k>/     each run's bundle: configs/ with the run's settings, models/model.pt
                                and checkpoint_last.pt, eval/ (large; not for committing)

``<config>`` is one of ``vgg16_ce``, ``vgg16_logcosh``, ``vgg16_ce_logcosh``, ``attention_vgg16_ce``,
``attention_vgg16_logcosh`` and ``attention_vgg16_ce_logcosh``. Details: docs/study.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from monai_bus.errors import CommandError
from monai_bus.study.configurations import BY_ID, RECIPES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--datalist", required=True, help="MONAI datalist JSON (from `monai-bus datalist`)")
    parser.add_argument("--out", required=True, help="output folder, e.g. results/busbra")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per configuration (default: %(default)s)")
    parser.add_argument("--max-epochs", type=int, help="training epochs (default: the recipe's, 30 or 250)")
    parser.add_argument("--recipe", choices=list(RECIPES), default="default",
                        help="default: from scratch (train.json); paper: ImageNet weights, RMSprop, 250 epochs "
                             "(train.json + paper_recipe.json)")
    parser.add_argument("--configurations", nargs="+", choices=list(BY_ID), default=list(BY_ID), metavar="CONFIG",
                        help="configurations to run (default: all six): " + ", ".join(BY_ID))
    parser.add_argument("--bundle", default="bundle", help="bundle folder whose configs the runs copy "
                                                           "(default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    from importlib.util import find_spec

    if find_spec("matplotlib") is None:
        raise CommandError("the study's figures need matplotlib: pip install 'monai-bus[study]'")
    from monai_bus.study import StudyError
    from monai_bus.study.runner import run_study

    try:
        run_study(args.datalist, args.out, seeds=args.seeds, max_epochs=args.max_epochs, recipe=args.recipe,
                  configurations=args.configurations, bundle=args.bundle)
    except StudyError as error:
        raise CommandError(str(error)) from error
    print("\n" + (Path(args.out) / "table1.md").read_text())
    return 0
