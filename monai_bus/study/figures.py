"""The study's PNG figures: confusion matrices (as the paper's Figure 5), ROC curves, and attention
galleries. The first two are drawn from ``predictions.csv`` alone; a gallery needs the run's model.
Also the reliability diagram of ``monai-bus calibrate``.

Matplotlib's object interface is used (no ``pyplot``), so no display or global state is involved.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_curve

from monai_bus.data.records import CLASS_NAMES
from monai_bus.metrics import confusion_counts, roc_auc
from monai_bus.study.configurations import CONFIGURATIONS, FIGURE5_ORDER, LOSS_NAMES
from monai_bus.study.predictions import RunKey, RunPredictions

LOSS_COLOURS = dict(zip(LOSS_NAMES, ("tab:blue", "tab:orange", "tab:green")))
# gallery rows: (title, true class, predicted class)
GALLERY_CASES = (("benign, correct", 0, 0), ("benign, wrong", 0, 1),
                 ("malignant, correct", 1, 1), ("malignant, wrong", 1, 0))


def _runs_of(runs: dict[RunKey, RunPredictions], configuration_id: str) -> list[RunPredictions]:
    return [runs[key] for key in sorted(key for key in runs if key[0] == configuration_id)]


def _figure(rows: int, columns: int, width: float, height: float):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width * columns, height * rows), layout="constrained")
    return figure, figure.subplots(rows, columns, squeeze=False)


def _unit_square(ax, xlabel: str, ylabel: str, top: float = 1.0) -> None:
    """Square axes over [0, 1] with the diagonal dotted (chance for ROC, perfect calibration)."""
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=0.8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, top)
    ax.set_aspect("equal")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


def confusion_grid(runs: dict[RunKey, RunPredictions], path: Path) -> None:
    """Confusion matrices of the configurations in Figure 5's order, (a) to (f); each cell holds the
    mean count over the configuration's seeds, shaded by its share of the true class."""
    present = [configuration for configuration in FIGURE5_ORDER if _runs_of(runs, configuration.id)]
    columns = min(3, len(present))
    figure, axes = _figure(math.ceil(len(present) / columns), columns, 3.2, 3.0)
    for ax, letter, configuration in zip(axes.flat, "abcdef", present):
        config_runs = _runs_of(runs, configuration.id)
        counts = np.mean([[[c["tn"], c["fp"]], [c["fn"], c["tp"]]] for c in
                          (confusion_counts(run.labels, run.predicted) for run in config_runs)], axis=0)
        shares = np.divide(counts, counts.sum(axis=1, keepdims=True), out=np.zeros_like(counts),
                           where=counts.sum(axis=1, keepdims=True) > 0)
        ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
        for row in range(2):
            for column in range(2):
                value = counts[row, column]
                ax.text(column, row, f"{value:.0f}" if value == round(value) else f"{value:.1f}", ha="center",
                        va="center", fontsize=12, color="white" if shares[row, column] > 0.5 else "black")
        ax.set_xticks([0, 1], CLASS_NAMES)
        ax.set_yticks([0, 1], CLASS_NAMES)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        seeds = f"mean of {len(config_runs)} seeds" if len(config_runs) > 1 else "1 seed"
        ax.set_title(f"({letter}) {configuration.title}\n{seeds}", fontsize=9)
    for ax in axes.flat[len(present):]:
        ax.axis("off")
    figure.savefig(path, dpi=150)


