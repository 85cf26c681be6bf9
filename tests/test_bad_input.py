"""Bad input, as a hostile tester gives it, through the CLI, the API, ``monai-bus datalist`` and training.

Every case ends in a one-line error that names the file (or item, id, checkpoint) and the problem;
none ends in exit 0 with a probability computed from garbage.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import bundle_overrides, copy_bundle
from monai_bus.cli import main
from monai_bus.inference import BundleClassifier, BundleError

pydicom = pytest.importorskip("pydicom")
from test_readers import write_dicom  # noqa: E402

RNG = np.random.default_rng(0)
SPECKLE = RNG.integers(0, 256, (96, 96), dtype=np.uint8)


def bad_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, the problem its error must state)."""
    folder.mkdir(parents=True, exist_ok=True)
    nan = SPECKLE.astype(np.float32)
    nan[10, 10] = np.nan
    Image.fromarray(nan, mode="F").save(folder / "nan.tif")
    inf = SPECKLE.astype(np.float64)
    inf[0, :3] = np.inf
    np.save(folder / "inf.npy", inf)
    Image.fromarray(SPECKLE).convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray(np.dstack([SPECKLE, 255 - SPECKLE, SPECKLE])).save(folder / "photograph.png")
    write_dicom(folder / "three_frames.dcm", np.stack([SPECKLE] * 3))
    write_dicom(folder / "four_frames.dcm", np.stack([SPECKLE] * 4))
    for value in (0, 128, 255):
        Image.fromarray(np.full((96, 96), value, np.uint8)).save(folder / f"constant_{value}.png")
    nearly = np.zeros((96, 96), np.uint8)
    nearly[:5, :5] = 255  # 0.3% of the pixels
    Image.fromarray(nearly).save(folder / "nearly_constant.png")
    Image.fromarray(SPECKLE[:1, :1]).save(folder / "one_pixel.png")
    Image.fromarray(SPECKLE).save(folder / "whole.png")
    (folder / "truncated.png").write_bytes((folder / "whole.png").read_bytes()[:2000])
    (folder / "text.png").write_text("not an image")
    (folder / "empty.png").write_bytes(b"")
    (folder / "a_folder.png").mkdir(exist_ok=True)
    np.save(folder / "volume.npy", RNG.random((4, 96, 96)))
    return {
        "nan.tif": (folder / "nan.tif", "1 pixels are NaN or infinite"),
        "inf.npy": (folder / "inf.npy", "3 pixels are NaN or infinite"),
        "cmyk.jpg": (folder / "cmyk.jpg", "colour mode CMYK is not supported"),
        "photograph.png": (folder / "photograph.png", "87.5% of its pixels are in colour"),
        "three_frames.dcm": (folder / "three_frames.dcm", "has 3 frames; choose one"),
        "four_frames.dcm": (folder / "four_frames.dcm", "has 4 frames; choose one"),
        "constant_0.png": (folder / "constant_0.png", "no image content: 100.0% of the pixels have the value 0"),
        "constant_128.png": (folder / "constant_128.png", "no image content: 100.0% of the pixels have the value 128"),
        "constant_255.png": (folder / "constant_255.png", "no image content: 100.0% of the pixels have the value 255"),
        "nearly_constant.png": (folder / "nearly_constant.png", "no image content: 99.7% of the pixels"),
        "one_pixel.png": (folder / "one_pixel.png", "image of 1 x 1 pixels is below the minimum of 16 x 16"),
        "truncated.png": (folder / "truncated.png", "not a readable image"),
        "text.png": (folder / "text.png", "not a readable image"),
        "empty.png": (folder / "empty.png", "not a readable image"),
        "a_folder.png": (folder / "a_folder.png", "is a folder, not an image file"),
        "missing.png": (folder / "missing.png", "image file not found"),
        "volume.npy": (folder / "volume.npy", "expected a 2D image"),
    }


