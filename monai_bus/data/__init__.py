"""Real breast-ultrasound data: dataset readers, image checks, duplicate detection and
leakage-safe splits, assembled into a MONAI datalist by :func:`build_datalist`."""

from monai_bus.data.datalist import build_datalist
from monai_bus.data.formats import FORMATS
from monai_bus.data.records import CLASSES, BadFiles, DatasetError, Record

__all__ = ["CLASSES", "FORMATS", "BadFiles", "DatasetError", "Record", "build_datalist"]
