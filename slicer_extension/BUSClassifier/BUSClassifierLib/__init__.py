"""Pure-Python helpers of the BUSClassifier Slicer module (no Qt, no ``slicer.app``)."""