BAD_FILES = ["nan.tif", "inf.npy", "cmyk.jpg", "photograph.png", "three_frames.dcm", "four_frames.dcm",
             "constant_0.png", "constant_128.png", "constant_255.png", "nearly_constant.png", "one_pixel.png",
             "truncated.png", "text.png", "empty.png", "a_folder.png", "missing.png", "volume.npy"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return bad_files(tmp_path_factory.mktemp("bad"))


@pytest.fixture(scope="module")
def good_image(files):
    return files["truncated.png"][0].with_name("whole.png")  # 96 x 96 speckle


@pytest.fixture(scope="module")
def classifier(trained_bundle):
    return BundleClassifier(trained_bundle, device="cpu")


@pytest.mark.parametrize("name", BAD_FILES)
def test_cli_refuses_bad_files_by_name(trained_bundle, files, name, capsys):
    path, problem = files[name]
    assert main(["infer", "--bundle", str(trained_bundle), str(path)]) == 1
    line = json.loads(capsys.readouterr().out)  # valid JSON, no bare NaN
    assert set(line) == {"image", "error"} and line["error"].startswith(f"{path}: {problem}")


@pytest.mark.parametrize("name", BAD_FILES)
def test_api_refuses_bad_files_by_name(classifier, files, name):
    path, problem = files[name]
    with pytest.raises(ValueError) as error:
        classifier.predict(path)
    assert str(error.value).startswith(f"{path}: {problem}")


@pytest.mark.parametrize("array, problem", [
    (np.where(SPECKLE > 250, np.nan, SPECKLE).astype(np.float32), "pixels are NaN or infinite"),
    (np.full((64, 64), np.inf), "4,096 pixels are NaN or infinite"),
    (np.zeros((64, 64)), "no image content"),
    (np.array([["a"] * 32] * 32), "pixels of type <U1 are not numbers"),
    (SPECKLE[:8], "below the minimum of 16 x 16"),
    (SPECKLE * 1e300, "pixels are beyond the range of 32-bit floats"),  # was named NaN or infinite
    (np.ma.masked_array(SPECKLE, SPECKLE > 100), "a masked array: its mask would be lost"),
])
def test_api_refuses_bad_arrays(classifier, array, problem):
    with pytest.raises(ValueError, match=f"^image array: .*{problem}"):
        classifier.predict(array)


def test_api_names_the_problem_of_odd_arguments(classifier, files):
    """Found by a hostile test: each was ignored, misread or named the wrong problem."""
    with pytest.raises(ValueError, match=r"^image array: frame 1 chooses a frame of a file; an array is one image"):
        classifier.predict(SPECKLE, frame=1)
    unmasked = np.ma.masked_array(SPECKLE, np.zeros_like(SPECKLE, bool))  # nothing masked: nothing lost
    assert classifier.predict(unmasked, frame=0).probabilities == classifier.predict(SPECKLE).probabilities
    with pytest.raises(ValueError, match=r"^image: the file path is empty"):  # was '.: is a folder'
        classifier.predict("")
    with pytest.raises(ValueError, match=r"a lesion box is 4 integers .*got \(True, 60, 5, 50\)"):
        classifier.predict(SPECKLE, box=(True, 60, 5, 50))  # was read as row 1
    path, _ = files["nan.tif"]
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: "):  # a path as bytes is a path
        classifier.predict(os.fsencode(path))
    odd = path.parent / "two\nlines.png"
    with pytest.raises(ValueError) as raised:  # a newline in the name: the error is still one line
        classifier.predict(odd)
    assert str(raised.value) == f"{str(odd)!r}: image file not found"


def test_frames_can_be_chosen(classifier, files, trained_bundle, capsys):
    path = files["three_frames.dcm"][0]
    expected = classifier.predict(SPECKLE)
    np.testing.assert_allclose(classifier.predict(path, frame=2).probabilities, expected.probabilities, atol=1e-5)
    assert main(["infer", "--bundle", str(trained_bundle), "--frame", "1", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["class_name"] == expected.class_name
    with pytest.raises(ValueError, match="three_frames.dcm: frame 3 does not exist"):
        classifier.predict(path, frame=3)


@pytest.mark.parametrize("box, problem", [
    ((10, 11, 10, 11), "the lesion box \\[10, 11, 10, 11\\] is 1 x 1 pixels inside the image, below the minimum"),
    ((200, 300, 0, 50), "the lesion box \\[200, 300, 0, 50\\] lies outside the image of 96 rows and 96 columns"),
    ((30, 20, 10, 40), "the lesion box \\[30, 20, 10, 40\\] has zero height or width"),
    ((1.5, 20, 10, 40), "a lesion box is 4 integers"),
])
def test_bad_boxes(classifier, good_image, box, problem):
    with pytest.raises(ValueError, match=f"whole.png: {problem}"):
        classifier.predict(good_image, box=box)


def test_cli_box_and_device_are_checked(trained_bundle, good_image, tmp_path, capsys):
    whole = good_image
    with pytest.raises(SystemExit) as exit_status:
        main(["infer", "--bundle", str(trained_bundle), "--box", "1,2,3", str(whole)])
    assert exit_status.value.code == 2 and "expected four integers" in capsys.readouterr().err
    crafted = f"cpu'); open('{tmp_path / 'pwned'}', 'w'); ('"
    assert main(["infer", "--bundle", str(trained_bundle), "--device", crafted, str(whole)]) == 2
    assert f"device {crafted!r}" in capsys.readouterr().err and not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("content, problem", [
    (b"", "not a readable PyTorch checkpoint (EOFError"),
    (b"\x80\x02garbage", "not a readable PyTorch checkpoint (UnpicklingError"),
    ("image", "not a readable PyTorch checkpoint (UnpicklingError: Weights only load failed."),
    ("folder", "is a folder, not a model file"),
])
def test_bad_model_files_are_named(tmp_path, content, problem):
    bundle = copy_bundle(tmp_path / "bundle")
    (bundle / "models").mkdir()
    model = bundle / "models" / "model.pt"
    if content == "folder":
        model.mkdir()
    elif content == "image":  # an image given as --checkpoint: torch's message has blank lines
        Image.fromarray(SPECKLE).save(model, format="PNG")
    else:
        model.write_bytes(content)
    with pytest.raises(BundleError, match=re.escape(f"model.pt: {problem}")) as raised:
        BundleClassifier(bundle)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("output", ["full", "closed"])
def test_an_output_that_cannot_be_written_ends_in_one_line_or_quietly(trained_bundle, tmp_path, output):
    """A full disk gives one line on stderr and exit 2; a reader that stops early (| head) ends it quietly, 1."""
    image = tmp_path / "speckle.png"
    Image.fromarray(SPECKLE).save(image)
    command = [sys.executable, "-m", "monai_bus", "infer", "--bundle", str(trained_bundle), "--device", "cpu",
               str(image), str(image)]
    if output == "full":
        with open("/dev/full", "w") as full:
            result = subprocess.run(command, stdout=full, stderr=subprocess.PIPE, text=True, timeout=600)
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [
            "monai-bus infer: error: cannot write the results to standard output (No space left on device)"]
    else:
        reader, writer = os.pipe()
        os.close(reader)  # nobody reads
        result = subprocess.run(command, stdout=writer, stderr=subprocess.PIPE, text=True, timeout=600)
        os.close(writer)
        assert result.returncode == 1 and result.stderr == ""


def test_corrupt_weights_give_no_answer(trained_bundle, tmp_path, files):
    bundle = shutil.copytree(trained_bundle, tmp_path / "bundle")
    weights = torch.load(bundle / "models" / "model.pt", weights_only=True)
    weights["head.0.weight"] = torch.full_like(weights["head.0.weight"], float("nan"))
    torch.save(weights, bundle / "models" / "model.pt")
    with pytest.raises(BundleError, match="the network's output is not finite; the weights of .*model.pt are corrupt"):
        BundleClassifier(bundle, device="cpu").predict(SPECKLE)


@pytest.mark.parametrize("name", ["one_pixel.png", "three_frames.dcm", "cmyk.jpg", "constant_128.png"])
def test_datalist_refuses_what_the_bundle_refuses(files, tmp_path, name, capsys):
    root = tmp_path / "data"
    for i in range(4):
        for label in ("benign", "malignant"):
            (root / label).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.roll(SPECKLE, 9 * i + (label == "malignant"), axis=0)).save(root / label / f"{i}.png")
    path, problem = files[name]
    bad = Path(shutil.copy(path, root / "benign"))
    assert main(["datalist", "--format", "folder", "--root", str(root), "--out", str(tmp_path / "dl.json")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"monai-bus datalist: error: {bad}: {problem}") and "\n" not in error
    assert not (tmp_path / "dl.json").exists()


def datalist_with(tiny_data, tmp_path, change) -> Path:
    datalist = json.loads((tiny_data / "datalist.json").read_text())
    change(datalist)
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps(datalist))
    return path


@pytest.mark.parametrize("label", [None, "malignant", True, 5, 2, -1])
def test_datalist_labels_are_checked_on_load(tiny_data, tmp_path, label):
    from monai_bus.data.loading import load_split

    def change(datalist):
        if label is None:
            del datalist["training"][3]["label"]
        else:
            datalist["training"][3]["label"] = label
    path = datalist_with(tiny_data, tmp_path, change)
    image = json.loads(path.read_text())["training"][3]["image"]
    with pytest.raises(ValueError, match=rf"datalist.json: 'training' item 3 \(.*{image}\) needs 'label', an integer "
                                         rf"class index from 0 to 1, got {label!r}"):
        load_split(str(path), "training", str(tiny_data))


@pytest.mark.parametrize("case", ["twice in a split", "in two splits", "spelled otherwise"])
def test_an_image_listed_twice_in_a_datalist_is_refused(tiny_data, tmp_path, case):
    """It counted twice, or leaked between training and evaluation: bundle training, calibrate and the study
    all read their splits through load_split."""
    from monai_bus.data.loading import load_split

    def change(datalist):
        if case == "twice in a split":
            datalist["training"].append(dict(datalist["training"][0]))
        elif case == "in two splits":
            datalist["test"].append(dict(datalist["validation"][1]))
        else:  # the same file through another folder name
            image = Path(datalist["training"][0]["image"])
            spelled = image.parent / ".." / image.parent.name / image.name
            datalist["validation"].append({**datalist["training"][0], "image": str(spelled)})
    path = datalist_with(tiny_data, tmp_path, change)
    listed = json.loads(path.read_text())
    split, message = {
        "twice in a split": ("training", f"the 'training' list holds {tiny_data / listed['training'][0]['image']} "
                                         "more than once."),
        "in two splits": ("validation", f"{tiny_data / listed['test'][-1]['image']} is in both the 'validation' and "
                                        "the 'test' lists; an image belongs to one split."),
        "spelled otherwise": ("training", f"{tiny_data / listed['validation'][-1]['image']} is in both the 'training' "
                                          "and the 'validation' lists; an image belongs to one split."),
    }[case]
    with pytest.raises(ValueError) as error:
        load_split(str(path), split, str(tiny_data))
    assert str(error.value) == f"{path}: {message}"


def test_a_malformed_item_of_another_split_is_that_splits_fault(tiny_data, tmp_path):
    """A list as a frame in the test split: loading the training split is not the place to fail (it was a TypeError)."""
    from monai_bus.data.loading import load_split

    path = datalist_with(tiny_data, tmp_path, lambda datalist: datalist["test"][0].update(frame=[1]))
    assert len(load_split(str(path), "training", str(tiny_data))) == 30
    with pytest.raises(ValueError, match=r"'test' item 0 .* has 'frame' \[1\]; a frame is an integer from 0"):
        load_split(str(path), "test", str(tiny_data))


def test_malformed_datalist_json_is_named(tmp_path):
    from monai_bus.data.loading import load_split

    (tmp_path / "datalist.json").write_text('{"training": [')
    with pytest.raises(ValueError, match="datalist.json: not a readable JSON datalist"):
        load_split(str(tmp_path / "datalist.json"), "training")


def run_training(bundle, tiny_data, datalist, **extra) -> subprocess.CompletedProcess:
    overrides = bundle_overrides(bundle, tiny_data, max_epochs=1, datalist=str(datalist), **extra)
    command = [sys.executable, "-m", "monai.bundle", "run", "training",
               "--config_file", str(bundle / "configs" / "train.json"),
               *[part for key, value in overrides.items() for part in (f"--{key}", str(value))]]
    return subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""})


