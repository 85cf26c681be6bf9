"""Real-server test of the MONAI Label app (monailabel_app/): no mocks.

Run it with the MONAI Label environment (scripts/install_monailabel_env.sh):

    .venv-monailabel/bin/python tests/monailabel/run_server_check.py

It trains a copy of the bundle for one epoch on synthetic images, copies the localiser bundle with
its shipped weights, starts ``monailabel start_server`` on 127.0.0.1 with the app and a studies
folder of synthetic images (and one corrupt image), then checks /info/, /infer/ of both models (the
lesion segmentation as the stock Slicer client gets it), bad input, stored predictions (/infer/ with
save_label, /batch/infer/), the ``uncertainty`` strategy and a recalibration, class labels saved through
/datastore/label (one of them not a class), one /train/ run of the classifier and the fine-tuned
model's version, checksum and predictions, then corrected lesion masks (PNG and NIfTI) saved as
labels, with three masks that are not a lesion's, and one /train/ run of the localiser on them; the server
is always stopped at the end. It also loads the app in this process with ``skip_trainers true``, and
segments an image unlike the training images with the shipped bundles. The last line reads ``N passed, M
failed``; the exit code is 0 only when nothing failed. Its name keeps it out of
the main pytest run (pytest collects ``test_*.py`` and ``*_test.py``).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from io import BytesIO
from pathlib import Path

import itk
import numpy as np
import requests
from monailabel.client import MONAILabelClient  # the client API that Slicer's MONAILabel module uses
from monailabel.config import settings
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.bundle import BundleInferTask
from monailabel.utils.others.class_utils import get_class_of_subclass_from_file
from PIL import Image

from monai_bus.data.boxes import box_from_masks, read_mask
from monai_bus.data.demo import write_demo_dataset
from monai_bus.inference import BundleClassifier
from monai_bus.localiser import LesionLocaliser
from monai_bus.weights import ship

REPO = Path(__file__).resolve().parents[2]
MODEL = "breast_lesion_classifier"
SEGMENTATION_MODEL = "breast_lesion_segmentation"
CLASS_NAMES = ["benign", "malignant"]
PREDICTION_TAG, ATTENTION_TAG = "monai_bus_prediction", "monai_bus_attention"
NUM_LABELLED, NUM_UNLABELLED = 16, 3  # of the synthetic images; one more gets a label that is not a class
NUM_MASKED = 4  # the last images: their masks, "corrected", train the localiser
TIMEOUT_S = 240  # server start, one request, one batch inference or one training run
WIDTH = 8  # the bundle copy's VGG16 width (model_settings width): an eighth of VGG16's channels trains in seconds

results: list[bool] = []


def check(name: str, ok: bool, detail: object = "") -> bool:
    results.append(bool(ok))
    print(f"{'PASS' if ok else 'FAIL'}: {name}" + ("" if ok else f" -- {str(detail)[:2000]}"), flush=True)
    return ok


def prepare(tmp: Path) -> tuple[Path, Path, list[dict]]:
    """A bundle copy (a narrow VGG16, ``WIDTH``) that ships weights trained for one epoch (as the repository's
    bundle ships its own: half precision, recorded in metadata.json), a copy of the localiser bundle with its
    shipped weights (``tmp/localiser``), a studies folder, and the synthetic items with labels."""
    data = tmp / "data"
    write_demo_dataset(data, num_images=NUM_LABELLED + NUM_UNLABELLED + 1 + NUM_MASKED, size=96, seed=1)
    shutil.copytree(REPO / "localiser", tmp / "localiser", ignore=shutil.ignore_patterns("eval", "demo_data"))
    bundle = tmp / "bundle"
    shutil.copytree(REPO / "bundle", bundle, ignore=shutil.ignore_patterns("models", "eval", "demo_data"))
    configs = bundle / "configs"
    metadata = json.loads((configs / "metadata.json").read_text())
    metadata["model_settings"]["width"] = WIDTH
    (configs / "metadata.json").write_text(json.dumps(metadata, indent=4))
    subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "training",
         "--config_file", str(configs / "train.json"), "--meta_file", str(configs / "metadata.json"),
         "--logging_file", str(configs / "logging.conf"), "--bundle_root", str(bundle),
         "--dataset_dir", str(data), "--max_epochs", "1", "--batch_size", "8", "--num_workers", "0"],
        check=True, stdout=subprocess.DEVNULL, timeout=TIMEOUT_S,
    )
    trained = shutil.move(bundle / "models", tmp / "trained")
    ship(Path(trained) / "model.pt", bundle)
    studies = tmp / "studies"
    studies.mkdir()
    datalist = json.loads((data / "datalist.json").read_text())
    items = [item for split in ("training", "validation", "test") for item in datalist[split]]
    for item in items:
        shutil.copy(data / item["image"], studies)
    (studies / "corrupt.png").write_bytes(b"this is not a PNG file")
    return bundle, studies, items


def image_id(item: dict) -> str:
    return Path(item["image"]).stem


def shipped_record(bundle: Path) -> dict:
    """The shipped weights' entry of metadata.json, with the bundle's version and the SHA-256 of models/model.pt."""
    metadata = json.loads((bundle / "configs" / "metadata.json").read_text())
    entry = metadata["weights"]["models/model.pt"]
    return {**entry, "version": metadata["version"],
            "file_sha256": hashlib.sha256((bundle / "models" / "model.pt").read_bytes()).hexdigest()}


def weights_record(bundle: Path) -> dict:
    """models/model.json (written by training) and the SHA-256 of models/model.pt, computed here."""
    record = json.loads((bundle / "models" / "model.json").read_text())
    return {**record, "file_sha256": hashlib.sha256((bundle / "models" / "model.pt").read_bytes()).hexdigest()}


def check_bundle_infer_task(bundle: Path, image: Path) -> dict | None:
    """MONAI Label's generic BundleInferTask loads the bundle; returns its probabilities for ``image``."""
    try:
        generic = BundleInferTask(str(bundle), conf={})
    except Exception as error:
        check("BundleInferTask(bundle, conf={}) loads the bundle", False, f"{type(error).__name__}: {error}")
        return None
    check("BundleInferTask(bundle, conf={}) loads the bundle", generic.is_valid())
    check("BundleInferTask reads labels benign/malignant", generic.labels == {"benign": 0, "malignant": 1}, generic.labels)
    classifier = BundleInferTask(str(bundle), conf={}, type=InferType.CLASSIFICATION, add_post_restore=False)
    _, result = classifier({"image": str(image)})
    return {p["label"]: p["score"] for p in result["prediction"]}


