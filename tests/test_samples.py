"""The sample images, ``monai-bus samples`` and the overlay PNG."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import trained_copy, unfamiliar_to_every_image
from monai_bus.cli import main
from monai_bus.data.images import read_image
from monai_bus.inference import NO_LESION_NOTE
from monai_bus.inferers import bf16_supported
from monai_bus.localiser import Localisation
from monai_bus.overlay import write_overlay

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "monai_bus" / "samples"


def test_samples_are_four_credited_bus_bra_images_with_boxes_inside():
    samples = json.loads((SAMPLES / "samples.json").read_text())["samples"]
    assert len(samples) == 4 and sorted(s["pathology"] for s in samples) == ["benign"] * 2 + ["malignant"] * 2
    credits = (SAMPLES / "CREDITS.md").read_text()
    for sample in samples:
        rows, columns = read_image(SAMPLES / sample["image"])[0].shape
        row_start, row_stop, col_start, col_stop = sample["box"]
        assert 0 <= row_start < row_stop <= rows and 0 <= col_start < col_stop <= columns
        assert sample["image"] in credits
    assert "CC BY 4.0" in credits and "Medical Physics" in credits


def test_overlay_leaves_the_image_unchanged_outside_the_region(tmp_path):
    grey = np.tile(np.arange(64, dtype=np.float32), (48, 1))
    attention = np.zeros_like(grey)
    attention[10:30, 20:50] = 0.7
    write_overlay(grey, attention, (14, 26, 24, 46), (10, 30, 20, 50), tmp_path / "o.png")
    picture = np.asarray(Image.open(tmp_path / "o.png"))
    plain = np.round(grey / 63 * 255).astype(np.uint8)
    outside = np.ones(grey.shape, bool)
    outside[8:32, 18:52] = False  # the region, its outline and the box
    assert picture.shape == (48, 64, 3)
    assert (picture[outside] == plain[outside][:, None]).all()
    assert (picture[17:23, 27:43, 0] > picture[17:23, 27:43, 2]).all()  # tinted red inside the box
    assert tuple(picture[14, 30]) == (0, 255, 0)  # the box's top edge


def test_samples_command_classifies_every_sample_with_and_without_its_box(trained_bundle, tmp_path, capsys):
    assert main(["samples", "--bundle", str(trained_bundle), "--localiser", str(REPO / "localiser"),
                 "--out", str(tmp_path), "--device", "cpu"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| bus_")]
    assert len(rows) == 8 and all(row.split(" | ")[2] in ("benign", "malignant", "no lesion found") for row in rows)
    for row, suffix in zip(rows, ["_overlay.png"] * 4 + ["_localiser_overlay.png"] * 4):
        name = row.split(" | ")[0][2:]
        overlay = Image.open(tmp_path / f"{Path(name).stem}{suffix}")
        assert overlay.size[::-1] == read_image(SAMPLES / name)[0].shape


class FindsNothing:
    """A stand-in localiser bundle that finds no lesion in any image."""

    weights = {"file": "stand-in/models/model.pt", "version": "stand-in", "sha256": "0" * 64}
    check_below, operating_point_note = None, None

    def __init__(self, bundle_dir, device=None):
        pass

    def locate(self, image, frame=None):
        return Localisation(mask=np.zeros(read_image(image)[0].shape, bool), box=None)


@pytest.mark.parametrize("roi", [True, False])
def test_samples_command_says_why_a_sample_is_not_classified(trained_bundle, tmp_path, capsys, monkeypatch, roi):
    """Every sample unlike the training images: with its box, "unlike the training images"; without, "no lesion
    found" from a localiser that finds none (a bundle trained on lesion regions), or "unlike the training images"
    (one trained on whole
    images, which classifies them without a localiser). Each one's note follows its own table, in place of a crash
    at the missing P(malignant)."""
    bundle = unfamiliar_to_every_image(trained_copy(trained_bundle, tmp_path / "bundle", roi=roi))
    monkeypatch.setattr("monai_bus.localiser.LesionLocaliser", FindsNothing)
    assert main(["samples", "--bundle", str(bundle), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    rows = [line.split(" | ") for line in printed.splitlines() if line.startswith("| bus_")]
    without_box = "no lesion found" if roi else "unlike the training images"
    assert [row[2:5] for row in rows] == [["unlike the training images", "-", "-"]] * 4 + [[without_box, "-", "-"]] * 4
    with_box_part, without_box_part = printed.split("Without a box")
    for part, notes in ((with_box_part, 4), (without_box_part, 4)):
        assert len([line for line in part.splitlines() if line.startswith("bus_")]) == notes
    notes = [line.split(": ", 1)[1] for line in printed.splitlines() if line.startswith("bus_")]
    assert all(note.startswith("unlike the training images") for note in notes[:4] + ([] if roi else notes[4:]))
    assert not roi or notes[4:] == [NO_LESION_NOTE] * 4


def test_the_readme_main_command_uses_the_shipped_weights_and_prints_the_readme_table(tmp_path, capsys, monkeypatch):
    """``monai-bus samples`` from the repository root: the shipped weights and operating point, and the answers
    that README.md shows: the same classes, referrals and boxes, and P(malignant) to within 0.005 on a CPU
    with bf16, as README.md's figures (bf16 arithmetic differs a little between CPUs), or 0.02 on one without,
    which runs in float32: there the answers around the localiser's boxes moved by up to 0.010 on these
    images (docs/results/localiser/flip/ compares the two precisions on the test images)."""
    monkeypatch.chdir(REPO)
    assert main(["samples", "--out", str(tmp_path), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    metadata = json.loads((REPO / "bundle" / "configs" / "metadata.json").read_text())
    assert f"(version {metadata['version']}, SHA-256 {metadata['weights']['models/model.pt']['sha256'][:12]}...)" \
        in printed
    assert f"threshold: {metadata['operating_point']['threshold']:g} (operating point)" in printed
    localiser = json.loads((REPO / "localiser" / "configs" / "metadata.json").read_text())
    assert f"localiser: {REPO / 'localiser' / 'models' / 'model.pt'} (version {localiser['version']}, SHA-256 " \
        f"{localiser['weights']['models/model.pt']['sha256'][:12]}...); check the box below confidence " \
        f"{localiser['operating_point']['check_below']:.3f}" in printed
    readme = [line.split(" | ") for line in (REPO / "README.md").read_text().splitlines() if line.startswith("| bus_")]
    rows = [line.split(" | ") for line in printed.splitlines() if line.startswith("| bus_")]
    assert [(r[0], r[2]) for r in rows] == [(r[0], r[2]) for r in readme] and len(rows) == 8
    tolerance = 0.005 if bf16_supported(torch.device("cpu")) else 0.02
    assert all(abs(float(a[3]) - float(b[3])) <= tolerance for a, b in zip(rows, readme))
    assert [r[5].split(" (")[0] for r in rows] == [r[5].split(" (")[0] for r in readme]  # refer: yes, or no
    # the localiser's confidence
    assert all(abs(float(a[6]) - float(b[6])) <= tolerance for a, b in zip(rows[4:], readme[4:]))
    assert [r[7] for r in rows[4:]] == [r[7] for r in readme[4:]]  # the localiser's box IoU
