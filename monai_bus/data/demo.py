"""Synthetic B-mode-like breast-ultrasound images for running the bundle without a real dataset.

.. warning::

    This is DEMO data, not clinical data. The images are procedurally generated cartoons of
    breast ultrasound; they carry no patient information and no diagnostic meaning. A model
    trained on them learns only the hand-coded rules below and must never be used on patients
    or reported as a result on real images.

Each image (8-bit greyscale, ``[size, size]``, rows = depth, columns = lateral position) has

- fully developed speckle: a complex Gaussian field filtered by an anisotropic point-spread
  function (wider laterally than axially) whose magnitude is Rayleigh distributed, applied
  multiplicatively to the tissue echogenicity;
- horizontal tissue layering with wavy boundaries (bright skin line, subcutaneous fat with a
  few hypoechoic fat lobules, fibroglandular tissue, retromammary layer / pectoral muscle with
  striations) plus a smooth low-frequency echogenicity variation;
- depth-dependent attenuation (darker towards the bottom) and a power-law display compression
  with random gain;
- exactly one hypoechoic lesion with random position, size and contrast:

  * benign (label 0): oval with a smooth margin (at most a gentle macro-lobulation),
    wider-than-tall (mask bounding box width / height >= 1.1), no or slight posterior
    acoustic enhancement (brighter band below);
  * malignant (label 1): irregular / spiculated margin (radius modulated by random harmonics
    plus narrow spikes), taller-than-wide (bounding box height / width >= 1.1), posterior
    acoustic shadowing (darker band below) and sometimes an echogenic halo.

Contrast, size, depth, gain, attenuation, layering and the strength of the posterior effect
vary randomly and overlap between the classes, so no single intensity statistic separates
them, while shape and posterior features make the task learnable by a small CNN.

The lesion mask (0 / 255) is returned and written next to every image.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from monai_bus.data.splits import assign_groups

__all__ = ["MIN_SIZE", "MAX_SIZE", "synthesize_case", "write_demo_dataset"]

MIN_SIZE = 32
"""Smallest accepted image side in pixels (smaller lesions cannot show their shape)."""
MAX_SIZE = 4096
"""Largest accepted image side in pixels."""
GENERATOR_VERSION = 2
"""Bumped whenever the images or the split produced for given parameters change (invalidates caches)."""

_MIN_ASPECT = 1.1  # benign width/height and malignant height/width are at least this
_MAX_TRIES = 200
_CASE_RE = re.compile(r"^case_\d+\.png$")


# --------------------------------------------------------------------------------------------
# argument validation
# --------------------------------------------------------------------------------------------
def _check_int(name: str, value, low: int, high: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r} ({type(value).__name__}).")
    value = int(value)
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}.")
    return value


def _check_label(label) -> int:
    if isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, np.integer)) or int(label) not in (0, 1):
        raise ValueError(f"label must be 0 (benign) or 1 (malignant), got {label!r}.")
    return int(label)


def _check_split(split) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in split)
    except (TypeError, ValueError):
        raise ValueError(f"split must be a sequence of 3 numbers (train, validation, test), got {split!r}.") from None
    if len(values) != 3:
        raise ValueError(f"split must have 3 fractions (train, validation, test), got {len(values)}: {split!r}.")
    if not all(math.isfinite(v) and v >= 0.0 for v in values):
        raise ValueError(f"split fractions must be finite and >= 0, got {split!r}.")
    if abs(sum(values) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must sum to 1, got {split!r} (sum {sum(values):.6g}).")
    if values[0] <= 0.0:
        raise ValueError(f"the training fraction must be > 0, got {split!r}.")
    return values


# --------------------------------------------------------------------------------------------
# image synthesis
# --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=32)
def _basis(size: int, cells: int) -> np.ndarray:
    """Smooth interpolation weights [size, cells] (normalised Gaussian bumps on a coarse grid)."""
    pos = (np.arange(size, dtype=np.float64) + 0.5) / size * cells - 0.5
    w = np.exp(-0.5 * ((pos[:, None] - np.arange(cells)[None, :]) / 0.7) ** 2)
    return (w / w.sum(1, keepdims=True)).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth random field [size, size], zero mean, std around 1 (separable basis expansion)."""
    coarse = rng.standard_normal((cells, cells), dtype=np.float32)
    basis = _basis(size, cells)
    # einsum (not BLAS matmul): tiny products, and BLAS worker threads would only spin
    return 2.0 * np.einsum("ik,lk->il", np.einsum("ij,jk->ik", basis, coarse), basis)