def check_skip_trainers(bundle: Path, tmp: Path) -> None:
    """The app, loaded as MONAI Label loads it, with ``--conf skip_trainers true``: no train task. Its datastore
    lists the image files monai-bus reads, and says which share an image id."""
    studies = tmp / "studies_skip"
    studies.mkdir()
    for name in ("a.jpeg", "b.PNG", "c.png", "c.jpg", "d.dcm", "notes.xml", "slide.svs"):
        (studies / name).write_bytes(b"")
    warnings = []
    handler = logging.Handler()
    handler.emit = lambda record: warnings.append(record.getMessage())
    logging.getLogger().addHandler(handler)
    app_class = get_class_of_subclass_from_file("main", str(REPO / "monailabel_app" / "main.py"), "MONAILabelApp")
    app = app_class(app_dir=str(REPO / "monailabel_app"), studies=str(studies),
                    conf={"bundle_path": str(bundle), "localiser_path": str(tmp / "localiser"),
                          "skip_trainers": "true"})
    logging.getLogger().removeHandler(handler)
    check("the datastore lists .jpeg, upper-case and DICOM images, no .xml or .svs, and logs a shared image id",
          sorted(app.datastore().list_images()) == ["a", "b", "c", "d"]
          and "datastore: the files ['c.jpg', 'c.png'] share the image id 'c'; only one is served" in warnings,
          (app.datastore().list_images(), warnings))
    info = app.info()
    check("skip_trainers true: no trainer, both models and both strategies still there", info["trainers"] == {}
          and {MODEL, SEGMENTATION_MODEL} <= set(info["models"])
          and set(info["strategies"]) == {"random", "uncertainty"}, info)
    infers = app._infers
    check("both infer tasks serve one loaded copy of the models",
          infers[MODEL].classifier() is infers[SEGMENTATION_MODEL].classifier())