def roc_curves(runs: dict[RunKey, RunPredictions], path: Path) -> None:
    """One panel per network, one colour per loss, one curve per seed; the legend gives the mean AUC."""
    networks = [attention for attention in (False, True) if any(
        _runs_of(runs, c.id) for c in CONFIGURATIONS if c.attention == attention)]
    figure, axes = _figure(1, len(networks), 4.0, 4.0)
    for ax, attention in zip(axes.flat, networks):
        for configuration in (c for c in CONFIGURATIONS if c.attention == attention):
            config_runs = _runs_of(runs, configuration.id)
            aucs = [roc_auc(run.labels, run.p_malignant) for run in config_runs]
            for index, run in enumerate(config_runs):
                if math.isnan(aucs[index]):
                    continue  # one class only: no curve
                label = f"{configuration.loss_name} (AUC {np.mean(aucs):.3f})" if index == 0 else None
                ax.plot(*roc_curve(run.labels, run.p_malignant)[:2], color=LOSS_COLOURS[configuration.loss],
                        alpha=1.0 if len(config_runs) == 1 else 0.6, linewidth=1.2, label=label)
        _unit_square(ax, "1 - specificity", "sensitivity", top=1.01)
        ax.set_title("Attention-VGG16" if attention else "VGG16", fontsize=10)
        ax.legend(loc="lower right", fontsize=8, title="one curve per seed", title_fontsize=7)
    figure.savefig(path, dpi=150)


def reliability_diagram(labels: np.ndarray, before: np.ndarray, after: np.ndarray, path: Path) -> None:
    """Fraction malignant against mean P(malignant) in 10 equal-width bins, before and after
    calibration (:func:`monai_bus.calibration.reliability_bins`), with each curve's ECE."""
    from monai_bus.calibration import expected_calibration_error, reliability_bins

    figure, axes = _figure(1, 1, 4.0, 4.0)
    ax = axes[0, 0]
    for name, p, colour in (("uncalibrated", before, "tab:grey"), ("calibrated", after, "tab:blue")):
        bins = [row for row in reliability_bins(labels, p) if row["count"]]
        ax.plot([row["mean_p"] for row in bins], [row["fraction_malignant"] for row in bins], marker="o",
                color=colour, label=f"{name} (ECE {expected_calibration_error(labels, p):.3f})")
    _unit_square(ax, "mean P(malignant) in the bin", "fraction malignant")
    ax.set_title(f"{len(labels)} test images, 10 bins", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    figure.savefig(path, dpi=150)


def gallery_cases(run: RunPredictions, per_case: int = 4) -> list[list[int]]:
    """Indices of the images to show for each row of :data:`GALLERY_CASES`: the ``per_case`` most
    confident predictions of that kind (most confidently wrong, for the wrong ones)."""
    rows = []
    for _, label, predicted in GALLERY_CASES:
        indices = np.flatnonzero((run.labels == label) & (run.predicted == predicted))
        confidence = run.p_malignant[indices] if predicted == 1 else 1.0 - run.p_malignant[indices]
        rows.append([int(i) for i in indices[np.argsort(-confidence, kind="mergesort")][:per_case]])
    return rows


def attention_gallery(title: str, run: RunPredictions, rows: list[list[int]], maps: dict[int, tuple],
                      path: Path) -> None:
    """Attention overlays, one row per kind of :data:`GALLERY_CASES`.

    Args:
        title: the figure's title.
        run: the run's predictions, for the captions.
        rows: image indices per row, from :func:`gallery_cases`.
        maps: image index -> (network input [H, W], attention [H, W] in [0, 1]).
        path: PNG to write.
    """
    columns = max(1, max(len(row) for row in rows))
    figure, axes = _figure(len(rows), columns, 2.0, 2.2)
    mappable = None
    for (case_title, _, _), row, row_axes in zip(GALLERY_CASES, rows, axes):
        for ax in row_axes:
            ax.axis("off")
        if not row:
            row_axes[0].text(0.5, 0.5, f"{case_title}:\nnone", ha="center", va="center", fontsize=9,
                             transform=row_axes[0].transAxes)
        for ax, index in zip(row_axes, row):
            image, attention = maps[index]
            ax.imshow(image, cmap="gray")
            mappable = ax.imshow(attention, cmap="jet", alpha=0.4, vmin=0.0, vmax=1.0)
            ax.set_title(f"{case_title}\n{Path(run.images[index]).name}\nP(malignant) {run.p_malignant[index]:.2f}",
                         fontsize=7)
    if mappable is not None:
        figure.colorbar(mappable, ax=axes, shrink=0.5, label="attention")
    figure.suptitle(title, fontsize=10)
    figure.savefig(path, dpi=150)