def make_nan_image(item, tiny_data, folder):
    image = np.asarray(Image.open(tiny_data / item["image"]), dtype=np.float32)
    image[5, 5] = np.nan
    np.save(folder / "nan_image.npy", image)
    item["image"] = str(folder / "nan_image.npy")


@pytest.mark.parametrize("case, problem", [
    ("label true", "'training' item 2 ({raw}) needs 'label', an integer class index from 0 to 1, got True"),
    ("box outside", "{image}: the lesion box [500, 600, 0, 20] lies outside the image"),
    ("nan image", "{image}: 1 pixels are NaN or infinite"),
    ("missing image", "'training' item 2 ({raw}): {image} not found"),
    ("box without a mask", "--mask_loss_weight 0.5 needs a lesion mask for every training image; 1 of 30 have none "
                           "(the first: {image}). Add their masks, or train on boxes alone with --mask_loss_weight 0."),
    # it ended with exit status 0 and no model.pt, a warning in its log alone
    ("one-class validation", "datalist.json: the 'validation' list holds no malignant image; training keeps the model "
                             "of the best validation AUC, which needs both classes."),
])
def test_training_stops_with_one_line_naming_the_item(tmp_path, tiny_data, case, problem):
    bundle = copy_bundle(tmp_path / "bundle")

    def change(datalist):
        item = datalist["training"][2]
        if case == "label true":
            item["label"] = True
        elif case == "box outside":
            item["bbox"] = [500, 600, 0, 20]
        elif case == "nan image":
            make_nan_image(item, tiny_data, tmp_path)
        elif case == "box without a mask":
            item["bbox"] = [10, 60, 10, 60]
            del item["mask"]
        elif case == "one-class validation":
            datalist["validation"] = [benign for benign in datalist["validation"] if benign["label"] == 0]
        else:
            item["image"] = str(tmp_path / "gone.png")
    datalist = datalist_with(tiny_data, tmp_path, change)
    raw = json.loads(datalist.read_text())["training"][2]["image"]
    result = run_training(bundle, tiny_data, datalist)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and problem.format(raw=raw, image=tiny_data / raw) in last, result.stderr[-2000:]
    assert not (bundle / "models" / "model.pt").exists()