def check_shipped_bundles_in_process(tmp: Path) -> None:
    """The infer tasks of the shipped bundles, in this process: on a pattern unlike any ultrasound image, in which
    the localiser finds a "lesion", the segmentation has no segment (the stock client would show it alone) and the
    result JSON says why; a form's ``"attention": "false"`` returns no attention map; a box sent to the segmentation
    model, which would be ignored, is refused; a class label ``true`` is not read as malignant."""
    infers = get_class_of_subclass_from_file("main", str(REPO / "monailabel_app" / "main.py"), "MONAILabelApp")(
        app_dir=str(REPO / "monailabel_app"), studies=str(tmp / "studies_skip"), conf={"skip_trainers": "true"},
    )._infers
    rows, columns = np.mgrid[0:300, 0:400]
    pattern = tmp / "pattern.png"
    Image.fromarray(((np.sin(columns / 7.0) * np.cos(rows / 11.0) + 1) * 127).astype(np.uint8)).save(pattern)
    found = infers[SEGMENTATION_MODEL].classifier().localiser.locate(str(pattern)).mask
    mask_file, result = infers[SEGMENTATION_MODEL]({"image": str(pattern)})
    check("segmentation of an image unlike the training images: no segment, and the note says why",
          found.any() and not np.asarray(Image.open(mask_file)).any() and result["class_name"] is None
          and result["note"].startswith("unlike the training images"), (found.mean(), result))
    sample = REPO / "monai_bus" / "samples" / json.loads((REPO / "monai_bus" / "samples" / "samples.json").read_text(
    ))["samples"][0]["image"]
    attention_file, result = infers[MODEL]({"image": str(sample), "attention": "false"})
    check('"attention": "false", as a form sends it: no attention map', attention_file is None
          and result["class_name"] is not None, result)
    try:
        infers[SEGMENTATION_MODEL]({"image": str(sample), "box": [10, 60, 10, 60]})
        refused = ""
    except ValueError as error:
        refused = str(error)
    check("a box sent to the segmentation model is refused, not ignored", refused.startswith(
        "the segmentation model finds the lesion itself; send a box to the classifier"), refused)
    from lib.train import read_class_label  # the app's lib, importable once MONAI Label has loaded the app

    label_file = tmp / "true.json"
    label_file.write_text('{"label": true}')
    try:
        read_class_label(str(label_file), CLASS_NAMES)
        refused = ""
    except ValueError as error:
        refused = str(error)
    check('a class label true is refused, not read as malignant', "unknown class True" in refused, refused)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_server(url: str, server: subprocess.Popen) -> bool:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline and server.poll() is None:
        try:
            return requests.get(f"{url}/info/", timeout=5).ok
        except requests.ConnectionError:
            time.sleep(1)
    return False


def wait_for_task(url: str, path: str) -> dict:
    """Status of the background task at ``path`` (``train/``, ``batch/infer``) once it has ended."""
    deadline = time.monotonic() + TIMEOUT_S
    status = {}
    while time.monotonic() < deadline:
        status = requests.get(f"{url}/{path}", timeout=30).json()
        if status.get("status") not in ("SUBMITTED", "RUNNING"):
            break
        time.sleep(2)
    return status


def train_one_epoch(url: str, model: str, accepted: str, finished: str) -> bool:
    """One /train/ run of ``model`` (1 epoch, a quarter for validation), checked as ``accepted`` and, once it
    has ended, ``finished``; False when the server did not accept it."""
    response = requests.post(f"{url}/train/{model}", json={"max_epochs": 1, "val_split": 0.25}, timeout=30)
    if not check(accepted, response.ok, response.text):
        return False
    status = wait_for_task(url, "train/")
    check(finished, status.get("status") == "DONE", status)
    return True


def datastore_objects(url: str) -> dict:
    return requests.get(f"{url}/datastore/", params={"output": "all"}, timeout=30).json()["objects"]


def wait_for_labels(url: str, tag: str, image_ids: list[str]) -> dict:
    """The datastore's objects once every image has a label of ``tag`` (the server reloads the
    datastore file that a background task wrote), or after 30 s."""
    deadline = time.monotonic() + 30
    while True:
        objects = datastore_objects(url)
        if all(tag in objects.get(i, {}).get("labels", {}) for i in image_ids) or time.monotonic() > deadline:
            return objects
        time.sleep(1)


def infer(url: str, image_id: str, params: dict | None = None) -> requests.Response:
    return requests.post(f"{url}/infer/{MODEL}", params={"image": image_id, "output": "json"},
                         data={"params": json.dumps(params or {})}, timeout=TIMEOUT_S)


