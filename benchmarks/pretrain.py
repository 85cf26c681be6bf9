"""Self-supervised pretraining (SimCLR) of the classifier's VGG16 ``features`` on lesion regions, for the
recipe ablation's ``self_supervised`` variant (``benchmarks/recipes.py``).

SimCLR (Chen et al., ICML 2020), without labels: each image's lesion region is cropped as the
bundle's training crops it (:func:`monai_bus.data.transforms.classifier_transforms` with random
margins), then two views of it are drawn with random crops, flips, small rotations and intensity
changes. The network (the bundle's VGG16 ``features``: batch norm, one channel; global average
pooling; a projection head 512 -> 512 -> 128) embeds both, and MONAI's ``ContrastiveLoss`` (NT-Xent)
draws the two views of an image together and pushes the batch's other images away. Only the
datalist's ``training`` and ``validation`` lists are read, never ``test``.

The features are written to ``<out>/features.pt`` as ``{"features.<name>": tensor}``, the layout that
the bundle's ``pretrained_path`` loads (:func:`monai_bus.networks.load_imagenet_features`). A
checkpoint after every epoch (``<out>/checkpoint.pt``) lets a stopped run go on where it stopped;
``<out>/log.json`` holds each epoch's mean loss and minutes.

    python benchmarks/pretrain.py --datalist docs/results/lists/busi_busbra.json --out runs/self_supervised
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from monai.data import CacheDataset, DataLoader
from monai.losses import ContrastiveLoss
from monai.transforms import (Compose, CopyItemsd, EnsureTyped, RandAdjustContrastd, RandAffined, RandFlipd,
                              RandGaussianNoised, RandGaussianSmoothd, RandScaleCropd, RandScaleIntensityd, Resized,
                              SelectItemsd)
from monai.utils import set_determinism
from torch import nn

from monai_bus.data.loading import load_split
from monai_bus.data.transforms import classifier_transforms
from monai_bus.inferers import MixedPrecisionInferer
from monai_bus.networks import vgg16_features

VIEWS = ("view_1", "view_2")


class ContrastiveNetwork(nn.Module):
    """VGG16 ``features`` (batch norm, one channel), global average pooling and a projection head.

    Shapes:
        input [B, 1, H, W] with H, W multiples of 32 -> embeddings [B, projection].
    """

    def __init__(self, projection: int = 128) -> None:
        super().__init__()
        self.features = vgg16_features(in_channels=1, batch_norm=True)
        self.head = nn.Sequential(nn.Linear(512, 512), nn.ReLU(inplace=True), nn.Linear(512, projection))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images).mean(dim=(2, 3)))


def view_transforms(key: str, view_size: int) -> list:
    """One random view of the lesion region in ``key``: a crop of 60-100% of each side resized to
    ``view_size``, a flip, a small rotation, then contrast, gain, blur and noise."""
    return [
        RandScaleCropd(key, roi_scale=0.6, max_roi_scale=1.0, random_size=True),
        Resized(key, spatial_size=(view_size, view_size), mode="bilinear", anti_aliasing=True),
        RandFlipd(key, spatial_axis=1, prob=0.5),
        RandAffined(key, prob=0.5, rotate_range=0.15, padding_mode="zeros"),
        RandAdjustContrastd(key, prob=0.8, gamma=(0.5, 2.0)),
        RandScaleIntensityd(key, factors=0.3, prob=0.8),
        RandGaussianSmoothd(key, prob=0.5, sigma_x=(0.5, 1.5), sigma_y=(0.5, 1.5)),
        RandGaussianNoised(key, std=0.1, prob=0.5),
    ]


def pairs_dataset(datalist: Path, image_size: int, view_size: int) -> CacheDataset:
    """The training and validation images' lesion regions [1, image_size, image_size], loaded once, and
    per draw two views [1, view_size, view_size] under ``view_1`` and ``view_2``."""
    items = load_split(str(datalist), "training") + load_split(str(datalist), "validation")
    transforms = classifier_transforms(image_size, roi=True, roi_margin=0.0, random_crop=True)  # random margins
    transforms += [SelectItemsd("image"), EnsureTyped("image", track_meta=False),
                   CopyItemsd("image", times=2, names=list(VIEWS))]
    for view in VIEWS:  # one transform per key: a transform given both keys would draw the same view twice
        transforms += view_transforms(view, view_size)
    return CacheDataset(items, Compose(transforms), cache_rate=1.0, num_workers=0, progress=False)


def pretrain(datalist: Path, out: Path, epochs: int, batch_size: int = 64, image_size: int = 128, view_size: int = 96,
             learning_rate: float = 1e-3, temperature: float = 0.2, num_workers: int = 1, seed: int = 0) -> Path:
    """Train for ``epochs`` (going on from ``<out>/checkpoint.pt`` when there is one) and write the features.

    Returns:
        the path of ``features.pt``.
    """
    out.mkdir(parents=True, exist_ok=True)
    set_determinism(seed)
    loader = DataLoader(pairs_dataset(datalist, image_size, view_size), batch_size=batch_size,
                        shuffle=True, drop_last=True, num_workers=num_workers)
    network = ContrastiveNetwork().to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(network.parameters(), lr=learning_rate, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    loss_function, inferer = ContrastiveLoss(temperature=temperature), MixedPrecisionInferer()
    checkpoint_file, log = out / "checkpoint.pt", []
    if checkpoint_file.is_file():
        checkpoint = torch.load(checkpoint_file, weights_only=True)
        if checkpoint["epochs"] != epochs:  # its learning-rate schedule is for that many
            raise SystemExit(f"{checkpoint_file}: made for {checkpoint['epochs']} epochs, not {epochs}; run it with "
                             f"--epochs {checkpoint['epochs']}, or give another --out.")
        for name, state in (("network", network), ("optimizer", optimizer), ("scheduler", scheduler)):
            state.load_state_dict(checkpoint[name])
        log = checkpoint["log"]
    for epoch in range(len(log), epochs):
        start, losses = time.perf_counter(), []
        network.train()
        for batch in loader:
            loss = loss_function(*(inferer(batch[view], network) for view in VIEWS))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        scheduler.step()
        log.append({"epoch": epoch + 1, "loss": sum(losses) / len(losses),
                    "minutes": (time.perf_counter() - start) / 60})
        print(json.dumps(log[-1]), flush=True)
        partial = checkpoint_file.with_name(".checkpoint.pt.partial")  # a stop while saving keeps the last one
        torch.save({"network": network.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "log": log, "epochs": epochs}, partial)
        partial.replace(checkpoint_file)
        (out / "log.json").write_text(json.dumps(log, indent=1) + "\n")
    features_file = out / "features.pt"
    torch.save({f"features.{name}": tensor.contiguous() for name, tensor in network.features.state_dict().items()},
               features_file)
    return features_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datalist", required=True, help="datalist whose training and validation lists are read")
    parser.add_argument("--out", required=True, help="folder for features.pt, checkpoint.pt and log.json")
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    print(pretrain(Path(args.datalist), Path(args.out), args.epochs))


if __name__ == "__main__":
    main()
