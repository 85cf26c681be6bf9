"""Real-server test of the MONAI Label app (monailabel_app/): no mocks.

Run it with the MONAI Label environment (scripts/install_monailabel_env.sh):

    .venv-monailabel/bin/python tests/monailabel/run_server_check.py

It trains a copy of the bundle for one epoch on synthetic images, starts ``monailabel start_server``
on 127.0.0.1 with the app and a studies folder of synthetic images (and one corrupt image), then
checks /info/, /infer/, bad input, labels saved through /datastore/label, one /train/ run, and
inference with the new model; the server is always stopped at the end. The last line reads
``N passed, M failed``; the exit code is 0 only when nothing failed. Its name keeps it out of the
main pytest run (pytest collects ``test_*.py`` and ``*_test.py``).
"""

from __future__ import annotations

import json
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

import requests
from monailabel.client import MONAILabelClient  # the client API that Slicer's MONAILabel module uses
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.bundle import BundleInferTask
from PIL import Image

from monai_bus.data.boxes import box_from_masks
from monai_bus.data.demo import write_demo_dataset

REPO = Path(__file__).resolve().parents[2]
MODEL = "breast_lesion_classifier"
CLASS_NAMES = ["benign", "malignant"]
TIMEOUT_S = 240  # server start, one request, or one training run

results: list[bool] = []


def check(name: str, ok: bool, detail: object = "") -> bool:
    results.append(bool(ok))
    print(f"{'PASS' if ok else 'FAIL'}: {name}" + ("" if ok else f" -- {detail}"), flush=True)
    return ok


def prepare(tmp: Path) -> tuple[Path, Path, list[dict]]:
    """A bundle copy trained for one epoch, a studies folder, and the synthetic items with labels."""
    data = tmp / "data"
    write_demo_dataset(data, num_images=16, size=96, seed=1)
    bundle = tmp / "bundle"
    shutil.copytree(REPO / "bundle", bundle, ignore=shutil.ignore_patterns("models", "eval", "demo_data"))
    configs = bundle / "configs"
    subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "training",
         "--config_file", str(configs / "train.json"), "--meta_file", str(configs / "metadata.json"),
         "--logging_file", str(configs / "logging.conf"), "--bundle_root", str(bundle),
         "--dataset_dir", str(data), "--max_epochs", "1", "--batch_size", "8", "--num_workers", "0"],
        check=True, stdout=subprocess.DEVNULL, timeout=TIMEOUT_S,
    )
    studies = tmp / "studies"
    studies.mkdir()
    datalist = json.loads((data / "datalist.json").read_text())
    items = [item for split in ("training", "validation", "test") for item in datalist[split]]
    for item in items:
        shutil.copy(data / item["image"], studies)
    (studies / "corrupt.png").write_bytes(b"this is not a PNG file")
    return bundle, studies, items


def check_bundle_infer_task(bundle: Path, image: Path) -> dict:
    """MONAI Label's generic BundleInferTask loads the bundle; returns its probabilities for ``image``."""
    generic = BundleInferTask(str(bundle), conf={})
    check("BundleInferTask(bundle, conf={}) loads the bundle", generic.is_valid())
    check("BundleInferTask reads labels benign/malignant", generic.labels == {"benign": 0, "malignant": 1}, generic.labels)
    classifier = BundleInferTask(str(bundle), conf={}, type=InferType.CLASSIFICATION, add_post_restore=False)
    _, result = classifier({"image": str(image)})
    return {p["label"]: p["score"] for p in result["prediction"]}


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


def infer(url: str, image_id: str) -> requests.Response:
    return requests.post(f"{url}/infer/{MODEL}", params={"image": image_id, "output": "json"}, timeout=TIMEOUT_S)


def check_infer(url: str, image_id: str, version: str, when: str) -> dict | None:
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
    check(f"/infer/ {when}: P(malignant) and model version",
          result["malignancy_probability"] == scores[1] and result["model_version"] == version, result)
    return result