def next_sample(url: str) -> dict:
    response = requests.post(f"{url}/activelearning/uncertainty", json={}, timeout=TIMEOUT_S)
    return response.json() if response.ok else {"error": response.text}


def check_infer(url: str, image_id: str, record: dict, when: str) -> dict | None:
    response = infer(url, image_id)
    if not check(f"/infer/ {when}: HTTP 200", response.status_code == 200, response.text[:500]):
        return None
    result = response.json()
    scores = [p["score"] for p in result["prediction"]]
    check(f"/infer/ {when}: prediction labels benign, malignant",
          [p["label"] for p in result["prediction"]] == CLASS_NAMES, result)
    check(f"/infer/ {when}: scores in [0, 1] summing to 1",
          all(0 <= s <= 1 for s in scores) and abs(sum(scores) - 1) < 1e-5, scores)
    check(f"/infer/ {when}: class is the top score", result["class_name"] == CLASS_NAMES[scores.index(max(scores))], result)
    check(f"/infer/ {when}: P(malignant), and the weights' version and SHA-256",
          result["malignancy_probability"] == scores[1] and result["model_version"] == record["version"]
          and result["weights_sha256"] == record["sha256"] == record["file_sha256"], (result, record))
    check(f"/infer/ {when}: an uncertainty and the refer field",
          isinstance(result.get("uncertainty"), float) and result["uncertainty"] >= 0 and "refer" in result, result)
    return result


def check_recalibration(url: str, bundle: Path, stored: dict, threshold: float, sha256: str) -> None:
    """An operating point written into metadata.json while the server runs, as ``monai-bus calibrate`` writes
    it (here a temperature of 2 at the same threshold): /infer/ applies it at once, and the uncertainty
    strategy reuses none of the ``stored`` predictions (P(malignant) by image), not even the one planted at
    the threshold itself. metadata.json is restored afterwards."""
    meta_file = bundle / "configs" / "metadata.json"
    shipped = meta_file.read_text()
    metadata = json.loads(shipped)
    metadata["operating_point"] = {"threshold": threshold, "temperature": 2.0, "weights_sha256": sha256,
                                   "description": "a recalibration while the server runs"}
    meta_file.write_text(json.dumps(metadata, indent=4) + "\n")
    try:
        fresh = {i: infer(url, i).json()["malignancy_probability"] for i in stored}
        check("after a recalibration, /infer/ applies the new operating point at once (temperature 2: nearer 0.5)",
              all(abs(fresh[i] - 0.5) < abs(p - 0.5) for i, p in stored.items() if p != 0.5), (stored, fresh))
        sample = next_sample(url)
        check("after a recalibration, the uncertainty strategy reuses no stored prediction: it picks from fresh ones",
              sample.get("id") in fresh and sample.get("malignancy_probability") == fresh[sample["id"]]
              and abs(fresh[sample["id"]] - threshold) == min(abs(p - threshold) for p in fresh.values()),
              (sample, fresh))
    finally:
        meta_file.write_text(shipped)


def check_info(url: str, record: dict, when: str) -> None:
    model = requests.get(f"{url}/info/", timeout=30).json()["models"].get(MODEL, {})
    check(f"/info/ {when}: the weights' version, SHA-256 and training data",
          (model.get("version"), model.get("weights_sha256"), model.get("trained_on"))
          == (record["version"], record["file_sha256"], record["trained_on"]), (model, record))


def check_stored_predictions(url: str, image_ids: list[str], sha256: str) -> dict:
    """Batch inference with attention maps on all images; returns the stored P(malignant) of each."""
    response = requests.post(f"{url}/batch/infer/{MODEL}", json={"attention": True}, timeout=30)
    if not check("/batch/infer/ accepted", response.ok, response.text):
        return {}
    status = wait_for_task(url, "batch/infer")
    check("/batch/infer/ finished, the corrupt image skipped", status.get("status") == "DONE", status)
    objects = wait_for_labels(url, ATTENTION_TAG, image_ids)
    infos = {i: objects.get(i, {}).get("labels", {}).get(PREDICTION_TAG, {}).get("info", {}) for i in image_ids}
    stored = check("batch inference stores each image's class, P(malignant) and weights SHA-256 as label info",
                   all(info.get("class_name") in CLASS_NAMES and 0 <= info.get("malignancy_probability", -1) <= 1
                       and info.get("weights_sha256") == sha256 for info in infos.values()), infos)
    check("batch inference stores each image's attention map under its own tag",
          all(ATTENTION_TAG in objects.get(i, {}).get("labels", {}) for i in image_ids), objects)
    check("nothing stored as 'original'; nothing for the corrupt image",
          not any("original" in o["labels"] for o in objects.values()) and not objects["corrupt"]["labels"], objects)
    return {i: info["malignancy_probability"] for i, info in infos.items()} if stored else {}


