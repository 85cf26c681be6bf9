"""monai-bus: breast-ultrasound lesion classification (benign / malignant) with MONAI.

Importing the package makes its modules available to bundle configs as ``monai_bus.<module>``.
"""

__version__ = "0.1.0"

CLASS_NAMES = ("benign", "malignant")

from monai_bus import (  # noqa: E402
    bundle_data,
    bundle_options,
    errors,
    handlers,
    inferers,
    losses,
    metrics,
    networks,
    prediction_files,
    roi,
    transforms,
)

__all__ = ["CLASS_NAMES", "bundle_data", "bundle_options", "errors", "handlers", "inferers", "losses", "metrics",
           "networks", "prediction_files", "roi", "transforms"]