def check_server(url: str, bundle: Path, items: list[dict], generic_scores: dict) -> None:
    info = requests.get(f"{url}/info/", timeout=30).json()
    model = info["models"].get(MODEL, {})
    check("/info/: classification model with labels benign, malignant",
          model.get("type") == "classification" and model.get("labels") == {"benign": 0, "malignant": 1}, info["models"])
    check("/info/: trainer listed", MODEL in info["trainers"], info["trainers"])

    image_id = Path(items[0]["image"]).stem
    version = json.loads((bundle / "configs" / "metadata.json").read_text())["version"]
    before = check_infer(url, image_id, version, "before training")
    if before:
        check("/infer/ agrees with BundleInferTask", all(
            abs(generic_scores[p["label"]] - p["score"]) < 1e-3 for p in before["prediction"]), (before, generic_scores))

    attention_file, client_result = MONAILabelClient(url, tmpdir=str(bundle.parent)).infer(MODEL, image_id, {"attention": True})
    check("MONAILabelClient.infer gets the classification and the attention map", before is not None
          and client_result["prediction"] == before["prediction"] and Path(attention_file).is_file(), client_result)

    response = requests.post(f"{url}/infer/{MODEL}", params={"image": image_id, "output": "image"},
                             data={"params": json.dumps({"attention": True})}, timeout=TIMEOUT_S)
    ok = response.status_code == 200 and response.headers["content-type"] == "image/png"
    if check("/infer/ attention map as result image", ok, response.text[:300]):
        check("attention map has the image's size", Image.open(BytesIO(response.content)).size == (96, 96))

    box = box_from_masks(str(bundle.parent / "data" / items[0]["mask"]))
    response = requests.post(f"{url}/infer/{MODEL}", params={"image": image_id, "output": "json"},
                             data={"params": json.dumps({"box": list(box)})}, timeout=TIMEOUT_S)
    result = response.json() if response.status_code == 200 else {}
    check("/infer/ with a lesion box classifies the region around it", result.get("roi") is not None
          and result.get("note") is None and before is not None and before["note"] is not None, (response.text, before))
    response = requests.post(f"{url}/infer/{MODEL}", params={"image": image_id, "output": "json"},
                             data={"params": json.dumps({"box": [10, 10, 0, 5]})}, timeout=TIMEOUT_S)
    check("zero-height box: HTTP 422 saying so", response.status_code == 422 and "zero height" in response.text,
          (response.status_code, response.text))

    response = infer(url, "no_such_image")
    check("unknown image id: HTTP 404 naming it", response.status_code == 404 and "no_such_image" in response.text,
          (response.status_code, response.text))
    response = infer(url, "corrupt")
    check("corrupt image: HTTP 422 naming the file", response.status_code == 422 and "corrupt.png" in response.text,
          (response.status_code, response.text))
    check("server alive after bad input", requests.get(f"{url}/info/", timeout=30).ok)

    for item in items:
        label = json.dumps({"label": CLASS_NAMES[item["label"]]}).encode()
        response = requests.put(f"{url}/datastore/label", params={"image": Path(item["image"]).stem, "tag": "final"},
                                files={"label": ("label.json", label, "application/json")}, timeout=30)
        if not response.ok:
            check("save labels through /datastore/label", False, response.text)
            return
    response = requests.get(f"{url}/datastore/label", params={"label": image_id, "tag": "final"}, timeout=30)
    check("label round trip through the datastore",
          response.ok and response.json() == {"label": CLASS_NAMES[items[0]["label"]]}, response.text)
    completed = requests.get(f"{url}/info/", timeout=30).json()["datastore"]["completed"]
    check("datastore counts the labelled images", completed == len(items), completed)

    model_file = bundle / "models" / "model.pt"
    mtime = model_file.stat().st_mtime_ns
    response = requests.post(f"{url}/train/{MODEL}", json={"max_epochs": 1, "val_split": 0.25}, timeout=30)
    if not check("/train/ accepted", response.ok, response.text):
        return
    deadline = time.monotonic() + TIMEOUT_S
    status = {}
    while time.monotonic() < deadline:
        status = requests.get(f"{url}/train/", timeout=30).json()
        if status.get("status") not in ("SUBMITTED", "RUNNING"):
            break
        time.sleep(2)
    check("/train/ finished", status.get("status") == "DONE", status)
    check("training wrote a new model file", model_file.stat().st_mtime_ns != mtime)
    after = check_infer(url, image_id, version, "after training")
    if before and after:
        check("/infer/ uses the new model", after["probabilities"] != before["probabilities"], (before, after))


def main() -> int:
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="monailabel_check_"))
    server = None
    try:
        bundle, studies, items = prepare(tmp)
        generic_scores = check_bundle_infer_task(bundle, studies / Path(items[0]["image"]).name)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with open(tmp / "server.log", "w") as log:
            server = subprocess.Popen(
                [sys.executable, "-m", "monailabel.main", "start_server", "--app", str(REPO / "monailabel_app"),
                 "--studies", str(studies), "--host", "127.0.0.1", "--port", str(port),
                 "--conf", "bundle_path", str(bundle)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        if check("server ready", wait_for_server(url, server), f"see {tmp / 'server.log'}"):
            check_server(url, bundle, items, generic_scores)
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