def check_segmentation(url: str, bundle: Path, item: dict, classified: dict | None) -> None:
    """The segmentation model as the stock Slicer MONAILabel module calls it: MONAILabelClient.infer returns the
    lesion mask, which is the localiser's in this process, and the classification around its box."""
    localiser = bundle.parent / "localiser"
    mask_file, result = MONAILabelClient(url, tmpdir=str(bundle.parent)).infer(SEGMENTATION_MODEL, image_id(item), {})
    expected = BundleClassifier(bundle, localiser=LesionLocaliser(localiser)).predict(
        bundle.parent / "studies" / Path(item["image"]).name)
    mask = Image.open(mask_file)
    check("segmentation: a label image of the image's size, 1 on the lesion, as the localiser finds it",
          mask.size == (96, 96) and set(mask.getdata()) <= {0, 1}
          and (np.asarray(mask) == 1).tolist() == expected.lesion_mask.tolist(), (mask.size, set(mask.getdata())))
    check("segmentation: the class and P(malignant) travel with the mask",
          classified is not None and result.get("class_name") == classified["class_name"]
          and result.get("malignancy_probability") == classified["malignancy_probability"]
          and result.get("box") == list(expected.box), (result, classified))
    check("segmentation: so do the uncertainty and the refer flag, as the inference API gives them here",
          isinstance(expected.uncertainty, float) and isinstance(result.get("uncertainty"), float)
          and abs(result["uncertainty"] - expected.uncertainty) < 1e-4
          and result.get("refer") == expected.refer, (result, expected.uncertainty, expected.refer))


def check_localiser_fine_tuning(url: str, bundle: Path, items: list[dict], log: Path) -> None:
    """Corrected masks saved as final labels (PNG, and NIfTI as the stock Slicer module submits them) train the
    localiser; the class labels, the label that is neither, and masks that are not a lesion's (an empty one, an
    inverted one, one of several levels) are skipped, by image and with the reason."""
    localiser = bundle.parent / "localiser"
    shipped = json.loads((localiser / "configs" / "metadata.json").read_text())
    masked = items[-NUM_MASKED:]
    wrong = dict(zip((image_id(item) for item in items[NUM_LABELLED:NUM_LABELLED + NUM_UNLABELLED]), (
        ("empty.png", lambda lesion: np.zeros_like(lesion), "no lesion pixel"),
        ("inverted.png", lambda lesion: 255 * (1 - lesion), "the lesion fills all four corners"),
        ("levels.png", lambda lesion: lesion * 255 + (1 - lesion) * np.arange(lesion.shape[1], dtype=np.uint8) % 3,
         "not a lesion mask: 3 non-zero levels"))))
    for image, (name, made, _) in wrong.items():
        item = next(item for item in items if image_id(item) == image)
        lesion = read_mask(bundle.parent / "data" / item["mask"]).astype(np.uint8)
        Image.fromarray(made(lesion).astype(np.uint8)).save(bundle.parent / name)
        MONAILabelClient(url).save_label(image, str(bundle.parent / name), tag="final")
    for index, item in enumerate(masked):
        pixels = read_mask(bundle.parent / "data" / item["mask"]).astype(np.uint8)
        path = bundle.parent / f"corrected_{index}.{'nii.gz' if index % 2 else 'png'}"
        if index % 2:
            itk.imwrite(itk.image_from_array(pixels[np.newaxis]), str(path))
        else:
            Image.fromarray(pixels * 255).save(path)
        response = MONAILabelClient(url).save_label(image_id(item), str(path), tag="final")
        if not check(f"a corrected mask ({path.name}) saved as a final label", response.get("label") == image_id(item),
                     response):
            return
    model_file = localiser / "models" / "model.pt"
    mtime = model_file.stat().st_mtime_ns
    if not train_one_epoch(url, SEGMENTATION_MODEL, "/train/ of the localiser accepted",
                           "/train/ of the localiser finished"):
        return
    text = log.read_text()
    check("it used the masks and skipped the other labels, logged by image and counted",
          f"{NUM_MASKED} final lesion masks used, {NUM_LABELLED + 1 + len(wrong)} skipped" in text
          and f"final label of image '{image_id(items[0])}' skipped:" in text, text[-3000:])
    logged = {image: text.split(f"final label of image '{image}' skipped: ")[1:] for image in wrong}
    check("the masks that are not a lesion's (empty, inverted, several levels): each skipped with its reason",
          all(logged[image] and reason in logged[image][0].splitlines()[0] for image, (_, _, reason) in wrong.items()),
          text[-3000:])
    kept = localiser / "models" / "model_shipped.pt"
    check("the localiser's new weights, its shipped ones kept as models/model_shipped.pt",
          model_file.stat().st_mtime_ns != mtime and kept.is_file() and hashlib.sha256(kept.read_bytes()).hexdigest()
          == shipped["weights"]["models/model.pt"]["sha256"])
    tuned = weights_record(localiser)
    check("their record: MONAI Label fine-tuning of the shipped localiser on the final lesion masks",
          tuned["trained_on"].startswith(f"MONAI Label fine-tuning of {shipped['version']} on the final lesion masks")
          and tuned["sha256"] == tuned["file_sha256"], tuned)
    model = requests.get(f"{url}/info/", timeout=30).json()["models"].get(SEGMENTATION_MODEL, {})
    result = requests.post(f"{url}/infer/{SEGMENTATION_MODEL}", params={"image": image_id(items[0]), "output": "json"},
                           timeout=TIMEOUT_S).json()
    check("/info/ and /infer/ serve the fine-tuned localiser",
          (model.get("localiser_version"), model.get("localiser_sha256")) == (tuned["version"], tuned["sha256"])
          and result.get("localiser_sha256") == tuned["sha256"], (model, result))
    check("its answer says that the shipped localiser's cut-off for checking the box was not applied to it",
          f"the localiser's cut-off for checking its box was fitted for other weights "
          f"({shipped['operating_point']['weights_sha256'][:12]}), so it was not applied" in (result.get("note") or ""),
          result)


