import math

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from sklearn import metrics as sk

from monai_bus.metrics import METRIC_NAMES, ClassificationMetric, classification_metrics, metrics_from_counts, roc_auc


def sklearn_metrics(labels, probabilities):
    predicted = probabilities.argmax(axis=1)
    return {
        "sensitivity": sk.recall_score(labels, predicted, pos_label=1),
        "specificity": sk.recall_score(labels, predicted, pos_label=0),
        "precision": sk.precision_score(labels, predicted, pos_label=1),
        "accuracy": sk.accuracy_score(labels, predicted),
        "f1": sk.f1_score(labels, predicted, pos_label=1),
        "mcc": sk.matthews_corrcoef(labels, predicted),
        "auc": sk.roc_auc_score(labels, probabilities[:, 1]),
    }


@pytest.mark.parametrize("seed", range(5))
def test_against_sklearn(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 60)
    p = np.clip(labels * 0.3 + rng.random(60) * 0.7, 0, 1).round(1)  # rounding creates ties
    probabilities = np.stack([1 - p, p], axis=1)
    ours, expected = classification_metrics(labels, probabilities), sklearn_metrics(labels, probabilities)
    assert set(ours) == set(METRIC_NAMES)
    for name in METRIC_NAMES:
        assert ours[name] == pytest.approx(expected[name], abs=1e-12), name


def test_zero_division_is_zero():
    assert metrics_from_counts(tp=0, fp=0, tn=5, fn=0) == {
        "sensitivity": 0.0, "specificity": 1.0, "precision": 0.0, "accuracy": 1.0, "f1": 0.0, "mcc": 0.0}
    assert metrics_from_counts(0, 0, 0, 0)["accuracy"] == 0.0


def test_auc_of_a_single_class_or_a_nan_score_is_nan():
    assert math.isnan(roc_auc([1, 1, 1], [0.2, 0.5, 0.9]))
    assert math.isnan(roc_auc([0, 1, 1], [0.1, math.nan, 0.5]))  # undefined, never a number
    assert roc_auc([0, 1], [0.3, 0.3]) == 0.5


def test_three_classes_score_malignant_against_rest():
    labels = [0, 1, 2, 1]
    probabilities = np.array([[0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.1, 0.2, 0.7], [0.5, 0.4, 0.1]])
    result = classification_metrics(labels, probabilities)
    assert result["sensitivity"] == 0.5 and result["specificity"] == 1.0 and result["auc"] == 1.0


def test_ignite_metric_accumulates_decollated_batches():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 20)
    p = rng.random(20)
    probabilities = np.stack([1 - p, p], axis=1)
    batches = [(list(torch.tensor(probabilities[i:i + 8])), list(torch.tensor(labels[i:i + 8]))) for i in range(0, 20, 8)]
    engine = Engine(lambda engine, batch: batch)
    for name in METRIC_NAMES:
        ClassificationMetric(name).attach(engine, name)
    state = engine.run(batches)
    for name, value in sklearn_metrics(labels, probabilities).items():
        assert state.metrics[name] == pytest.approx(value), name


def test_unknown_metric():
    with pytest.raises(ValueError, match="metric must be one of"):
        ClassificationMetric("kappa")


