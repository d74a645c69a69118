"""Config-built loss sums, multiclass targets, the aux presence term."""

from __future__ import annotations

from pathlib import Path

import pytest
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F

from kseg.config import load_config
from kseg.losses import LOSSES, build_loss, index_target, presence_target
from kseg.registry import RegistryError
from kseg.typed import ConfigError

REPO = Path(__file__).resolve().parents[1]


def cfg_with(*overrides: str):
    return load_config(REPO / "configs" / "demo.yaml", list(overrides))


def test_index_target_by_hand():
    mask = torch.zeros(1, 2, 2, 2)
    mask[0, 0, 0, 0] = 1  # class 0 at (0,0)
    mask[0, 1, 1, 1] = 1  # class 1 at (1,1)
    mask[0, 0, 0, 1] = mask[0, 1, 0, 1] = 1  # both at (0,1): first class wins
    assert index_target(mask).tolist() == [[[1, 1], [0, 2]]]


def test_presence_target():
    mask = torch.zeros(2, 3, 4, 4)
    mask[0, 2, 3, 3] = 1
    mask[1, 0] = 1
    assert presence_target(mask).tolist() == [[0, 0, 1], [1, 0, 0]]


def test_weighted_sum_equals_the_terms_computed_by_hand():
    cfg = cfg_with("loss=[{name: bce, weight: 0.3}, {name: dice, weight: 0.7}]")
    fn = build_loss(cfg)
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 8, 8)
    mask = (torch.rand(2, 4, 8, 8) > 0.6).float()
    total, parts = fn({"mask": logits}, mask)
    bce = F.binary_cross_entropy_with_logits(logits, mask)
    dice = smp.losses.DiceLoss("multilabel")(logits, mask)
    assert torch.allclose(total, 0.3 * bce + 0.7 * dice)
    assert set(parts) == {"bce", "dice"} and torch.allclose(parts["bce"], bce)


def test_aux_term_is_weighted_bce_on_presence():
    cfg = cfg_with("loss=[{name: bce, weight: 1}]", "model.aux_head=true", "train.aux_weight=0.25")
    fn = build_loss(cfg)
    logits, aux = torch.zeros(1, 4, 4, 4), torch.tensor([[2.0, -1.0, 0.0, 3.0]])
    mask = torch.zeros(1, 4, 4, 4)
    mask[0, 0, 1, 1] = 1
    total, parts = fn({"mask": logits, "aux": aux}, mask)
    aux_bce = F.binary_cross_entropy_with_logits(aux, torch.tensor([[1.0, 0, 0, 0]]))
    assert torch.allclose(parts["aux"], aux_bce)
    assert torch.allclose(total, torch.log(torch.tensor(2.0)) + 0.25 * aux_bce)  # bce of logit 0 = ln 2


def test_multiclass_ce_uses_index_targets():
    cfg = cfg_with("competition.mode=multiclass", "loss=[{name: ce, weight: 1}, {name: lovasz, weight: 0}]")
    fn = build_loss(cfg)
    logits = torch.randn(2, 5, 4, 4)
    mask = torch.zeros(2, 4, 4, 4)
    mask[:, 3, :2] = 1
    total, _ = fn({"mask": logits}, mask)
    assert torch.allclose(total, F.cross_entropy(logits, index_target(mask)))


@pytest.mark.parametrize("mode,name", [("multilabel", "ce"), ("multiclass", "bce"), ("multiclass", "softbce")])
def test_loss_mode_mismatch_is_a_config_error(mode, name):
    with pytest.raises(ConfigError, match=f"loss {name}"):
        build_loss(cfg_with(f"competition.mode={mode}", f"loss=[{{name: {name}}}]"))


def test_every_registered_loss_runs_and_backprops():
    assert set(LOSSES) == {"bce", "softbce", "ce", "dice", "lovasz", "focal", "tversky", "jaccard"}
    for name in LOSSES:
        mode = "multiclass" if name == "ce" else "multilabel"
        fn = build_loss(cfg_with(f"competition.mode={mode}", f"loss=[{{name: {name}}}]"))
        logits = torch.randn(2, 5 if mode == "multiclass" else 4, 8, 8, requires_grad=True)
        total, _ = fn({"mask": logits}, (torch.rand(2, 4, 8, 8) > 0.5).float())
        total.backward()
        assert torch.isfinite(total) and logits.grad is not None, name


def test_bad_params_and_names():
    with pytest.raises(ConfigError, match=r"loss\[0\].params: dice does not accept"):
        build_loss(cfg_with("loss=[{name: dice, params: {nope: 1}}]"))
    with pytest.raises(RegistryError, match="loss: 'nope' is not one of"):
        LOSSES.get("nope")
    assert isinstance(
        build_loss(cfg_with("loss=[{name: bce, params: {pos_weight: [2.0]}}]")).terms[0].pos_weight, torch.Tensor
    )