def check_server(url: str, bundle: Path, items: list[dict], generic_scores: dict | None, log: Path) -> None:
    info = requests.get(f"{url}/info/", timeout=30).json()
    model = info["models"].get(MODEL, {})
    check("/info/: classification model with labels benign, malignant",
          model.get("type") == "classification" and model.get("labels") == {"benign": 0, "malignant": 1}, info["models"])
    segmentation = info["models"].get(SEGMENTATION_MODEL, {})
    check("/info/: segmentation model (as the stock Slicer client lists them) with the label lesion",
          segmentation.get("type") == "segmentation" and segmentation.get("labels") == {"lesion": 1}
          and segmentation.get("dimension") == 2, info["models"])
    check("/info/: both trainers listed", set(info["trainers"]) == {MODEL, SEGMENTATION_MODEL}, info["trainers"])
    check("/info/: strategies random and uncertainty", set(info["strategies"]) == {"random", "uncertainty"},
          info["strategies"])
    record = shipped_record(bundle)
    metadata = json.loads((bundle / "configs" / "metadata.json").read_text())
    check_info(url, record, "before fine-tuning (the shipped weights: the bundle's version)")

    labelled = items[:NUM_LABELLED]
    unlabelled = items[NUM_LABELLED:NUM_LABELLED + NUM_UNLABELLED] + items[-NUM_MASKED:]  # until the masks are saved
    not_a_class = image_id(items[NUM_LABELLED + NUM_UNLABELLED])
    first = image_id(items[0])
    before = check_infer(url, first, record, "before training")
    if before and generic_scores:
        check("/infer/ agrees with BundleInferTask", all(
            abs(generic_scores[p["label"]] - p["score"]) < 1e-3 for p in before["prediction"]), (before, generic_scores))

    attention_file, client_result = MONAILabelClient(url, tmpdir=str(bundle.parent)).infer(MODEL, first, {"attention": True})
    check("MONAILabelClient.infer gets the classification and the attention map", before is not None
          and client_result["prediction"] == before["prediction"] and Path(attention_file).is_file(), client_result)
    check("/infer/ without save_label stores nothing", not requests.get(f"{url}/info/", timeout=30).json()
          ["datastore"]["label_tags"])

    response = requests.post(f"{url}/infer/{MODEL}", params={"image": first, "output": "image"},
                             data={"params": json.dumps({"attention": True})}, timeout=TIMEOUT_S)
    ok = response.status_code == 200 and response.headers["content-type"] == "image/png"
    if check("/infer/ attention map as result image", ok, response.text[:300]):
        check("attention map has the image's size", Image.open(BytesIO(response.content)).size == (96, 96))

    box = box_from_masks(str(bundle.parent / "data" / items[0]["mask"]))
    response = infer(url, first, {"box": list(box)})
    result = response.json() if response.status_code == 200 else {}
    check("/infer/ with a lesion box classifies the region around it; without one, around the localiser's box",
          result.get("box_source") == "given" and result.get("box") == list(box) and result.get("roi") is not None
          and before is not None and before["box_source"] == "localiser", (response.text, before))
    check_segmentation(url, bundle, items[0], before)
    response = infer(url, first, {"box": [10, 10, 0, 5]})
    check("zero-height box: HTTP 422 saying so", response.status_code == 422 and "zero height" in response.text,
          (response.status_code, response.text))

    response = infer(url, "no_such_image")
    check("unknown image id: HTTP 404 naming it", response.status_code == 404 and "no_such_image" in response.text,
          (response.status_code, response.text))
    response = infer(url, "corrupt")
    check("corrupt image: HTTP 422 naming the file", response.status_code == 422 and "corrupt.png" in response.text,
          (response.status_code, response.text))
    check("server alive after bad input", requests.get(f"{url}/info/", timeout=30).ok)

    response = infer(url, first, {"save_label": True, "attention": True})
    stored = requests.get(f"{url}/datastore/label", params={"label": first, "tag": PREDICTION_TAG}, timeout=30)
    attention = requests.get(f"{url}/datastore/label", params={"label": first, "tag": ATTENTION_TAG}, timeout=30)
    check("/infer/ with save_label stores the result JSON and the attention map under their own tags",
          response.ok and stored.ok and stored.json() == response.json() and attention.ok
          and Image.open(BytesIO(attention.content)).size == (96, 96), (response.text, stored.text))

    probabilities = check_stored_predictions(url, [image_id(item) for item in items], record["sha256"])
    check("batch inference skip logged with the image and the reason",
          "batch inference: image 'corrupt' skipped: cannot classify image 'corrupt'" in log.read_text())
    threshold = (metadata.get("operating_point") or {}).get("threshold", 0.5)
    if probabilities:
        sample = next_sample(url)
        distance = {i: abs(p - threshold) for i, p in probabilities.items()}
        check("uncertainty strategy picks the image whose P(malignant) is closest to the threshold",
              sample.get("id") in distance and distance[sample["id"]] == min(distance.values())
              and sample.get("threshold") == threshold, (sample, probabilities))
        target = next(image_id(item) for item in labelled[1:] if image_id(item) != sample.get("id"))
        requests.put(f"{url}/datastore/label/info", params={"label": target, "tag": PREDICTION_TAG},
                     data={"info": json.dumps({"malignancy_probability": threshold})}, timeout=30)
        sample = next_sample(url)
        check("uncertainty strategy reuses the stored predictions of the current weights", sample.get("id") == target,
              (sample, target))
        check_recalibration(url, bundle, probabilities, threshold, record["sha256"])

    label_file = bundle.parent / "label.json"  # as documented for Slicer's Python console
    label_file.write_text(json.dumps({"label": CLASS_NAMES[items[0]["label"]]}))
    response = MONAILabelClient(url).save_label(first, str(label_file), tag="final")
    check("MONAILabelClient.save_label stores a class label", response.get("label") == first, response)
    for item in labelled[1:]:
        label = json.dumps({"label": CLASS_NAMES[item["label"]]}).encode()
        response = requests.put(f"{url}/datastore/label", params={"image": image_id(item), "tag": "final"},
                                files={"label": ("label.json", label, "application/json")}, timeout=30)
        if not response.ok:
            check("save labels through /datastore/label", False, response.text)
            return
    segmentation = gzip.compress(b"a segmentation, as the stock Slicer module's Submit Label sends")
    response = requests.put(f"{url}/datastore/label", params={"image": not_a_class, "tag": "final"},
                            files={"label": ("label.nii.gz", segmentation, "application/octet-stream")}, timeout=30)
    check("a segmentation saved as a final label", response.ok, response.text)
    response = requests.get(f"{url}/datastore/label", params={"label": first, "tag": "final"}, timeout=30)
    check("label round trip through the datastore",
          response.ok and response.json() == {"label": CLASS_NAMES[items[0]["label"]]}, response.text)
    completed = requests.get(f"{url}/info/", timeout=30).json()["datastore"]["completed"]
    check("datastore counts the labelled images", completed == NUM_LABELLED + 1, completed)

    model_file = bundle / "models" / "model.pt"
    mtime = model_file.stat().st_mtime_ns
    if not train_one_epoch(url, MODEL, "/train/ accepted", "/train/ finished despite a final label that is not a class"):
        return
    text = log.read_text()
    check("that label is skipped: logged with its image and the reason, and counted",
          f"final label of image '{not_a_class}' skipped:" in text and "not a JSON class label" in text
          and f"{NUM_LABELLED} final class labels used, 1 skipped: ['{not_a_class}']" in text)
    check("training wrote a new model file", model_file.stat().st_mtime_ns != mtime)
    kept = bundle / "models" / "model_shipped.pt"
    check("the shipped weights it replaced are kept as models/model_shipped.pt, and the log says so",
          kept.is_file() and hashlib.sha256(kept.read_bytes()).hexdigest() == record["sha256"]
          and f"they are kept as {kept}" in text)

    tuned = weights_record(bundle)
    check("the fine-tuned model has a version of its own and the SHA-256 of its file",
          tuned["version"].startswith(metadata["version"] + "+trained.") and tuned["version"] != record["version"]
          and tuned["sha256"] == tuned["file_sha256"] != record["file_sha256"], (record, tuned))
    check("its record says: MONAI Label fine-tuning of the previous model on the datastore's labels",
          tuned["trained_on"].startswith(f"MONAI Label fine-tuning of {record['version']} on the final class labels of")
          and f"{NUM_LABELLED * 3 // 4} training images" in tuned["trained_on"], tuned["trained_on"])
    check_info(url, tuned, "after fine-tuning")
    after = check_infer(url, first, tuned, "after training")
    if before and after:
        check("/infer/ uses the new model", after["probabilities"] != before["probabilities"], (before, after))

    fresh = {image_id(item): infer(url, image_id(item)).json()["malignancy_probability"] for item in unlabelled}
    sample = next_sample(url)
    check("uncertainty strategy after training: the new model's least certain unlabelled image (a tie may go "
          "either way)", sample.get("id") in fresh and sample.get("malignancy_probability") == fresh[sample["id"]]
          and abs(fresh[sample["id"]] - threshold) == min(abs(p - threshold) for p in fresh.values()), (sample, fresh))
    check_localiser_fine_tuning(url, bundle, items, log)


