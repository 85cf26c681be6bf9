"""Temperature scaling, the operating point, ECE and the likelihood categories."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from monai_bus.calibration import (CATEGORIES, expected_calibration_error, fit_temperature, likelihood_category,
                                   reliability_bins, scale, threshold_for_sensitivity)


def overconfident(n: int, temperature: float, seed: int = 0):
    """Labels drawn from sigmoid(z), and the probabilities of a model whose log-odds are z * temperature."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, n)
    labels = (rng.random(n) < expit(z)).astype(int)
    return labels, expit(z * temperature)


def test_fit_temperature_recovers_the_overconfidence():
    labels, p = overconfident(20000, 3.0)
    temperature = fit_temperature(labels, p)
    assert temperature == pytest.approx(3.0, rel=0.05)
    assert expected_calibration_error(labels, scale(p, temperature)) < 0.01 < expected_calibration_error(labels, p)


def test_scaling_keeps_the_ranking_and_one_is_the_identity():
    p = np.array([0.01, 0.3, 0.5, 0.9, 0.999])
    np.testing.assert_allclose(scale(p, 1.0), p, atol=1e-9)
    assert (np.diff(scale(p, 2.5)) > 0).all() and scale([0.5], 7.0)[0] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        scale(p, 0.0)


def test_threshold_reaches_the_target_sensitivity_and_no_higher_one_does():
    labels = np.array([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0])
    p = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.25, 0.85])
    threshold = threshold_for_sensitivity(labels, p, 0.9)
    assert threshold == 0.2
    sensitivity = lambda t: (p[labels == 1] >= t).mean()  # noqa: E731
    assert sensitivity(threshold) >= 0.9 and sensitivity(np.nextafter(threshold, 1.0)) < 0.9
    assert threshold_for_sensitivity(labels, p, 1.0) == 0.1


def test_ece_and_reliability_bins_by_hand():
    labels = [0, 1, 1, 0]
    p = [0.05, 0.95, 0.55, 0.45]  # bins 0, 9, 5, 4
    rows = reliability_bins(labels, p)
    assert [row["count"] for row in rows] == [1, 0, 0, 0, 1, 1, 0, 0, 0, 1]
    assert rows[1]["mean_p"] is None and rows[5]["fraction_malignant"] == 1.0
    assert expected_calibration_error(labels, p) == pytest.approx((0.05 + 0.45 + 0.45 + 0.05) / 4)


def test_likelihood_categories_meet_at_the_operating_point():
    threshold = 0.3
    assert [likelihood_category(p, threshold) for p in (0.0, 0.019, 0.02, 0.299, 0.3, 0.949, 0.95, 1.0)] == [
        CATEGORIES[0], CATEGORIES[0], CATEGORIES[1], CATEGORIES[1], CATEGORIES[2], CATEGORIES[2], CATEGORIES[3],
        CATEGORIES[3]]


@pytest.mark.parametrize("call, match", [
    (lambda: fit_temperature([1, 1], [0.2, 0.9]), "both classes"),
    # every image the same P, or labels against the probabilities: the fit ran into its range's limit (it gave T 20)
    (lambda: fit_temperature([0, 1, 0, 1], [0.499] * 4), r"highest at the upper limit of the temperature's range "
                                                          r"\[0.05, 20.0\] \(T = 20\)"),
    (lambda: fit_temperature([0, 1, 0, 1], [0.9, 0.1, 0.8, 0.2]), r"the probabilities do not follow the labels"),
    # every image on its side of 0.5: the likelihood rises as T falls; the message must not blame the labels
    (lambda: fit_temperature([0, 0, 1, 1], [0.3, 0.45, 0.55, 0.7]), r"lower limit .* sets the validation images "
                                                                    r"apart \(nearly\) without error"),
    (lambda: threshold_for_sensitivity([0, 0], [0.2, 0.9]), "malignant validation cases"),
    (lambda: threshold_for_sensitivity([0, 1], [0.2, 0.9], 0.0), r"target sensitivity must be in \(0, 1\]"),
    (lambda: expected_calibration_error([0, 2], [0.2, 0.9]), "labels must be 0 or 1"),
    (lambda: expected_calibration_error([0, 1], [0.2]), "equally long"),
])
def test_bad_input_is_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()
