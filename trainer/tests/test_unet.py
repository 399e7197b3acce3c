import io

import onnx
import pytest
import torch

from trainer.models.attention import set_nasa
from trainer.models.unet import UNet2DConditionModel, UNetArgs

TINY = dict(block_channels=(32, 32, 32), attention_levels=(False, True, True), attention_head_dim=16,
            norm_groups=8, time_embed_dim=64, ff_mult=2)


def tiny_unet(**overrides):
    torch.manual_seed(0)
    return UNet2DConditionModel(UNetArgs(**{**TINY, **overrides})).eval()


def inputs(batch=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 4, 16, 16, generator=g), torch.tensor([999, 500, 3][:batch]),
            torch.randn(batch, 32, 128, generator=g), torch.randn(batch, 32, 128, generator=g))


def test_output_shape_and_timestep_forms():
    model = tiny_unet()
    x, t, c, _ = inputs()
    with torch.no_grad():
        out = model(x, t, c)
        assert out.shape == (3, 4, 16, 16)
        torch.testing.assert_close(model(x, 999, c), model(x, torch.full((3,), 999), c))


@pytest.mark.parametrize("layers_per_block", [1, 2])
def test_skip_channels_fit_any_depth(layers_per_block):
    model = tiny_unet(layers_per_block=layers_per_block, block_channels=(32, 64), attention_levels=(False, True))
    x, t, c, _ = inputs()
    with torch.no_grad():
        assert model(x, t, c).shape == (3, 4, 16, 16)


def test_cross_attention_modules_are_attn2_with_diffusers_names():
    model = tiny_unet()
    assert set_nasa(model, True) == 7  # down 8x8 + 4x4 (1 each), mid (1), up 4x4 + 8x8 (2 each)
    names = [name for name, _ in model.named_modules() if name.endswith("attn2")]
    assert "down_blocks.1.attentions.0.transformer_blocks.0.attn2" in names
    assert "mid_block.attentions.0.transformer_blocks.0.attn2" in names


def test_nasa_scale_zero_reproduces_plain_model_exactly():
    model = tiny_unet()
    x, t, c, neg = inputs()
    with torch.no_grad():
        plain = model(x, t, c)
        set_nasa(model, True)
        nasa = model(x, t, c, neg, torch.zeros(3))
    assert torch.equal(nasa, plain)


def test_nasa_mixed_batch_equals_each_sample_alone():
    model = tiny_unet()
    set_nasa(model, True)
    x, t, c, neg = inputs()
    scales = torch.tensor([0.0, 0.3, 1.0])
    with torch.no_grad():
        together = model(x, t, c, neg, scales)
        for b in range(3):
            alone = model(x[b:b + 1], t[b:b + 1], c[b:b + 1], neg[b:b + 1], scales[b:b + 1])
            torch.testing.assert_close(together[b:b + 1], alone, rtol=1e-4, atol=1e-5)
        assert not torch.allclose(together[2], model(x, t, c)[2])  # the negative branch does something


def test_onnx_export_has_the_classic_cross_attention_pattern():
    model = tiny_unet()
    x, t, c, _ = inputs(batch=1)
    buffer = io.BytesIO()
    torch.onnx.export(model, (x, t, c), buffer, opset_version=17,
                      input_names=["sample", "timestep", "encoder_hidden_states"], output_names=["out_sample"])
    graph = onnx.load_from_string(buffer.getvalue()).graph
    ops = [node.op_type for node in graph.node]
    assert ops.count("Softmax") == 14  # attn1 + attn2 in 7 transformer blocks
    assert "Attention" not in ops and "MultiHeadAttention" not in ops
    producer = {output: node for node in graph.node for output in node.output}
    for softmax in (node for node in graph.node if node.op_type == "Softmax"):
        scale = producer[softmax.input[0]]
        assert scale.op_type == "Mul" and producer[scale.input[0]].op_type == "MatMul"  # MatMul(Q, K^T) -> Mul
    # to_k and to_v of every attn2 are MatMuls that read encoder_hidden_states directly
    readers = [node for node in graph.node if "encoder_hidden_states" in node.input]
    assert len(readers) == 14 and all(node.op_type == "MatMul" for node in readers)
    assert all("attn2/to_k" in node.name or "attn2/to_v" in node.name for node in readers)