def main() -> int:
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="monailabel_check_"))
    server = None
    try:
        bundle, studies, items = prepare(tmp)
        generic_scores = check_bundle_infer_task(bundle, studies / Path(items[0]["image"]).name)
        # the apps loaded in this process watch no folder: their watchers would outlive the temporary folder and
        # print its removal's errors at exit (the server, a process of its own, keeps MONAI Label's setting)
        settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD = False
        check_skip_trainers(bundle, tmp)
        check_shipped_bundles_in_process(tmp)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = tmp / "server.log"
        with open(log, "w") as log_file:
            server = subprocess.Popen(
                [sys.executable, "-m", "monailabel.main", "start_server", "--app", str(REPO / "monailabel_app"),
                 "--studies", str(studies), "--host", "127.0.0.1", "--port", str(port),
                 "--conf", "bundle_path", str(bundle), "--conf", "localiser_path", str(tmp / "localiser")],
                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
            )
        if check("server ready", wait_for_server(url, server), f"see {log}"):
            check_server(url, bundle, items, generic_scores, log)
    except Exception as error:  # report a crash as a failure, then still stop the server
        check("no unexpected error", False, f"{type(error).__name__}: {error}")
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)  # the server and the training processes it started
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
    failed = results.count(False)
    if failed:
        print(f"server log and data kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"time: {time.monotonic() - started:.0f} s")
    print(f"{results.count(True)} passed, {failed} failed")
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())
