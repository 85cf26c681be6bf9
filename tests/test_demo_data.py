"""Tests for the synthetic DEMO breast-ultrasound generator (monai_bus.data.demo)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from monai_bus.data.demo import synthesize_case, write_demo_dataset

SIZE = 64
N_SAMPLES = 8
SPLITS = ("training", "validation", "test")


def _case(label: int, seed: int, size: int = SIZE):
    return synthesize_case(label, size, np.random.default_rng(seed))


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return rows[0], rows[-1], cols[0], cols[-1]


def _posterior_ratio(image: np.ndarray, mask: np.ndarray) -> float:
    """Mean of a band just below the lesion / mean of the same rows beside the lesion."""
    r0, r1, c0, c1 = _bbox(mask > 0)
    height, width = r1 - r0 + 1, c1 - c0 + 1
    rows = slice(r1 + 2, min(image.shape[0], r1 + 2 + max(4, height // 2)))
    quarter = max(1, width // 4)
    band = image[rows, c0 + quarter : c1 + 1 - quarter]
    left = image[rows, max(0, c0 - width - 3) : max(0, c0 - 3)]
    right = image[rows, c1 + 4 : c1 + 4 + width]
    side = np.concatenate([left.ravel(), right.ravel()])
    assert band.size > 0 and side.size > 0
    return float(band.mean()) / float(side.mean())


# --------------------------------------------------------------------------------------------
# synthesize_case
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("label", [0, 1])
def test_synthesize_case_is_deterministic(label):
    image_a, mask_a = _case(label, 7)
    image_b, mask_b = _case(label, 7)
    image_c, _ = _case(label, 8)
    assert np.array_equal(image_a, image_b) and np.array_equal(mask_a, mask_b)
    assert not np.array_equal(image_a, image_c)


@pytest.mark.parametrize("label", [0, 1])
def test_image_and_mask_format_and_dark_lesion(label):
    for seed in range(N_SAMPLES):
        image, mask = _case(label, seed)
        assert image.dtype == np.uint8 and image.shape == (SIZE, SIZE)
        assert mask.dtype == np.uint8 and mask.shape == (SIZE, SIZE)
        assert set(np.unique(mask).tolist()) == {0, 255}
        inside = mask > 0
        ring = ndimage.binary_dilation(inside, iterations=3) & ~inside
        assert image[inside].mean() < 0.75 * image[ring].mean(), f"lesion not hypoechoic (seed {seed})"
        # the image has speckle: not flat tissue
        assert image[~ndimage.binary_dilation(inside, iterations=3)].std() > 10


def test_image_is_darker_towards_the_bottom():
    means = np.mean([_case(seed % 2, seed)[0].astype(float) for seed in range(N_SAMPLES)], axis=0)
    upper, lower = means[int(0.15 * SIZE) : int(0.5 * SIZE)].mean(), means[int(0.85 * SIZE) :].mean()
    assert lower < 0.85 * upper


def test_benign_wider_than_tall_and_malignant_taller_than_wide():
    aspects = {0: [], 1: []}
    for label in (0, 1):
        for seed in range(N_SAMPLES):
            r0, r1, c0, c1 = _bbox(_case(label, 100 + seed)[1] > 0)
            aspects[label].append((c1 - c0 + 1) / (r1 - r0 + 1))  # width / height
    assert min(aspects[0]) > 1.0, aspects[0]
    assert max(aspects[1]) < 1.0, aspects[1]


def test_malignant_has_posterior_shadowing():
    ratios = {
        label: np.mean([_posterior_ratio(*_case(label, 200 + seed)) for seed in range(N_SAMPLES)])
        for label in (0, 1)
    }
    assert ratios[1] < 0.93, ratios  # darker band below malignant lesions
    assert ratios[0] > 0.95, ratios  # benign: no shadow (enhancement or nothing)
    assert ratios[1] < ratios[0] - 0.08, ratios


def test_malignant_margin_is_more_irregular():
    def irregularity(mask):  # perimeter^2 / area: 4*pi for a disc, larger for spiculated shapes
        inside = mask > 0
        perimeter = (inside & ~ndimage.binary_erosion(inside)).sum()
        return perimeter**2 / inside.sum()

    values = {
        label: np.mean([irregularity(_case(label, 300 + seed, size=128)[1]) for seed in range(N_SAMPLES)])
        for label in (0, 1)
    }
    assert values[1] > 1.2 * values[0], values


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"label": 2}, "label"),
        ({"label": -1}, "label"),
        ({"label": 0.5}, "label"),
        ({"label": True}, "label"),
        ({"size": 16}, "size"),
        ({"size": 64.0}, "size"),
        ({"rng": 0}, "rng"),
    ],
)
def test_synthesize_case_validation(kwargs, match):
    args = {"label": 0, "size": SIZE, "rng": np.random.default_rng(0), **kwargs}
    with pytest.raises(ValueError, match=match):
        synthesize_case(**args)


# --------------------------------------------------------------------------------------------
# write_demo_dataset
# --------------------------------------------------------------------------------------------
def _files(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file()}


def test_write_demo_dataset_layout_split_and_stratification(tmp_path):
    num, split = 40, (0.75, 0.15, 0.10)
    path = write_demo_dataset(tmp_path, num_images=num, size=48, seed=3, split=split)
    assert path == tmp_path / "datalist.json"
    data = json.loads(path.read_text())
    assert set(SPLITS) <= set(data)
    assert data["demo_parameters"]["num_images"] == num

    items = [item for key in SPLITS for item in data[key]]
    assert len(items) == num
    assert len({item["group"] for item in items}) == num  # every case exactly once
    labels = [item["label"] for item in items]
    assert labels.count(0) == labels.count(1) == num // 2

    for key, fraction in zip(SPLITS, split):
        per_class = [sum(item["label"] == c for item in data[key]) for c in (0, 1)]
        for count in per_class:
            assert abs(count - fraction * num / 2) < 1, (key, per_class)  # stratified
        assert abs(len(data[key]) - fraction * num) <= 1, key

    for item in items:
        assert set(item) == {"image", "mask", "label", "group", "source"}
        assert item["source"] == "demo" and item["label"] in (0, 1)
        assert item["image"] == f"images/{item['group']}.png" and item["mask"] == f"masks/{item['group']}.png"
        for rel in (item["image"], item["mask"]):
            assert not os.path.isabs(rel) and ".." not in rel
            with Image.open(tmp_path / rel) as im:
                assert im.mode == "L" and im.size == (48, 48)
        with Image.open(tmp_path / item["mask"]) as im:
            assert set(np.unique(np.asarray(im)).tolist()) == {0, 255}


def test_write_demo_dataset_is_deterministic(tmp_path):
    a = write_demo_dataset(tmp_path / "a", num_images=6, size=40, seed=1).parent
    b = write_demo_dataset(tmp_path / "b", num_images=6, size=40, seed=1).parent
    c = write_demo_dataset(tmp_path / "c", num_images=6, size=40, seed=2).parent
    files_a, files_b, files_c = _files(a), _files(b), _files(c)
    assert files_a.keys() == files_b.keys() == files_c.keys()
    assert all(files_a[k].read_bytes() == files_b[k].read_bytes() for k in files_a)
    images = [k for k in files_a if k.startswith("images")]
    assert all(files_a[k].read_bytes() != files_c[k].read_bytes() for k in images)


def test_write_demo_dataset_idempotent_and_regenerates_on_change(tmp_path):
    path = write_demo_dataset(tmp_path, num_images=8, size=40, seed=0)
    old = 1_000_000_000  # backdate everything: any rewrite would move the mtime
    for p in _files(tmp_path).values():
        os.utime(p, (old, old))

    assert write_demo_dataset(tmp_path, num_images=8, size=40, seed=0) == path
    assert all(p.stat().st_mtime == old for p in _files(tmp_path).values())

    # fewer images: regenerated, stale cases removed
    write_demo_dataset(tmp_path, num_images=6, size=40, seed=0)
    assert json.loads(path.read_text())["demo_parameters"]["num_images"] == 6
    assert path.stat().st_mtime != old
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == [f"case_{i:04d}.png" for i in range(6)]

    # another size: images rewritten at the new size
    write_demo_dataset(tmp_path, num_images=6, size=48, seed=0)
    with Image.open(tmp_path / "images" / "case_0000.png") as im:
        assert im.size == (48, 48)

    # another split: datalist rewritten with the new parameters
    write_demo_dataset(tmp_path, num_images=6, size=48, seed=0, split=(0.5, 0.5, 0.0))
    data = json.loads(path.read_text())
    assert data["demo_parameters"]["split"] == [0.5, 0.5, 0.0]
    for label in (0, 1):  # 3 cases per class: 2 and 1 (a part is within one case of its target, per class)
        assert sorted(sum(item["label"] == label for item in data[key]) for key in SPLITS[:2]) == [1, 2]
    assert not data["test"]

    # a missing file is noticed and regenerated
    (tmp_path / "masks" / "case_0002.png").unlink()
    write_demo_dataset(tmp_path, num_images=6, size=48, seed=0, split=(0.5, 0.5, 0.0))
    assert (tmp_path / "masks" / "case_0002.png").is_file()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"split": (0.5, 0.5, 0.5)}, "sum to 1"),
        ({"split": (0.8, 0.2)}, "3 fractions"),
        ({"split": (1.2, -0.1, -0.1)}, ">= 0"),
        ({"split": "abc"}, "split"),
        ({"num_images": 1}, "num_images"),
        ({"num_images": 10.5}, "num_images"),
        ({"size": 8}, "size"),
        ({"seed": -1}, "seed"),
    ],
)
def test_write_demo_dataset_validation(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        write_demo_dataset(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()  # nothing written on bad arguments
