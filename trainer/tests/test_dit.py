import io

import onnx
import pytest
import torch

from trainer.models.attention import set_nasa
from trainer.models.dit import DiTArgs, PixArtTransformer2DModel, sincos_2d_positions

TINY = dict(hidden_size=64, depth=2, heads=4)


def tiny_dit(**overrides):
    torch.manual_seed(0)
    model = PixArtTransformer2DModel(DiTArgs(**{**TINY, **overrides})).eval()
    for parameter in model.parameters():  # leave the zero init, so every path (and NASA) changes the output
        torch.nn.init.normal_(parameter, std=0.05)
    return model


def inputs(batch=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 4, 16, 16, generator=g), torch.tensor([999, 500, 3][:batch]),
            torch.randn(batch, 32, 128, generator=g), torch.randn(batch, 32, 128, generator=g))


def test_output_shape():
    x, t, c, _ = inputs()
    with torch.no_grad():
        assert tiny_dit()(x, t, c).shape == (3, 4, 16, 16)


def test_fresh_model_predicts_zero():
    # the zero-initialised output layer (DiT/PixArt) makes an untrained model predict exactly 0
    torch.manual_seed(0)
    model = PixArtTransformer2DModel(DiTArgs(**TINY))
    x, t, c, _ = inputs()
    assert torch.equal(model(x, t, c), torch.zeros(3, 4, 16, 16))


def test_unpatchify_inverts_patch_layout():
    model = tiny_dit()
    latent = torch.arange(2 * 4 * 16 * 16, dtype=torch.float32).reshape(2, 4, 16, 16)
    p = model.args.patch_size
    # the layout PatchEmbed reads: token (i, j) holds latent[:, :, i*p:(i+1)*p, j*p:(j+1)*p], as (p, p, C)
    tokens = latent.reshape(2, 4, 8, p, 8, p).permute(0, 2, 4, 3, 5, 1).reshape(2, 64, p * p * 4)
    assert torch.equal(model.unpatchify(tokens), latent)


def test_positions_are_distinct():
    positions = sincos_2d_positions(64, 8)
    assert positions.shape == (64, 64)
    assert torch.cdist(positions, positions).add(torch.eye(64)).min() > 0.1


def test_nasa_scale_zero_exact_and_mixed_batch_per_sample():
    model = tiny_dit()
    x, t, c, neg = inputs()
    with torch.no_grad():
        plain = model(x, t, c)
        assert set_nasa(model, True) == 2
        assert torch.equal(model(x, t, c, neg, torch.zeros(3)), plain)
        scales = torch.tensor([0.0, 0.5, 1.0])
        together = model(x, t, c, neg, scales)
        for b in range(3):
            alone = model(x[b:b + 1], t[b:b + 1], c[b:b + 1], neg[b:b + 1], scales[b:b + 1])
            torch.testing.assert_close(together[b:b + 1], alone, rtol=1e-4, atol=1e-5)
        assert not torch.allclose(together[2], plain[2])


@pytest.mark.parametrize("long_skips", [False, True])
def test_onnx_export_cross_attention_reads_projected_text(long_skips):
    model = tiny_dit(long_skips=long_skips)
    x, t, c, _ = inputs(batch=1)
    buffer = io.BytesIO()
    torch.onnx.export(model, (x, t, c), buffer, opset_version=17,
                      input_names=["sample", "timestep", "encoder_hidden_states"], output_names=["out_sample"])
    ops = [node.op_type for node in onnx.load_from_string(buffer.getvalue()).graph.node]
    assert ops.count("Softmax") == 4  # attn1 + attn2 in 2 blocks


def test_long_skips_start_as_the_model_without_them():
    # a trained DiT continued with long skips: its weights load, the zero-initialised skip_linears add nothing
    plain = tiny_dit(depth=4)
    skipped = PixArtTransformer2DModel(DiTArgs(**{**TINY, "depth": 4, "long_skips": True})).eval()
    missing, unexpected = skipped.load_state_dict(plain.state_dict(), strict=False)
    assert sorted(missing) == [f"skip_linears.{i}.{p}" for i in range(2) for p in ("bias", "weight")] and not unexpected
    x, t, c, _ = inputs()
    with torch.no_grad():
        assert torch.equal(skipped(x, t, c), plain(x, t, c))
        torch.nn.init.normal_(skipped.skip_linears[0].weight, std=0.05)
        assert not torch.allclose(skipped(x, t, c), plain(x, t, c))


def test_long_skips_pair_block_inputs_outside_in():
    # depth 4: block 2 reads block 1's input (block 0's output), block 3 (the last) block 0's, the patch embedding
    model = tiny_dit(depth=4, long_skips=True)
    inputs_of, outputs_of = {}, {"embedding": None}
    model.pos_embed.register_forward_hook(lambda _m, _in, out: outputs_of.__setitem__("embedding", out))
    for i, block in enumerate(model.transformer_blocks):
        block.register_forward_pre_hook(lambda _m, args, i=i: inputs_of.__setitem__(i, args[0]))
        block.register_forward_hook(lambda _m, _in, out, i=i: outputs_of.__setitem__(i, out))
    x, t, c, _ = inputs()
    with torch.no_grad():
        model(x, t, c)
        assert torch.equal(inputs_of[0], outputs_of["embedding"]) and torch.equal(inputs_of[1], outputs_of[0])
        assert torch.equal(inputs_of[2], outputs_of[1] + model.skip_linears[0](outputs_of[0]))
        assert torch.equal(inputs_of[3], outputs_of[2] + model.skip_linears[1](outputs_of["embedding"]))


def test_long_skips_need_an_even_depth():
    with pytest.raises(ValueError, match="even"):
        DiTArgs(depth=3, long_skips=True)