def _speckle(rng: np.random.Generator, size: int) -> np.ndarray:
    """Rayleigh speckle [size, size], mean 1, correlated more laterally than axially."""
    scale = size / 256.0
    sigma = (max(0.45, 0.7 * scale), max(0.7, 1.4 * scale))  # (axial, lateral) PSF width in px
    field = rng.standard_normal((2, size, size), dtype=np.float32)
    real = ndimage.gaussian_filter(field[0], sigma, mode="wrap", truncate=3.0)
    imag = ndimage.gaussian_filter(field[1], sigma, mode="wrap", truncate=3.0)
    envelope = np.hypot(real, imag)  # magnitude of a complex Gaussian: Rayleigh distributed
    return envelope / envelope.mean()


def _tissue(rng: np.random.Generator, size: int, depth: np.ndarray, lateral: np.ndarray) -> np.ndarray:
    """Layered tissue echogenicity [size, size] (roughly 0.3 .. 1.3)."""
    x = lateral[0]  # [size] in [0, 1)

    def boundary(mean: float, amp: float) -> np.ndarray:
        phase, freq = rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 2.0)
        return (mean + amp * np.sin(2 * np.pi * freq * x + phase)).astype(np.float32)

    edge = 1.5 / size  # soft layer transitions, ~1.5 px

    def below(b: np.ndarray) -> np.ndarray:  # 0 above the boundary, 1 below it
        return 0.5 * (1.0 + np.tanh((depth - b[None, :]) / edge))

    skin = boundary(rng.uniform(0.025, 0.045), rng.uniform(0.0, 0.006))
    fat = boundary(rng.uniform(0.12, 0.24), rng.uniform(0.01, 0.04))
    deep = boundary(rng.uniform(0.74, 0.86), rng.uniform(0.01, 0.04))

    level_skin = rng.uniform(1.15, 1.4)
    level_fat = rng.uniform(0.3, 0.5)
    level_gland = rng.uniform(0.8, 1.0)
    level_deep = rng.uniform(0.4, 0.6)

    t = level_skin + (level_fat - level_skin) * below(skin)
    t = t + (level_gland - level_fat) * below(fat)
    t = t + (level_deep - level_gland) * below(deep)

    # pectoral-muscle striations in the deepest layer, thin bright interfaces inside the gland
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(18, 30) * (depth - 0.02 * np.sin(6 * lateral)))
    t = t * (1.0 + 0.25 * stripes * below(deep + 0.03))
    for _ in range(int(rng.integers(1, 4))):
        line = boundary(rng.uniform(fat.mean() + 0.05, deep.mean() - 0.05), rng.uniform(0.01, 0.05))
        t = t * (1.0 + rng.uniform(0.15, 0.35) * np.exp(-(((depth - line[None, :]) * size / 1.2) ** 2)))

    # hypoechoic fat lobules in the subcutaneous layer (distractors, not part of the mask)
    for _ in range(int(rng.integers(0, 4))):
        cx, w = rng.uniform(0.05, 0.95), rng.uniform(0.04, 0.1)
        cy = rng.uniform(skin.mean() + 0.02, fat.mean() - 0.01)
        h = rng.uniform(0.015, min(0.05, max(0.02, fat.mean() - skin.mean()) / 2))
        blob = np.exp(-(((lateral - cx) / w) ** 2 + ((depth - cy) / h) ** 2) ** 2)
        t = t * (1.0 - rng.uniform(0.15, 0.35) * blob)

    # slow heterogeneity of the parenchyma
    t = t * (1.0 + rng.uniform(0.08, 0.18) * _smooth_noise(rng, size, int(rng.integers(5, 9))))
    return np.clip(t, 0.05, None).astype(np.float32)


