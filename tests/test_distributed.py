"""The multi_gpu_train.json overlay under torchrun: 2 processes on CPU (gloo backend)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch
from monai.bundle import ConfigWorkflow

from conftest import bundle_overrides, copy_bundle, torchrun_failure
from monai_bus.commands.demo import read_metrics
from monai_bus.metrics import METRIC_NAMES

LOGGED_METRICS = re.compile(r"Epoch\[1\] Metrics -- (.*)")
NAME_VALUE = re.compile(r"(\w+): (\S+)")


def uneven_datalist(tiny_data, path):
    """``tiny_data``'s datalist with 5 validation images, which 2 ranks split 3/2, and 5 test images; beside it,
    ``evaluation.json`` lists the 5 validation images as its test split (an image belongs to one split of a
    datalist), to evaluate them in one process."""
    datalist = json.loads((tiny_data / "datalist.json").read_text())
    datalist["validation"], datalist["test"] = datalist["validation"][:5], datalist["test"][:5]
    path.write_text(json.dumps(datalist))
    path.with_name("evaluation.json").write_text(json.dumps({"test": datalist["validation"]}))
    return path


def test_torchrun_two_processes_with_an_uneven_validation_split(tmp_path, tiny_data):
    bundle = copy_bundle(tmp_path / "bundle")
    configs = bundle / "configs"
    datalist = uneven_datalist(tiny_data, tmp_path / "uneven.json")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29531",
        "-m", "monai.bundle", "run",
        "--config_file", f"['{configs / 'train.json'}','{configs / 'multi_gpu_train.json'}']",
        "--meta_file", str(configs / "metadata.json"),
        "--logging_file", str(configs / "logging.conf"),
        "--bundle_root", str(bundle), "--dataset_dir", str(tiny_data), "--datalist", str(datalist),
        "--image_size", "64", "--batch_size", "4", "--num_workers", "0", "--max_epochs", "1",
    ]
    # PYTHONFAULTHANDLER: a rank that crashes prints every thread's Python stack
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONFAULTHANDLER": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment)
    assert result.returncode == 0, torchrun_failure(result)
    assert (bundle / "models" / "model.pt").is_file()
    state = torch.load(bundle / "models" / "checkpoint_last.pt", weights_only=True)
    # 30 training images over 2 ranks with batch 4: ceil(15 / 4) = 4 iterations per epoch and rank
    assert state["trainer"]["epoch_length"] == 4 and state["trainer"]["iteration"] == 4
    assert not any(key.startswith("module.") for key in state["model"])  # saved unwrapped from DDP

    logged = [LOGGED_METRICS.search(line) for line in (result.stdout + result.stderr).splitlines()]
    distributed = dict(NAME_VALUE.findall(next(match[1] for match in logged if match and "val_auc" in match[1])))
    # the same model, evaluated on the same 5 images by one process
    flow = ConfigWorkflow(config_file=[str(configs / "train.json"), str(configs / "evaluate.json")],
                          workflow_type="eval", logging_file=False,
                          **bundle_overrides(bundle, tiny_data, datalist=str(datalist.with_name("evaluation.json"))))
    flow.initialize()
    flow.run()
    single = read_metrics(bundle / "eval" / "metrics.csv")
    assert set(distributed) == {"val_auc"} | (set(METRIC_NAMES) - {"auc"})
    for name, value in single.items():
        assert float(distributed[name]) == pytest.approx(value, abs=1e-4), name
