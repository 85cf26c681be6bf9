"""Resumable training: an ignite handler that keeps and restores the last epoch's state."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint
from torch.nn.parallel import DataParallel, DistributedDataParallel

logger = logging.getLogger(__name__)


def _unwrap(obj):
    return obj.module if isinstance(obj, (DataParallel, DistributedDataParallel)) else obj


class LastCheckpoint:
    """Save training state after every epoch, and resume from it when a run starts.

    The file ``<save_dir>/checkpoint_last.pt`` holds the state dicts of ``save_dict`` (network,
    optimizer, lr scheduler, ...) and of the engine the handler is attached to (key ``trainer``). It is written atomically by rank 0 only. When
    ``resume`` is true and the file exists, every rank restores it as the run starts, and training
    continues with the next epoch up to the current ``max_epochs``.

    Args:
        save_dir: folder of the checkpoint.
        save_dict: name -> object with ``state_dict``/``load_state_dict``; the attached engine is
            added as ``trainer``.
        resume: restore the file when it exists.
    """

    FILENAME = "checkpoint_last.pt"

    def __init__(self, save_dir: str | os.PathLike, save_dict: dict, resume: bool = True) -> None:
        self.path = Path(save_dir) / self.FILENAME
        self.save_dict = {name: _unwrap(obj) for name, obj in save_dict.items()}
        self.resume = resume

    def attach(self, engine: Engine) -> None:
        self.save_dict["trainer"] = engine
        engine.add_event_handler(Events.STARTED, self.load)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.save)

    def load(self, engine: Engine) -> None:
        if not (self.resume and self.path.is_file()):
            return
        max_epochs = engine.state.max_epochs
        checkpoint = torch.load(self.path, map_location="cpu", weights_only=True)
        Checkpoint.load_objects(to_load=self.save_dict, checkpoint=checkpoint)
        engine.state.max_epochs = max_epochs  # the caller's max_epochs wins over the saved one
        logger.info("resumed from %s at epoch %d of %d", self.path, engine.state.epoch, max_epochs)

    def save(self, engine: Engine) -> None:
        if idist.get_rank() != 0:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial")
        torch.save({name: obj.state_dict() for name, obj in self.save_dict.items()}, partial)
        os.replace(partial, self.path)
