"""The data layer: image reading and checks, lesion boxes, dataset readers, leakage-safe splits,
datalists (built by :func:`~monai_bus.data.datalist.build_datalist`, loaded by the bundle through
:mod:`~monai_bus.data.loading`), the MONAI transforms of training and inference, and the synthetic
demo set.

Submodules are imported on first use (``monai_bus.data.roi`` after ``$import monai_bus`` in a
bundle config), so that reading a datalist does not load torch.
"""

import importlib

__all__ = ["boxes", "datalist", "demo", "duplicates", "formats", "images", "loading", "masks", "records", "roi",
           "splits", "transforms"]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"monai_bus.data.{name}")
    raise AttributeError(f"module 'monai_bus.data' has no attribute {name!r}")