def _lesion_shape(label: int, size: int, rng: np.random.Generator) -> dict:
    """Random lesion geometry (pixels); not yet checked against the aspect-ratio rule."""
    r_eq = rng.uniform(0.065, 0.13) * size
    if label == 0:
        ratio = rng.uniform(1.15, 2.1)  # width / height of the base ellipse
        half_w, half_h = r_eq * math.sqrt(ratio), r_eq / math.sqrt(ratio)
        n_harm = int(rng.integers(0, 3))
        harm_k = rng.integers(2, 4, size=n_harm)  # gentle macro-lobulation at most
        harm_a = rng.uniform(0.0, 0.05, size=n_harm)
        n_spikes = 0
        tilt = rng.uniform(-0.2, 0.2)
    else:
        ratio = rng.uniform(1.1, 1.9)  # height / width of the base ellipse
        half_w, half_h = r_eq / math.sqrt(ratio), r_eq * math.sqrt(ratio)
        n_harm = int(rng.integers(3, 7))
        harm_k = rng.integers(3, 11, size=n_harm)
        harm_a = rng.uniform(0.03, 0.11, size=n_harm)
        n_spikes = int(rng.integers(0, 13))
        tilt = rng.uniform(-0.25, 0.25)
    return {
        "cx": rng.uniform(0.25, 0.75) * size,
        "cy": rng.uniform(0.32, 0.55) * size,
        "half_w": half_w,
        "half_h": half_h,
        "tilt": tilt,
        "harm_k": harm_k.astype(np.float32),
        "harm_a": harm_a.astype(np.float32),
        "harm_p": rng.uniform(0, 2 * np.pi, size=n_harm).astype(np.float32),
        "spike_t": rng.uniform(-np.pi, np.pi, size=n_spikes).astype(np.float32),
        "spike_a": rng.uniform(0.25, 0.6, size=n_spikes).astype(np.float32),
        "spike_w": rng.uniform(0.05, 0.11, size=n_spikes).astype(np.float32),
    }


def _margin_radius(shape: dict, theta: np.ndarray) -> np.ndarray:
    """Margin radius in px along lesion-frame angles ``theta`` (any shape)."""
    a, b = shape["half_w"], shape["half_h"]
    radius = a * b / np.sqrt((b * np.cos(theta)) ** 2 + (a * np.sin(theta)) ** 2)
    mod = np.ones_like(theta)
    for k, amp, ph in zip(shape["harm_k"], shape["harm_a"], shape["harm_p"]):
        mod += amp * np.cos(k * theta + ph)
    for t0, amp, width in zip(shape["spike_t"], shape["spike_a"], shape["spike_w"]):
        diff = np.remainder(theta - t0 + np.pi, 2 * np.pi) - np.pi  # wrapped angle difference
        mod += amp * np.exp(-0.5 * (diff / width) ** 2)
    return radius * mod


def _lesion_signed_distance(shape: dict, size: int) -> np.ndarray:
    """Approximate signed radial distance in px to the lesion margin [size, size] (> 0 inside).

    Evaluated only in a window around the lesion; elsewhere it is ``-size`` (far outside).
    """
    r_max = float(_margin_radius(shape, np.linspace(-np.pi, np.pi, 721, dtype=np.float32)).max()) + 4.0
    r0, r1 = max(0, int(shape["cy"] - r_max)), min(size, int(math.ceil(shape["cy"] + r_max)) + 1)
    c0, c1 = max(0, int(shape["cx"] - r_max)), min(size, int(math.ceil(shape["cx"] + r_max)) + 1)
    dy = np.arange(r0, r1, dtype=np.float32)[:, None] - np.float32(shape["cy"])
    dx = np.arange(c0, c1, dtype=np.float32)[None, :] - np.float32(shape["cx"])
    c, s = np.float32(math.cos(shape["tilt"])), np.float32(math.sin(shape["tilt"]))
    u, v = c * dx + s * dy, -s * dx + c * dy  # lesion frame (u lateral, v axial)
    dist = np.full((size, size), -float(size), dtype=np.float32)
    dist[r0:r1, c0:c1] = _margin_radius(shape, np.arctan2(v, u)) - np.hypot(u, v)
    return dist


def _place_lesion(label: int, size: int, rng: np.random.Generator):
    """Sample a lesion whose rasterised mask obeys the class aspect rule and fits the frame.

    Returns (signed distance [size, size] float32, mask [size, size] bool).
    """
    margin = max(2, int(0.04 * size))
    for _ in range(_MAX_TRIES):
        shape = _lesion_shape(label, size, rng)
        dist = _lesion_signed_distance(shape, size)
        mask = dist > 0
        r_any, c_any = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        if r_any.size == 0:
            continue
        height, width = r_any[-1] - r_any[0] + 1, c_any[-1] - c_any[0] + 1
        aspect = width / height if label == 0 else height / width
        fits = r_any[0] >= 0.12 * size and r_any[-1] <= 0.78 * size and c_any[0] >= margin and c_any[-1] < size - margin
        if aspect >= _MIN_ASPECT and fits and mask.sum() >= 9:
            return dist, mask
    raise RuntimeError(f"could not place a lesion for label={label}, size={size} in {_MAX_TRIES} tries.")


