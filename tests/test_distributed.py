"""The multi_gpu_train.json overlay under torchrun: 2 processes on CPU (gloo backend)."""

from __future__ import annotations

import os
import subprocess
import sys

import torch

from conftest import copy_bundle


def test_torchrun_two_processes(tmp_path, tiny_data):
    bundle = copy_bundle(tmp_path / "bundle")
    configs = bundle / "configs"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29531",
        "-m", "monai.bundle", "run",
        "--config_file", f"['{configs / 'train.json'}','{configs / 'multi_gpu_train.json'}']",
        "--meta_file", str(configs / "metadata.json"),
        "--logging_file", str(configs / "logging.conf"),
        "--bundle_root", str(bundle), "--dataset_dir", str(tiny_data),
        "--image_size", "64", "--batch_size", "4", "--num_workers", "0", "--max_epochs", "2",
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (bundle / "models" / "model.pt").is_file()
    state = torch.load(bundle / "models" / "checkpoint_last.pt", weights_only=True)
    # 30 training images over 2 ranks with batch 4: ceil(15 / 4) = 4 iterations per epoch and rank
    assert state["trainer"]["epoch_length"] == 4 and state["trainer"]["iteration"] == 8
    assert not any(key.startswith("module.") for key in state["model"])  # saved unwrapped from DDP
    assert "val_auc" in result.stdout + result.stderr