@pytest.mark.parametrize("split, weight", [("validation", 0.5), ("training", 0)])
def test_items_with_boxes_alone(tmp_path, tiny_data, split, weight):
    """The mask loss needs masks on the training items only; with weight 0, none."""
    bundle = copy_bundle(tmp_path / "bundle")

    def boxes_only(datalist):
        for item in datalist[split]:
            item["bbox"] = [10, 60, 10, 60]
            del item["mask"]
    result = run_training(bundle, tiny_data, datalist_with(tiny_data, tmp_path, boxes_only), mask_loss_weight=weight)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (bundle / "models" / "model.pt").is_file()


def test_a_non_finite_loss_stops_training_and_names_the_batch(tmp_path, tiny_data):
    bundle = copy_bundle(tmp_path / "bundle")
    result = run_training(bundle, tiny_data, tiny_data / "datalist.json", learning_rate=1e30, loss="ce")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the loss is nan at epoch 1, iteration") and "the batch held " in last, last
    assert ".png" in last and not (bundle / "models" / "model.pt").exists()


def test_a_huge_png_is_refused_before_decoding(tmp_path, trained_bundle):
    """12000 x 12000 pixels: refused from the header, well under 1 GB of memory."""
    Image.fromarray(np.zeros((12000, 12000), np.uint8)).save(tmp_path / "huge.png")
    # VmHWM, the peak resident memory of this process since its exec (ru_maxrss would include pytest's)
    probe = ("import re, sys; from monai_bus.cli import main\n"
             "try:\n    code = main(sys.argv[1:])\n"
             "finally:\n    status = open('/proc/self/status').read()\n"
             "    print('peak_kb', re.search(r'VmHWM:\\s+(\\d+)', status)[1], file=sys.stderr)\n"
             "sys.exit(code)")
    result = subprocess.run([sys.executable, "-c", probe, "infer", "--bundle", str(trained_bundle),
                             str(tmp_path / "huge.png")], capture_output=True, text=True, timeout=600)
    assert result.returncode == 1
    assert json.loads(result.stdout)["error"] == (f"{tmp_path / 'huge.png'}: image of 12000 x 12000 pixels is over the "
                                                  "limit of 16,777,216 pixels")
    peak_kb = int(result.stderr.split("peak_kb")[-1])
    assert peak_kb < 1024 * 1024, peak_kb