def synthesize_case(label: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Synthesize one B-mode-like breast-ultrasound image with one hypoechoic lesion (DEMO data).

    Parameters
    ----------
    label : int
        0 = benign (oval, smooth, wider-than-tall, no or slight posterior enhancement),
        1 = malignant (irregular / spiculated, taller-than-wide, posterior shadowing).
    size : int
        Side of the square image in pixels, in ``[MIN_SIZE, MAX_SIZE]`` = ``[32, 4096]``.
    rng : numpy.random.Generator
        Source of randomness; the output is a deterministic function of its state.

    Returns
    -------
    image : numpy.ndarray of uint8, shape [size, size]
        Greyscale image; row 0 is the skin surface (top), depth increases downwards.
    mask : numpy.ndarray of uint8, shape [size, size]
        Lesion mask with values 0 (background) and 255 (lesion); never empty.

    Raises
    ------
    ValueError
        If ``label`` is not 0/1, ``size`` is not an integer in range, or ``rng`` is not a
        ``numpy.random.Generator``.
    """
    label = _check_label(label)
    size = _check_int("size", size, MIN_SIZE, MAX_SIZE)
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}.")

    grid = (np.arange(size, dtype=np.float32) + 0.5) / size
    depth, lateral = grid[:, None], grid[None, :]

    tissue = _tissue(rng, size, depth, lateral)
    dist, mask = _place_lesion(label, size, rng)

    # soft lesion occupancy: sharp for benign (smooth, circumscribed), blurrier for malignant
    edge = (0.6 if label == 0 else rng.uniform(0.8, 1.6)) * max(1.0, size / 256.0)
    soft = 0.5 * (1.0 + np.tanh(dist / edge))

    # posterior acoustic feature: from the lesion down to the bottom, in the columns it covers
    below = np.maximum.accumulate(soft, axis=0) * (1.0 - soft)
    below = ndimage.gaussian_filter1d(below, sigma=max(1.0, 0.012 * size), axis=1, mode="nearest")
    bottom = np.flatnonzero(mask.any(1))[-1]
    decay = np.exp(-np.clip(depth * size - bottom, 0, None) / (rng.uniform(0.25, 0.6) * size))
    if label == 0:
        strength = rng.uniform(-0.05, 0.35)  # mostly enhancement, sometimes nothing at all
    else:
        strength = -rng.uniform(0.15, 0.6)  # shadowing, weak in some cases
    tissue_post = tissue * (1.0 + strength * below * decay)

    # echogenic halo around some malignant lesions
    if label == 1 and rng.random() < 0.35:
        halo = np.exp(-(((dist + 1.5 * edge) / (rng.uniform(1.0, 2.5) * max(1.0, size / 256.0))) ** 2))
        tissue_post = tissue_post * (1.0 + rng.uniform(0.2, 0.5) * halo * (dist < 0))

    # hypoechoic lesion with faint internal echoes; contrast ranges overlap between classes
    contrast = rng.uniform(0.05, 0.3) if label == 0 else rng.uniform(0.04, 0.25)
    inner = contrast * float(np.median(tissue[mask])) * (1.0 + 0.25 * _smooth_noise(rng, size, 6))
    echo = tissue_post * (1.0 - soft) + inner * soft

    # speckle, attenuation with depth, display compression and gain
    attenuation = np.exp(-rng.uniform(0.8, 1.7) * depth) * (1.0 + 0.08 * np.exp(-depth / 0.05))
    envelope = echo * _speckle(rng, size) * attenuation
    gamma, gain = rng.uniform(0.45, 0.6), rng.uniform(145.0, 190.0)
    image = gain * np.power(envelope, gamma) + rng.normal(0.0, 2.0, size=(size, size))
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return image, (mask.astype(np.uint8) * 255)


# --------------------------------------------------------------------------------------------
# dataset writer
# --------------------------------------------------------------------------------------------
def _load_json(path: Path):
    try:
        with open(path, encoding="utf8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _is_current(datalist_path: Path, params: dict) -> bool:
    data = _load_json(datalist_path)
    if not isinstance(data, dict) or data.get("demo_parameters") != params:
        return False
    root = datalist_path.parent
    try:
        items = [item for key in ("training", "validation", "test") for item in data[key]]
        return len(items) == params["num_images"] and all(
            (root / item["image"]).is_file() and (root / item["mask"]).is_file() for item in items
        )
    except (KeyError, TypeError):
        return False


def write_demo_dataset(
    out_dir: str | os.PathLike,
    num_images: int = 300,
    size: int = 256,
    seed: int = 0,
    split: Sequence[float] = (0.75, 0.15, 0.10),
) -> Path:
    """Write a synthetic (DEMO, non-clinical) breast-ultrasound dataset and its MONAI datalist.

    Layout::

        out_dir/images/case_0000.png   uint8 greyscale [size, size]
        out_dir/masks/case_0000.png    uint8 0/255 lesion mask [size, size]
        out_dir/datalist.json          {"training": [...], "validation": [...], "test": [...],
                                        "demo_parameters": {...}}

    Each datalist item is ``{"image": "images/case_0000.png", "mask": "masks/case_0000.png",
    "label": 0 | 1, "group": "case_0000", "source": "demo"}`` with paths relative to
    ``out_dir`` (as ``monai.data.load_decathlon_datalist(..., base_dir=out_dir)`` expects).
    Case ``i`` has label ``i % 2`` (classes balanced to within one image) and is generated from
    its own child of ``numpy.random.SeedSequence(seed)``, so a case's pixels depend only on
    ``(seed, i, size)``. The split is stratified by label (by :func:`monai_bus.data.splits.assign_groups`, each case a
    group of its own) and deterministic for a seed.

    The call is idempotent: if ``out_dir/datalist.json`` exists, was written with the same
    parameters (its ``"demo_parameters"`` entry) and every listed file exists, it is returned
    without touching anything. Otherwise the dataset is (re)generated, stale ``case_*.png``
    files from an earlier, larger run are removed, and the datalist is written last
    (atomically), so an interrupted run is regenerated next time.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Output folder; created if missing.
    num_images : int, default 300
        Number of cases, in ``[2, 100000]``.
    size : int, default 256
        Image side in pixels, in ``[32, 4096]``.
    seed : int, default 0
        Non-negative random seed.
    split : sequence of 3 floats, default (0.75, 0.15, 0.10)
        Fractions for training, validation and test; each >= 0 (training > 0), summing to 1.

    Returns
    -------
    pathlib.Path
        Path of ``out_dir/datalist.json``.

    Raises
    ------
    ValueError
        On an invalid argument.
    """
    num_images = _check_int("num_images", num_images, 2, 100_000)
    size = _check_int("size", size, MIN_SIZE, MAX_SIZE)
    seed = _check_int("seed", seed, 0, 2**63 - 1)
    split = _check_split(split)
    if out_dir is None or str(out_dir) == "":
        raise ValueError("out_dir must be a non-empty path.")

    root = Path(out_dir)
    datalist_path = root / "datalist.json"
    params = {
        "num_images": num_images,
        "size": size,
        "seed": seed,
        "split": list(split),
        "generator_version": GENERATOR_VERSION,
    }
    if _is_current(datalist_path, params):
        return datalist_path

    image_dir, mask_dir = root / "images", root / "masks"
    image_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    if datalist_path.exists():
        datalist_path.unlink()  # invalid until the new one is complete

    width = max(4, len(str(num_images - 1)))
    names = [f"case_{i:0{width}d}" for i in range(num_images)]
    labels = np.arange(num_images) % 2
    children = np.random.SeedSequence(seed).spawn(num_images)
    for name, label, child in zip(names, labels, children):
        image, mask = synthesize_case(int(label), size, np.random.default_rng(child))
        Image.fromarray(image).save(image_dir / f"{name}.png", compress_level=1)
        Image.fromarray(mask).save(mask_dir / f"{name}.png", compress_level=9)

    keep = {f"{name}.png" for name in names}
    for folder in (image_dir, mask_dir):
        for path in folder.iterdir():
            if _CASE_RE.match(path.name) and path.name not in keep:
                path.unlink()

    assignment = assign_groups(np.eye(2)[labels], split, seed)  # each case a group of its own
    data: dict = {"training": [], "validation": [], "test": []}
    for name, label, part in zip(names, labels, assignment):
        key = ("training", "validation", "test")[part]
        data[key].append(
            {
                "image": f"images/{name}.png",
                "mask": f"masks/{name}.png",
                "label": int(label),
                "group": name,
                "source": "demo",
            }
        )
    data["demo_parameters"] = params
    data["description"] = "Synthetic DEMO breast-ultrasound data (monai_bus.data.demo); not clinical data."

    tmp = datalist_path.with_name(f".{datalist_path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf8") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, datalist_path)
    return datalist_path
