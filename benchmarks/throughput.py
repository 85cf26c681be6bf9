"""Training and inference throughput of VGG16 and Attention-VGG16 at 128x128, against matmul peak.

Prints, from one run on this machine: the matmul rate (GFLOP/s) in float32 and bfloat16; for each
network and precision, training img/s (forward, CE-logcosh loss, backward, AdamW step; batch 32)
and inference img/s (batch 1 and 32); the training FLOP rate as a fraction of the matmul rate of
the same precision; the cost of the attention gate relative to plain VGG16; one image end to end
through the inference API (file to probability and attention map) with the bundle and its shipped
weights, on a synthetic image with a lesion box; the same without a box, with the shipped
localiser, on the four shipped sample images (localiser, then classifier around its box: real
weights, since whether the localiser finds a lesion decides the work); both also with the
uncertainty's test-time views (:mod:`monai_bus.uncertainty`), as the front ends run, and the latter
also with the bundle's ``flip_tta`` off, for what the flip test-time augmentation costs; and the data-loading share of
a training step: the bundle's ``train#preprocessing`` (random crop around the lesion, resize,
augmentation; loading and the box are cached, as in training) on 560 px images, in the main
process, against the bf16 training step of Attention-VGG16. ``--json`` writes the same figures to a
file.

    python benchmarks/throughput.py [--iterations 6] [--threads N] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from monai_bus.data.boxes import box_from_masks
from monai_bus.data.demo import synthesize_case
from monai_bus.inference import BundleClassifier
from monai_bus.inferers import bf16_supported
from monai_bus.localiser import LesionLocaliser
from monai_bus.losses import CELogCoshLoss
from monai_bus.networks import AttentionVGG16, VGG16Classifier

SIZE, BATCH = 128, 32
REPOSITORY = Path(__file__).resolve().parents[1]
BUNDLE, LOCALISER, SAMPLES = REPOSITORY / "bundle", REPOSITORY / "localiser", REPOSITORY / "monai_bus" / "samples"
END_TO_END_IMAGE = 560  # pixels a side, about a BUSI or BUS-BRA image


def matmul_gflops(dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def precision_context(bf16: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()


def prepare(network_class, bf16: bool) -> torch.nn.Module:
    network = network_class(batch_norm=True)
    return network.to(memory_format=torch.channels_last) if bf16 else network


def images(batch: int, bf16: bool) -> torch.Tensor:
    x = torch.randn(batch, 1, SIZE, SIZE)
    return x.contiguous(memory_format=torch.channels_last) if bf16 else x


def training_step(network, optimizer, loss_function, x, y, bf16: bool) -> None:
    optimizer.zero_grad(set_to_none=True)
    with precision_context(bf16):
        logits = network(x)
    loss_function(logits.float(), y).backward()
    optimizer.step()


def training_flops_per_image(network_class) -> float:
    network, loss_function = network_class(batch_norm=True), CELogCoshLoss()
    counter = FlopCounterMode(display=False)
    with counter:
        loss_function(network(images(2, False)), torch.tensor([0, 1])).backward()
    return counter.get_total_flops() / 2


def training_rate(network_class, bf16: bool, iterations: int) -> float:
    network = prepare(network_class, bf16).train()
    optimizer, loss_function = torch.optim.AdamW(network.parameters(), lr=1e-4), CELogCoshLoss()
    x, y = images(BATCH, bf16), torch.randint(0, 2, (BATCH,))
    training_step(network, optimizer, loss_function, x, y, bf16)  # warm-up
    start = time.perf_counter()
    for _ in range(iterations):
        training_step(network, optimizer, loss_function, x, y, bf16)
    return BATCH * iterations / (time.perf_counter() - start)


@torch.no_grad()
def inference_rate(network_class, bf16: bool, batch: int, iterations: int) -> float:
    network = prepare(network_class, bf16).eval()
    x = images(batch, bf16)
    repeats = iterations * (BATCH // batch)
    with precision_context(bf16):
        network(x)
        start = time.perf_counter()
        for _ in range(repeats):
            network(x)
    return batch * repeats / (time.perf_counter() - start)


def cpu_name() -> str:
    """The processor's model name from /proc/cpuinfo, else what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def write_sample(folder: Path, index: int) -> dict:
    """A synthetic END_TO_END_IMAGE px image and its mask in ``folder``; its datalist item."""
    image, mask = synthesize_case(index % 2, END_TO_END_IMAGE, np.random.default_rng(index))
    Image.fromarray(image).save(folder / f"image_{index}.png")
    Image.fromarray(mask).save(folder / f"mask_{index}.png")
    return {"image": str(folder / f"image_{index}.png"), "mask": str(folder / f"mask_{index}.png"), "label": index % 2}