def test_metrics_command_recomputes_from_csv(tmp_path, capsys):
    """``monai-bus metrics`` reads label / p_malignant columns; bad rows are named, not skipped."""
    from monai_bus.cli import main

    good = tmp_path / "predictions.csv"
    good.write_text("image,label,p_malignant\na.png,1,0.9\nb.png,0,0.6\nc.png,0,0.1\nd.png,1,0.4\n")
    assert main(["metrics", str(good)]) == 0
    out = capsys.readouterr().out
    assert "4 images (2 malignant)" in out
    assert "| sensitivity | 0.500 |" in out and "| specificity | 0.500 |" in out and "| auc | 0.750 |" in out

    assert "malignant by the argmax (P(malignant) > 0.5):" in out
    # a calibrated file: its predicted column, at the operating point, decides (was the argmax: sensitivity 0.5)
    calibrated = tmp_path / "calibrated.csv"
    calibrated.write_bytes("\ufeffimage,label,p_malignant,predicted\na.png,1,0.9,1\nb.png,0,0.3,0\nc.png,0,0.1,0\n"
                           "d.png,1,0.4,1\n".encode())  # with the byte-order mark a spreadsheet writes
    assert main(["metrics", str(calibrated)]) == 0
    out = capsys.readouterr().out
    assert "malignant by its predicted column: P(malignant) >= 0.400000, the least it calls malignant:" in out
    assert "| sensitivity | 1.000 |" in out and "| specificity | 1.000 |" in out

    frames = tmp_path / "frames.csv"  # two frames of one multi-frame file, as calibrate writes them
    frames.write_text("image,label,p_malignant\nclip.dcm,1,0.9\nclip.dcm,1,0.7\nb.png,0,0.2\n")
    assert main(["metrics", str(frames)]) == 0 and "3 images (2 malignant)" in capsys.readouterr().out

    bad = tmp_path / "bad.csv"
    bad.write_text("image,label,p_malignant\na.png,1,0.9\nb.png,2,0.6\n")
    assert main(["metrics", str(bad)]) == 2
    assert "bad.csv, line 3: label must be 0 or 1" in capsys.readouterr().err
    bad.write_text("image,label\na.png,1\n")
    assert main(["metrics", str(bad)]) == 2
    assert "missing column(s) ['p_malignant']" in capsys.readouterr().err


@pytest.mark.parametrize("content, problem", [
    (b"label,p_malignant,label\n0,0.2,1\n1,0.8,0\n", ": column(s) ['label'] appear more than once in the header."),
    (b"label,p_malignant\n0,0.2\n1\n", ", line 3: not as many fields as the header's 2."),
    (b"label,p_malignant\n0,0.2,7\n1,0.9\n", ", line 2: not as many fields as the header's 2."),
    (b"label,p_malignant\n0,0.2\xff\n1,0.9\n", ": not UTF-8 text (invalid start byte)."),
    (b"label,p_malignant\n0,0.2\n0,0.3\n", ": all 2 images are benign; the AUC needs both classes."),
    (b"configuration,seed,image,label,p_malignant\nvgg,0,a.png,0,0.2\nvgg,0,b.png,1,0.7\nattention,0,a.png,0,0.4\n",
     ", line 4: a second run (configuration attention, seed 0); the file must hold one run's predictions."),
    (b"image,label,p_malignant\na.png,0,0.2\nb.png,1,0.7\na.png,0,0.2\n", ", line 4: repeats line 2 (a.png)."),
    (b"image,label,p_malignant,predicted\na.png,0,0.2,0\nb.png,1,0.7,yes\n", ", line 3: label must be 0 or 1, "
     "p_malignant in [0, 1] and predicted 0 or 1, got '1', '0.7' and 'yes'."),
    (b"image,label,p_malignant\na.png,benign,0.2\n", ", line 2: label must be 0 or 1, p_malignant in [0, 1] and "
     "predicted 0 or 1, got 'benign', '0.2' and None."),  # was "invalid literal for int() with base 10: 'benign'"
    (b"image,label,p_malignant,predicted\na.png,0,0.6,0\nb.png,1,0.4,1\n", ": its predicted column follows no one "
     "threshold on p_malignant: an image at 0.600000 is predicted benign, one at 0.400000 malignant."),
])
def test_metrics_command_refuses_what_it_cannot_read_right(tmp_path, capsys, content, problem):
    """Never a silent choice between two label columns, a short row as 'NoneType', a traceback, or 'auc nan'."""
    from monai_bus.cli import main

    (tmp_path / "p.csv").write_bytes(content)
    assert main(["metrics", str(tmp_path / "p.csv")]) == 2
    assert capsys.readouterr().err.strip().endswith(f"error: {tmp_path / 'p.csv'}{problem}")
