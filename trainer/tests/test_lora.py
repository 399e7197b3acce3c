import copy

import pytest
import torch

from trainer.lora import LoraLinear, add_lora
from trainer.models.attention import Attention
from trainer.sample import build_backbone

TINY = {
    "unet-eps": {"block_channels": [16, 32], "attention_levels": [False, True], "attention_head_dim": 16,
                 "norm_groups": 8, "time_embed_dim": 32, "ff_mult": 1},
    "dit": {"hidden_size": 32, "depth": 2, "heads": 2, "mlp_ratio": 1.0, "patch_size": 4},
}


def inputs(batch=2):
    torch.manual_seed(1)
    return torch.randn(batch, 4, 16, 16), torch.tensor([999, 10]), torch.randn(batch, 32, 128)


@pytest.mark.parametrize("backbone", sorted(TINY))
def test_lora_starts_equal_to_the_base_and_wraps_every_attention_projection(backbone):
    torch.manual_seed(0)
    base = build_backbone(backbone, TINY[backbone]).eval()
    model = copy.deepcopy(base)
    adapters = add_lora(model, rank=4, alpha=8.0)
    attentions = [name for name, module in base.named_modules()
                  if isinstance(module, Attention) and name.split(".")[-1] in ("attn1", "attn2")]
    assert len(adapters) == 4 * len(attentions) and len(attentions) >= 2
    for name in attentions:
        attention = model.get_submodule(name)
        for projection in (attention.to_q, attention.to_k, attention.to_v, attention.to_out[0]):
            assert isinstance(projection, LoraLinear) and projection.adapter.scale == 2.0
            assert projection.adapter.down.weight.abs().sum() > 0 and not projection.adapter.up.weight.any()
    with torch.no_grad():
        assert torch.equal(model(*inputs()), base(*inputs()))


@pytest.mark.parametrize("backbone", sorted(TINY))
def test_only_lora_parameters_train(backbone):
    torch.manual_seed(0)
    model = build_backbone(backbone, TINY[backbone])
    with torch.no_grad():  # the DiT's zero-initialised output layer would block every gradient
        for parameter in model.parameters():
            if not parameter.any():
                parameter.normal_(0.0, 0.02)
    adapters = add_lora(model, rank=4, alpha=4.0)
    adapter_ids = {id(p) for p in adapters.parameters()}
    assert {id(p) for p in model.parameters() if p.requires_grad} == adapter_ids
    model(*inputs()).pow(2).mean().backward()
    for name, parameter in model.named_parameters():
        if id(parameter) in adapter_ids:
            if name.endswith("up.weight"):  # up starts at 0: its gradient is the one that is nonzero at first
                assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
        else:
            assert parameter.grad is None, name
    optimizer = torch.optim.SGD(adapters.parameters(), lr=0.1)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    optimizer.step()
    changed = {name for name, value in model.state_dict().items() if not torch.equal(value, before[name])}
    assert changed and all(".adapter.up." in name for name in changed)


def test_adapters_state_dict_holds_only_lora_weights():
    model = build_backbone("unet-eps", TINY["unet-eps"])
    adapters = add_lora(model, rank=2, alpha=2.0)
    keys = list(adapters.state_dict())
    assert keys and all(key.endswith(("down.weight", "up.weight")) for key in keys)
    assert "mid_block-attentions-0-transformer_blocks-0-attn2-to_out-0.up.weight" in keys


def test_rank_must_be_positive():
    with pytest.raises(ValueError):
        add_lora(build_backbone("dit", TINY["dit"]), rank=0, alpha=1.0)
