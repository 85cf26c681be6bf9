"""monai-bus: breast-ultrasound lesion classification (benign / malignant) with MONAI.

Bundle configs name the package's modules as ``monai_bus.<module>`` after ``$import monai_bus``;
each is imported on first use, so that ``monai-bus --help`` does not load torch and MONAI.
"""

import importlib

__version__ = "0.1.0"

__all__ = ["bundle_options", "data", "errors", "handlers", "inference", "inferers", "localiser", "losses", "metrics",
           "networks", "prediction_files", "weights"]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"monai_bus.{name}")
    raise AttributeError(f"module 'monai_bus' has no attribute {name!r}")