def test_files_are_told_apart_by_content(tmp_path):
    """A PNG without a suffix is a PNG, not DICOM; a JPEG with preview pictures (MPO) is one image."""
    from monai_bus.data.images import read_image

    Image.fromarray(SPECKLE).save(tmp_path / "no_suffix", format="PNG")
    assert read_image(tmp_path / "no_suffix")[0].shape == (96, 96)
    Image.fromarray(SPECKLE).convert("RGB").save(tmp_path / "camera.jpg", format="MPO", save_all=True,
                                                 append_images=[Image.fromarray(SPECKLE[:48, :48]).convert("RGB")])
    assert Image.open(tmp_path / "camera.jpg").format == "MPO"
    assert read_image(tmp_path / "camera.jpg")[0].shape == (96, 96)


def test_sparse_content_is_no_content():
    from monai_bus.data.images import check_pixels

    sparse = np.zeros((1024, 1024), np.float32)
    sparse.ravel()[::256] = 1.0  # 0.4% of the pixels, on a regular grid
    with pytest.raises(ValueError, match="no image content: 99.6% of the pixels have the value 0"):
        check_pixels(sparse, "sparse")


def test_the_datalist_refuses_a_lesion_box_the_bundle_refuses(tmp_path):
    from monai_bus.data.datalist import build_datalist
    from monai_bus.data.records import DatasetError

    root = tmp_path / "BUSI" / "Dataset_BUSI_with_GT"
    for i in range(1, 5):
        for label in ("benign", "malignant"):
            (root / label).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.roll(SPECKLE, 7 * i + (label == "malignant"), axis=1)).save(
                root / label / f"{label} ({i}).png")
            mask = np.zeros((96, 96), np.uint8)
            mask[10:12 if (i, label) == (1, "benign") else 40, 10:12 if (i, label) == (1, "benign") else 40] = 255
            Image.fromarray(mask).save(root / label / f"{label} ({i})_mask.png")
    with pytest.raises(DatasetError, match=r"benign \(1\).png: the lesion box \[10, 12, 10, 12\] is 2 x 2 pixels"):
        build_datalist("busi", root.parent, tmp_path / "dl.json")


def test_an_error_raised_while_handling_one_keeps_its_traceback():
    from monai_bus.errors import InputError, find_monai_bus_error

    try:
        try:
            raise InputError("a.png: bad")
        except InputError:
            {}["missing"]
    except KeyError as unrelated:
        assert find_monai_bus_error(unrelated) is None
    try:
        try:
            raise InputError("a.png: bad")
        except InputError as error:
            raise RuntimeError("wrapped") from error
    except RuntimeError as wrapped:
        assert str(find_monai_bus_error(wrapped)) == "a.png: bad"
