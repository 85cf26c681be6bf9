"""One module per ``monai-bus`` command (see ``monai_bus.cli``)."""

from pathlib import Path

# the localiser bundle that ships with monai-bus (in a clone, or an editable install, of the repository),
# wherever the command runs and whichever classifier bundle it is given
SHIPPED_LOCALISER = Path(__file__).resolve().parents[2] / "localiser"
