"""Training handlers: the best model, resumable state, a stop on a non-finite loss, an auxiliary mask loss and
weight averaging.

Every file is written atomically (a temporary file, then a rename), so a run killed while saving
leaves the previous file whole.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
from collections.abc import Sequence
from pathlib import Path

import ignite.distributed as idist
import numpy as np
import torch
import torch.nn.functional as F
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint
from monai.engines import IterationEvents
from monai.handlers import from_engine
from monai.transforms import Compose
from torch.nn.parallel import DataParallel, DistributedDataParallel

from monai_bus.errors import InputError, TrainingError
from monai_bus.weights import save_atomically, sha256, write_record

logger = logging.getLogger(__name__)


def _unwrap(obj):
    return obj.module if isinstance(obj, (DataParallel, DistributedDataParallel)) else obj


def _portable(items: list[dict]) -> list[dict]:
    """Datalist items with their file paths relative to the folder all of them share."""
    paths = [p for item in items for key in ("image", "mask") for p in np.atleast_1d(item.get(key, [])).tolist()]
    common = os.path.commonpath(paths) if paths else ""
    relative = lambda value: (os.path.relpath(value, common) if isinstance(value, str)  # noqa: E731
                              else [os.path.relpath(v, common) for v in value])
    return [{key: relative(value) if key in ("image", "mask") else value for key, value in item.items()}
            for item in items]


def run_fingerprint(training: list[dict], validation: list[dict], settings) -> str:
    """SHA-256 of what defines a training run: its data items and its settings (JSON-serialisable).

    File paths count relative to the folder the items share, so a dataset that moves keeps its
    fingerprint.
    """
    parts = [_portable(training), _portable(validation), settings]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _storable(numpy_state: tuple) -> tuple:
    """A numpy random state with its key array as a tensor, which ``torch.load(weights_only=True)`` reads."""
    kind, keys, position, has_gauss, gauss = numpy_state
    return kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss


def _restored(stored: tuple) -> tuple:
    kind, keys, position, has_gauss, gauss = stored
    return kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss


class BestModelSaver:
    """Keep the network of the best validation score in ``<save_dir>/model.pt`` (its state dict).

    Attach it to the evaluator. A score that ties the best replaces it (the later model is kept). A
    non-finite score (NaN AUC of a single-class validation set) is never the best: it is logged and
    the file is left as it is. Its :meth:`state_dict` (best score and epoch) travels in
    :class:`LastCheckpoint`, so that a resumed run compares against the best of the epochs before; loading
    it also gives the evaluator its own best (MONAI's ``best_metric``, ``best_metric_epoch``) when ``metric``
    is its key metric, which its "new best" log line compares against.

    With ``bundle_version`` and ``trained_on``, every save also writes the weights' record,
    ``model.json`` (:func:`monai_bus.weights.write_record`: checksum, a version of their own, the data).
    A ``model.pt`` whose SHA-256 is in ``protected_sha256`` (the bundle's shipped weights) is never
    overwritten: attaching the saver then stops the run before it trains.

    Args:
        save_dir: folder of ``model.pt``.
        network: the network to save (unwrapped from DDP).
        metric: the evaluator's metric to compare.
        bundle_version: the bundle's ``version``.
        trained_on: what the weights were trained on, in words.
        protected_sha256: checksums of weights that must not be overwritten.
    """

    FILENAME = "model.pt"

    def __init__(self, save_dir: str | os.PathLike, network: torch.nn.Module, metric: str = "val_auc",
                 bundle_version: str | None = None, trained_on: str | None = None,
                 protected_sha256: Sequence[str] = ()) -> None:
        self.path = Path(save_dir) / self.FILENAME
        self.network, self.metric = network, metric
        self.bundle_version, self.trained_on = bundle_version, trained_on
        self.protected_sha256 = set(protected_sha256)
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.evaluator: Engine | None = None

    def attach(self, evaluator: Engine) -> None:
        if self.path.is_file() and sha256(self.path) in self.protected_sha256:
            raise TrainingError(f"{self.path}: the bundle's shipped weights; training would overwrite them. Train in a "
                                "copy without them (cp -r bundle my_bundle; rm -r my_bundle/models; then "
                                "--bundle_root my_bundle).")
        evaluator.add_event_handler(Events.EPOCH_COMPLETED, self)
        self.evaluator = evaluator

    def __call__(self, evaluator: Engine) -> None:
        score, epoch = float(evaluator.state.metrics[self.metric]), evaluator.state.epoch
        if not math.isfinite(score):
            logger.warning("epoch %d: %s is %s, which is never the best; %s is left as it is", epoch, self.metric,
                           score, self.path)
            return
        if self.best_score is not None and score < self.best_score:
            return
        self.best_score, self.best_epoch = score, epoch
        if idist.get_rank() == 0:
            save_atomically(_unwrap(self.network).state_dict(), self.path)
            if self.bundle_version is not None and self.trained_on is not None:
                write_record(self.path, self.bundle_version, self.trained_on, epoch=epoch, **{self.metric: score})
        logger.info("epoch %d: best %s %.4f, saved %s", epoch, self.metric, score, self.path)

    def state_dict(self) -> dict:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.best_score, self.best_epoch = state["best_score"], state["best_epoch"]
        evaluator_state = None if self.evaluator is None else self.evaluator.state
        if self.best_score is not None and getattr(evaluator_state, "key_metric_name", None) == self.metric:
            evaluator_state.best_metric, evaluator_state.best_metric_epoch = self.best_score, self.best_epoch


class LastCheckpoint:
    """Save the training state after every epoch, and resume from it when the same run starts again.

    ``<save_dir>/checkpoint_last.pt`` holds the state dicts of ``save_dict`` (network, optimizer, lr
    scheduler, best model saver, ...), of the attached engine (key ``trainer``), that engine's best key
    metric and its epoch (MONAI's ``best_metric``, ``best_metric_epoch``: ignite's state dict leaves them
    out, and its "new best" log line compares against them), the global random
    states (torch on the CPU and CUDA, numpy, Python), and the run's ``fingerprint``. The training
    transforms' own random states are drawn afresh from torch's at the start of every epoch, so a
    resumed run goes on exactly as the uninterrupted one would have. Rank 0 writes the file; every
    rank reads it.

    Args:
        save_dir: folder of the checkpoint.
        save_dict: name -> object with ``state_dict``/``load_state_dict``.
        fingerprint: what defines the run (see :func:`run_fingerprint`): its data and settings,
            ``max_epochs`` included.
        resume: restore the file when it exists.

    Raises:
        TrainingError: when the file cannot be read, or belongs to another run (another fingerprint):
            it is never resumed silently.
    """

    FILENAME = "checkpoint_last.pt"

    def __init__(self, save_dir: str | os.PathLike, save_dict: dict, fingerprint: str, resume: bool = True) -> None:
        self.path = Path(save_dir) / self.FILENAME
        self.save_dict = {name: _unwrap(obj) for name, obj in save_dict.items()}
        self.fingerprint, self.resume = fingerprint, resume

    def attach(self, engine: Engine) -> None:
        self.save_dict["trainer"] = engine
        engine.add_event_handler(Events.STARTED, self.load)
        engine.add_event_handler(Events.EPOCH_STARTED, self.seed_transforms)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.save)

    @staticmethod
    def seed_transforms(engine: Engine) -> None:
        transform = getattr(engine.data_loader.dataset, "transform", None)
        if isinstance(transform, Compose):
            transform.set_random_state(seed=int(torch.randint(2**31 - 1, ()).item()))

    def load(self, engine: Engine) -> None:
        if not (self.resume and self.path.is_file()):
            return
        try:
            checkpoint = torch.load(self.path, map_location="cpu", weights_only=True)
            fingerprint = checkpoint.get("fingerprint")
        except Exception as error:
            raise TrainingError(f"{self.path}: not a readable checkpoint ({type(error).__name__}: {error}); delete "
                                "it, or pass --resume false to start again.") from None
        if fingerprint != self.fingerprint:
            raise TrainingError(
                f"{self.path}: was saved by another run (other data, settings or max_epochs), so it is not "
                "resumed; pass --resume false to start again (it is then overwritten), or use another bundle_root.")
        Checkpoint.load_objects(to_load=self.save_dict, checkpoint=checkpoint)
        if "trainer_best_metric" in checkpoint:  # absent from older checkpoints
            engine.state.best_metric, engine.state.best_metric_epoch = checkpoint["trainer_best_metric"]
        torch.set_rng_state(checkpoint["random"]["torch"])
        np.random.set_state(_restored(checkpoint["random"]["numpy"]))
        random.setstate(checkpoint["random"]["python"])
        if torch.cuda.is_available() and checkpoint["random"]["cuda"]:
            torch.cuda.set_rng_state_all(checkpoint["random"]["cuda"])
        logger.info("resumed from %s at epoch %d of %d", self.path, engine.state.epoch, engine.state.max_epochs)

    def save(self, engine: Engine) -> None:
        if idist.get_rank() != 0:
            return
        content = {name: obj.state_dict() for name, obj in self.save_dict.items()}
        content["fingerprint"] = self.fingerprint
        content["trainer_best_metric"] = [float(engine.state.best_metric), int(engine.state.best_metric_epoch)]
        content["random"] = {"torch": torch.get_rng_state(), "numpy": _storable(np.random.get_state()),
                             "python": random.getstate(),
                             "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
        save_atomically(content, self.path)


class StopOnNonFiniteLoss:
    """Stop training when a batch's loss is NaN or infinite, naming the batch's images.

    Args:
        file_key: the batch key holding the images' files (``LoadUltrasoundImaged`` writes
            ``image_file``).

    Raises:
        TrainingError: the epoch, the iteration, the loss and the files.
    """

    def __init__(self, file_key: str = "image_file") -> None:
        self.file_key = file_key

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        loss = float(from_engine(["loss"], first=True)(engine.state.output))
        if not math.isfinite(loss):
            files = from_engine([self.file_key])(engine.state.batch)  # the batch, decollated by MONAI's trainer
            raise TrainingError(f"the loss is {loss} at epoch {engine.state.epoch}, iteration "
                                f"{engine.state.iteration}; the batch held {', '.join(map(str, files))}. Training "
                                "stopped; model.pt is left as it was.")


class AttentionMaskLoss:
    """Supervise the attention gate with the lesion mask: add ``weight * BCE(alpha, mask)`` to the loss.

    Attached to a ``SupervisedTrainer`` whose network is an
    :class:`~monai_bus.networks.classifiers.AttentionVGG16`, it keeps the logits of the gate's coefficients
    (``psi``'s output, alpha = sigmoid(logits), [B, 1, H/8, W/8]) of each training forward pass (a forward
    hook), averages the batch's lesion mask [B, 1, H, W] (cropped, resized and augmented with the image;
    see ``lesion_key`` of :func:`~monai_bus.data.transforms.classifier_transforms`) over each cell of the
    gate's grid, and adds their binary cross-entropy, times ``weight``, to the iteration's loss before the
    backward pass. The loss is computed from the logits in float32, so a coefficient that bf16 rounds to
    exactly 0 or 1 still gets a gradient. Passes in evaluation mode (validation) are ignored.

    Weight 0 turns it off: attaching does nothing, and the network need not have a gate. The paper's
    recipe, the study's Table 1 runs and MONAI Label's fine-tuning on class labels train without it.

    Args:
        network: the trained network (may be wrapped in DDP).
        weight: the auxiliary loss's weight, >= 0.
        mask_key: the batch key of the lesion masks.
    """

    def __init__(self, network: torch.nn.Module, weight: float = 0.5, mask_key: str = "lesion") -> None:
        network = _unwrap(network)
        if not weight >= 0:
            raise InputError(f"the mask loss's weight (the bundle's mask_loss_weight) must be >= 0, got {weight}.")
        self.weight, self.mask_key = weight, mask_key
        self.logits: torch.Tensor | None = None
        if weight == 0:
            return
        if not hasattr(network, "gate"):
            raise InputError(f"the mask loss (mask_loss_weight {weight}) supervises an attention gate, which "
                             f"{type(network).__name__} lacks: set attention true, or mask_loss_weight 0.")
        self.gate = network.gate

    def attach(self, engine: Engine) -> None:
        if self.weight == 0:
            return
        self.gate.psi.register_forward_hook(self._keep_logits)
        engine.add_event_handler(IterationEvents.LOSS_COMPLETED, self)

    def _keep_logits(self, module: torch.nn.Module, inputs, logits: torch.Tensor) -> None:
        if module.training:
            self.logits = logits

    def __call__(self, engine: Engine) -> None:
        if self.logits is None or self.mask_key not in engine.state.batch:
            raise TrainingError(f"the mask loss needs the gate's coefficients of a training pass and the batch's "
                                f"'{self.mask_key}' (classifier_transforms' lesion_key); got "
                                f"{'no coefficients' if self.logits is None else 'no masks'}.")
        logits, self.logits = self.logits.float(), None
        mask = engine.state.batch[self.mask_key].to(device=logits.device, dtype=torch.float32)
        target = F.adaptive_avg_pool2d(mask, logits.shape[-2:])
        loss = F.binary_cross_entropy_with_logits(logits, target)
        engine.state.output["loss"] = engine.state.output["loss"] + self.weight * loss


class WeightAveraging:
    """Stochastic weight averaging (Izmailov et al. 2018): at the end of every epoch from ``start_epoch`` on,
    add the network's weights to an equal-weight running average (torch's ``AveragedModel``). At the end of
    each earlier epoch the average is set to the network's weights, so that validation then scores the
    network as plain training would, in place of the weights the average was made from.

    Attach it before the validation handler, so that each epoch's validation scores the average that includes
    that epoch. Give ``averaged`` ``use_buffers=True`` to average batch norm's running statistics as well, in
    place of recomputing them over the training data.

    Args:
        averaged: ``torch.optim.swa_utils.AveragedModel`` of the network; its ``module`` is the averaged network
            to validate and save, and its state dict (``n_averaged`` included) is what a checkpoint must keep.
        network: the trained network (may be wrapped in DDP).
        start_epoch: the first epoch (from 1) whose weights join the average.
    """

    def __init__(self, averaged: torch.optim.swa_utils.AveragedModel, network: torch.nn.Module,
                 start_epoch: int) -> None:
        if not (isinstance(start_epoch, int) and start_epoch >= 1):
            raise InputError(f"the weight averaging's start_epoch must be an integer >= 1, got {start_epoch!r}.")
        self.averaged, self.network, self.start_epoch = averaged, _unwrap(network), start_epoch

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if engine.state.epoch >= self.start_epoch:
            self.averaged.update_parameters(self.network)
        else:
            _unwrap(self.averaged.module).load_state_dict(self.network.state_dict())  # DDP's copy: its module
