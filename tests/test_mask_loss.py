"""The auxiliary mask loss (AttentionMaskLoss) and the classifier preprocessing that carries the mask."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.engines import IterationEvents, SupervisedTrainer
from monai.handlers import from_engine
from monai.transforms import Compose
from PIL import Image

from monai_bus.data.transforms import classifier_transforms
from monai_bus.errors import InputError, TrainingError
from monai_bus.handlers import AttentionMaskLoss
from monai_bus.networks.classifiers import AttentionVGG16, VGG16Classifier


def _trainer(network, weight):
    batch = {"image": torch.randn(2, 1, 64, 64), "label": torch.tensor([0, 1]),
             "lesion": torch.zeros(2, 1, 64, 64)}
    batch["lesion"][:, :, 12:44, 8:40] = 1.0
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=1, train_data_loader=[batch], network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=0.1),
        loss_function=lambda pred, label: pred.sum() * 0.0,  # only the auxiliary term has a gradient
        train_handlers=[AttentionMaskLoss(network, weight=weight)])
    return trainer, batch


def test_the_loss_adds_the_weighted_bce_of_the_gate_which_learns_from_it():
    torch.manual_seed(0)
    network = AttentionVGG16(hidden=4, batch_norm=True)
    alphas = []
    network.gate.register_forward_hook(lambda module, inputs, outputs: alphas.append(outputs[1].detach()))
    trainer, batch = _trainer(network, weight=0.3)
    head, gate = network.head[0].weight.clone(), network.gate.psi.weight.clone()
    trainer.run()
    target = F.adaptive_avg_pool2d(batch["lesion"], (8, 8))
    assert set(target.unique().tolist()) == {0.0, 0.5, 1.0}  # the mask's edges fall inside cells
    expected = 0.3 * F.binary_cross_entropy(alphas[0], target)  # equal to the logits form where alpha is not 0 or 1
    assert from_engine(["loss"], first=True)(trainer.state.output) == pytest.approx(expected.item(), rel=1e-5)
    assert not torch.equal(network.gate.psi.weight, gate)
    assert torch.equal(network.head[0].weight, head)


def test_a_saturated_gate_still_learns():
    torch.manual_seed(0)
    network = AttentionVGG16(hidden=4, batch_norm=True)
    with torch.no_grad():
        network.gate.psi.bias.fill_(30.0)  # alpha rounds to exactly 1 even in float32
    trainer, _ = _trainer(network, weight=0.3)
    trainer.run()
    assert network.gate.psi.bias.item() < 30.0  # pulled down towards the mask's zeros


def test_evaluation_passes_are_not_supervised_and_arguments_are_checked():
    network = AttentionVGG16(hidden=4, batch_norm=True)
    handler = AttentionMaskLoss(network)
    handler.attach(SupervisedTrainer(device=torch.device("cpu"), max_epochs=1, train_data_loader=[], network=network,
                                     optimizer=torch.optim.SGD(network.parameters(), lr=0.1),
                                     loss_function=torch.nn.CrossEntropyLoss()))
    network.eval()
    with torch.no_grad():
        network(torch.randn(1, 1, 64, 64))
    assert handler.logits is None
    with pytest.raises(InputError, match=r"weight\) must be >= 0, got -0.1"):
        AttentionMaskLoss(network, weight=-0.1)
    with pytest.raises(InputError, match="which VGG16Classifier lacks: set attention true, or mask_loss_weight 0"):
        AttentionMaskLoss(VGG16Classifier(hidden=4))


def test_weight_zero_turns_it_off():
    torch.manual_seed(0)
    trainer, batch = _trainer(VGG16Classifier(hidden=4, batch_norm=True), weight=0.0)  # no gate needed
    del batch["lesion"]  # nor masks
    trainer.run()
    network = AttentionVGG16(hidden=4, batch_norm=True)
    trainer, _ = _trainer(network, weight=0.0)
    assert not network.gate.psi._forward_hooks
    assert not trainer.has_event_handler(AttentionMaskLoss.__call__, IterationEvents.LOSS_COMPLETED)


def test_a_batch_without_masks_is_a_clear_error():
    torch.manual_seed(0)
    network = AttentionVGG16(hidden=4, batch_norm=True)
    trainer, batch = _trainer(network, weight=0.3)
    del batch["lesion"]
    with pytest.raises(TrainingError, match="the batch's 'lesion'.*got no masks"):
        trainer.run()


def test_the_mask_is_cropped_resized_and_flipped_with_the_image(tmp_path):
    image = np.full((120, 160), 40, np.uint8)
    image[50:80, 60:120] = 200  # the lesion is bright
    image += np.random.default_rng(0).integers(0, 20, image.shape, dtype=np.uint8)
    mask = np.zeros_like(image)
    mask[50:80, 60:120] = 255
    Image.fromarray(image).save(tmp_path / "image.png")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    item = {"image": str(tmp_path / "image.png"), "mask": str(tmp_path / "mask.png"), "label": 1}
    out = Compose(classifier_transforms(32, roi=True, roi_margin=0.25, lesion_key="lesion"))(item)
    lesion, picture = out["lesion"], out["image"]
    assert lesion.shape == picture.shape == (1, 32, 32)
    assert 0.0 <= lesion.min() and lesion.max() <= 1.0
    inside = lesion[0] > 0.5
    assert 0.2 < inside.float().mean() < 0.8  # the crop's margin around the lesion
    assert picture[0][inside].mean() > picture[0][~inside].mean() + 1.0  # the mask lies on the bright lesion
    assert "lesion" not in Compose(classifier_transforms(32, roi=True, roi_margin=0.25))(item)
