"""One module per ``monai-bus`` command (see ``monai_bus.cli``)."""