def data_loading_ms(batches: int) -> float:
    """Median milliseconds to prepare one training batch of BATCH images with the bundle's own
    ``train#preprocessing``, after caching its deterministic part (``CacheDataset``, as in training)."""
    from monai.bundle import ConfigParser
    from monai.data import CacheDataset, DataLoader

    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "train.json"))
    parser.read_meta(str(BUNDLE / "configs" / "metadata.json"))
    parser["bundle_root"] = str(BUNDLE)
    with tempfile.TemporaryDirectory() as folder:
        items = [write_sample(Path(folder), index) for index in range(BATCH)]
        dataset = CacheDataset(items, parser.get_parsed_content("train#preprocessing"), progress=False)
        loader = DataLoader(dataset, batch_size=BATCH, num_workers=0)
        next(iter(loader))
        times = []
        for _ in range(batches):
            start = time.perf_counter()
            next(iter(loader))
            times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def end_to_end_ms(repeats: int, uncertainty: bool) -> float:
    """Median milliseconds of ``BundleClassifier.predict`` on a PNG file with a lesion box: reading,
    checks, crop, resize, one forward pass (of the input and its mirror image, with the bundle's
    ``flip_tta``), softmax and the attention map at the image's size (and, with ``uncertainty``, the
    test-time views: 4 more crops and the views in the forward pass, a batch of 6)."""
    with tempfile.TemporaryDirectory() as folder:
        item = write_sample(Path(folder), 1)
        box = box_from_masks(item["mask"])
        classifier = BundleClassifier(BUNDLE, device="cpu", uncertainty=uncertainty)
        for _ in range(3):
            classifier.predict(item["image"], box=box)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            classifier.predict(item["image"], box=box)
            times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def bundle_without_flip(folder: Path) -> Path:
    """A copy of the shipped bundle (configs and weights) in ``folder`` with ``flip_tta`` off."""
    bundle = Path(shutil.copytree(BUNDLE, folder / "bundle", ignore=shutil.ignore_patterns("eval", "demo_data")))
    meta_file = bundle / "configs" / "metadata.json"
    metadata = json.loads(meta_file.read_text())
    metadata["model_settings"]["flip_tta"] = False
    meta_file.write_text(json.dumps(metadata, indent=4))
    return bundle


