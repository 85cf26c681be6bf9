"""The paper's Table 1 study: {VGG16, Attention-VGG16} x {CE, logcosh, CE-logcosh}, trained and evaluated
through the bundle on one datalist, with confidence intervals, paired comparisons and figures.

- :mod:`~monai_bus.study.configurations`: the six configurations, the recipes and the comparisons;
- :mod:`~monai_bus.study.bundle_runs`: one run (configuration and seed) as its own bundle folder;
- :mod:`~monai_bus.study.predictions`: the per-image ``predictions.csv`` every figure is computed from;
- :mod:`~monai_bus.study.statistics`: group bootstrap and DeLong's test;
- :mod:`~monai_bus.study.report` and :mod:`~monai_bus.study.figures`: the tables and the PNGs;
- :mod:`~monai_bus.study.runner`: :func:`~monai_bus.study.runner.run_study`, which ties them together.
"""

from monai_bus.errors import InputError


class StudyError(InputError):
    """A user-facing problem with a study's inputs or its output folder; the message names the file."""
