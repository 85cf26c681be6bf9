"""``monai-bus datalist``: build a leakage-safe MONAI datalist, and its report, from a dataset folder."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from monai_bus.data.datalist import GROUP_MODES, build_datalist
from monai_bus.data.formats import FORMATS
from monai_bus.data.splits import DEFAULT_PROPORTIONS, SPLITS
from monai_bus.errors import CommandError


def _proportions(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(value) for value in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(0 <= value <= 1 for value in values) or abs(sum(values) - 1) > 1e-6 or \
            values[0] == 0:  # nan fails 0 <= value <= 1
        raise argparse.ArgumentTypeError(
            f"expected three non-negative shares TRAIN,VAL,TEST summing to 1 (training above 0), got {text!r}")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", required=True, choices=list(FORMATS), help="layout of the dataset")
    parser.add_argument("--root", required=True, type=Path,
                        help="dataset folder (for --format csv: the table or the folder holding it)")
    parser.add_argument("--out", required=True, type=Path,
                        help="datalist JSON to write; the report goes to <stem>_report.json beside it")
    split = parser.add_mutually_exclusive_group()
    split.add_argument("--split", type=_proportions, default=DEFAULT_PROPORTIONS, metavar="TRAIN,VAL,TEST",
                       help="training, validation and test shares (default: 0.75,0.15,0.10)")
    split.add_argument("--folds", type=int, metavar="K",
                       help="K-fold mode (with --fold): BUS-BRA uses the authors' 5-fold-cv.csv when present")
    parser.add_argument("--fold", type=int, metavar="I",
                        help="test fold, 1..K; fold I+1 (wrapping to 1) is the validation fold")
    parser.add_argument("--seed", type=int, default=0, help="split seed (default: 0)")
    parser.add_argument("--include-normal", action="store_true",
                        help="keep normal images as a third class (label 2)")
    parser.add_argument("--group", choices=GROUP_MODES, default="auto",
                        help="what must stay whole in one split: patient ids, near-duplicate images, or "
                             "only byte-identical images (none); auto = patient where ids exist (default)")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip unusable files instead of stopping; the report lists each one")


def _summary(datalist: dict, report: dict, out: Path, report_path: Path) -> str:
    classes = datalist["classes"]
    lines = [f"{out}: {sum(len(datalist[p]) for p in SPLITS)} images, grouped by {report['grouping']}",
             f"{'':12}" + "".join(f"{name:>11}" for name in classes) + f"{'groups':>9}"]
    for part in SPLITS:
        counts = report["counts"][part]
        lines.append(f"{part:12}" + "".join(f"{counts[name]:>11}" for name in classes)
                     + f"{report['groups'][part]:>9}")
    duplicates, conflicts = report["duplicate_groups"], report["conflicting_groups_excluded"]
    lines.append(f"duplicate groups: {len(duplicates)} ({sum(len(d['images']) for d in duplicates)} images; "
                 f"{sum(bool(d['byte_identical']) for d in duplicates)} with byte-identical images)")
    lines.append(f"conflicting labels: {len(conflicts)} groups, {sum(len(c['images']) for c in conflicts)} "
                 "images excluded")
    boxes = report["lesion_boxes"]
    lines.append(f"lesion boxes: {boxes['from_table']} from the dataset's table, {boxes['from_masks']} from masks; "
                 f"{len(boxes['whole_image'])} images without one are kept whole (flagged whole_image)")
    if report["normal_excluded"]:
        lines.append(f"normal images left out: {len(report['normal_excluded'])} (see --include-normal)")
    lines.append(f"skipped files: {len(report['skipped'])}")
    lines.extend(f"  {entry['file']}: {entry['reason']}" for entry in report["skipped"][:10])
    if len(report["skipped"]) > 10:
        lines.append(f"  ... {len(report['skipped']) - 10} more in the report")
    lines.append(f"report: {report_path}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.seed < 0:
        raise CommandError(f"--seed must be 0 or more, got {args.seed}")
    if (args.folds is None) != (args.fold is None):
        raise CommandError("--folds and --fold must be given together")
    report_path = args.out.with_name(f"{args.out.stem}_report.json")
    if args.out.suffix.lower() != ".json":  # never a dataset's own table or image
        raise CommandError(f"--out {args.out}: the datalist is JSON; give a file name ending in .json")
    for path in (args.out, report_path):
        if path.is_dir():
            raise CommandError(f"--out {args.out}: {path} is a folder")
    existing = next(folder for folder in (args.out.absolute().parent, *args.out.absolute().parents) if folder.exists())
    if not existing.is_dir():
        raise CommandError(f"--out {args.out}: {existing} is a file, not a folder")
    try:
        datalist, report = build_datalist(
            args.format, args.root, args.out, proportions=args.split, folds=args.folds, fold=args.fold,
            seed=args.seed, include_normal=args.include_normal, group=args.group, skip_bad=args.skip_bad)
    except ValueError as error:  # DatasetError ("<file>: <problem>"), or an invalid --folds/--fold
        raise CommandError(str(error)) from None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(datalist, indent=2) + "\n")
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    print(_summary(datalist, report, args.out, report_path))
    for part in SPLITS:  # written all the same: the counts are the user's to judge, but never silently
        absent = [name for name in ("benign", "malignant") if not report["counts"][part][name]]
        if absent:
            print(f"monai-bus datalist: warning: the '{part}' split of {args.out} holds no {' and no '.join(absent)} "
                  "image; training, calibration and the metrics need both classes in each split", file=sys.stderr)
    return 0