def localised_ms(repeats: int, uncertainty: bool, bundle: Path = BUNDLE) -> float:
    """Median milliseconds of ``BundleClassifier.predict`` without a box, with the classifier ``bundle`` and
    the shipped localiser, over the sample images: reading the image (twice), the localiser's mask at the
    image's size and its box, the crop around it, one forward pass of the classifier and the attention map
    (and the test-time views, with ``uncertainty``)."""
    classifier = BundleClassifier(bundle, device="cpu", localiser=LesionLocaliser(LOCALISER, device="cpu"),
                                  uncertainty=uncertainty)
    images = sorted(SAMPLES.glob("*.png"))
    for image in images:
        classifier.predict(image)
    times = []
    for _ in range(repeats):
        for image in images:
            start = time.perf_counter()
            prediction = classifier.predict(image)
            times.append(1000 * (time.perf_counter() - start))
            if prediction.box is None:
                raise RuntimeError(f"{image}: the localiser found no lesion, so the classifier was not timed")
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=6, help="timed batches per measurement")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    has_bf16 = bf16_supported(torch.device("cpu"))
    peak = {False: matmul_gflops(torch.float32)}
    if has_bf16:
        peak[True] = matmul_gflops(torch.bfloat16)
    print(f"threads: {torch.get_num_threads()}, native bf16: {has_bf16}")
    print(f"matmul 2048^3: fp32 {peak[False]:.0f} GFLOP/s" + (f", bf16 {peak[True]:.0f} GFLOP/s" if has_bf16 else ""))
    print(f"\n{'network':16s} {'precision':20s} {'train img/s':>11s} {'train GFLOP/s':>13s} {'of matmul':>9s} "
          f"{'infer b1 img/s':>14s} {'infer b32 img/s':>15s}")
    train_rates, rows = {}, []
    for bf16 in [False, True] if has_bf16 else [False]:
        for network_class in (VGG16Classifier, AttentionVGG16):
            flops = training_flops_per_image(network_class)
            rate = training_rate(network_class, bf16, args.iterations)
            train_rates[network_class.__name__, bf16] = rate
            b1 = inference_rate(network_class, bf16, 1, args.iterations)
            b32 = inference_rate(network_class, bf16, BATCH, args.iterations)
            achieved = flops * rate / 1e9
            print(f"{network_class.__name__:16s} {'bf16 + channels_last' if bf16 else 'fp32':20s} {rate:11.1f} "
                  f"{achieved:13.0f} {achieved / peak[bf16]:9.0%} {b1:14.1f} {b32:15.1f}")
            rows.append({"network": network_class.__name__, "precision": "bf16 + channels_last" if bf16 else "fp32",
                         "train_img_per_s": rate, "train_gflops": achieved, "of_matmul": achieved / peak[bf16],
                         "infer_b1_img_per_s": b1, "infer_b32_img_per_s": b32})
    print()
    for bf16 in [False, True] if has_bf16 else [False]:
        extra = train_rates["VGG16Classifier", bf16] / train_rates["AttentionVGG16", bf16] - 1
        print(f"attention gate training cost ({'bf16' if bf16 else 'fp32'}): {extra:+.1%} time per image vs VGG16")
    if has_bf16:
        print(f"bf16 + channels_last training speed-up over fp32 (AttentionVGG16): "
              f"{train_rates['AttentionVGG16', True] / train_rates['AttentionVGG16', False]:.1f}x")
    end_to_end = {views: end_to_end_ms(10 * args.iterations, views) for views in (False, True)}
    print(f"one {END_TO_END_IMAGE}x{END_TO_END_IMAGE} PNG end to end through BundleClassifier.predict (with a box): "
          f"{end_to_end[False]:.1f} ms (median); with the uncertainty's views: {end_to_end[True]:.1f} ms")
    localised = {views: localised_ms(args.iterations, views) for views in (False, True)}
    with tempfile.TemporaryDirectory() as folder:
        without_flip = localised_ms(args.iterations, False, bundle_without_flip(Path(folder)))
    print(f"a sample image (BUS-BRA PNG) end to end without a box, localiser then classifier (shipped weights): "
          f"{localised[False]:.1f} ms (median); with the uncertainty's views: {localised[True]:.1f} ms; "
          f"without the views and with flip_tta off: {without_flip:.1f} ms")
    loading = data_loading_ms(batches=args.iterations)
    step = 1000 * BATCH / train_rates["AttentionVGG16", has_bf16]
    print(f"data loading of a training batch ({BATCH} images of {END_TO_END_IMAGE} px, main process): {loading:.0f} ms, "
          f"{loading / (loading + step):.0%} of a training step with the {step:.0f} ms AttentionVGG16 step")
    if args.json:
        args.json.write_text(json.dumps({
            "machine": {"processor": cpu_name(), "threads": torch.get_num_threads(),
                        "native_bf16": has_bf16, "torch": torch.__version__},
            "matmul_gflops": {"fp32": peak[False], **({"bf16": peak[True]} if has_bf16 else {})},
            "networks": rows, "end_to_end_ms": end_to_end[False], "localised_end_to_end_ms": localised[False],
            "with_uncertainty_ms": {"end_to_end": end_to_end[True], "localised_end_to_end": localised[True]},
            "localised_end_to_end_without_flip_ms": without_flip,
            "training_batch": {"data_loading_ms": loading, "step_ms": step,
                               "data_loading_share": loading / (loading + step)}}, indent=2) + "\n")


if __name__ == "__main__":
    main()
