import pytest
import torch

from trainer.models.attention import Attention, AttnProcessor, NasaAttnProcessor, set_nasa


def make_inputs(batch=4, tokens=16, dim=64, context_tokens=32, context_dim=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, tokens, dim, generator=g)
    pos = torch.randn(batch, context_tokens, context_dim, generator=g)
    neg = torch.randn(batch, context_tokens, context_dim, generator=g)
    return x, pos, neg


def make_attention(seed=0):
    torch.manual_seed(seed)
    return Attention(64, 128, heads=4, dim_head=16).eval()


def reference_attention(attn, x, context):
    """Single-head-at-a-time loop, written independently of the processors."""
    q, k, v = attn.to_q(x), attn.to_k(context), attn.to_v(context)
    d = q.shape[-1] // attn.heads
    heads = []
    for h in range(attn.heads):
        sl = slice(h * d, (h + 1) * d)
        weights = torch.softmax(q[..., sl] @ k[..., sl].transpose(-1, -2) / d ** 0.5, dim=-1)
        heads.append(weights @ v[..., sl])
    return torch.cat(heads, dim=-1)


def test_plain_attention_matches_reference():
    attn = make_attention()
    x, pos, _ = make_inputs()
    expected = attn.to_out[0](reference_attention(attn, x, pos))
    torch.testing.assert_close(attn(x, pos), expected, rtol=1e-5, atol=1e-5)


def test_self_attention_uses_hidden_states_as_context():
    torch.manual_seed(0)
    attn = Attention(64, None, heads=4, dim_head=16)
    x, _, _ = make_inputs()
    torch.testing.assert_close(attn(x), attn.to_out[0](reference_attention(attn, x, x)), rtol=1e-5, atol=1e-5)


def test_nasa_scale_zero_is_exactly_plain():
    attn = make_attention()
    x, pos, neg = make_inputs()
    plain = attn(x, pos)
    attn.set_processor(NasaAttnProcessor())
    nasa = attn(x, pos, negative_encoder_hidden_states=neg, nasa_scale=torch.zeros(4))
    assert torch.equal(nasa, plain)


def test_nasa_mixed_scales_match_per_sample_reference():
    attn = make_attention()
    attn.set_processor(NasaAttnProcessor())
    x, pos, neg = make_inputs()
    scales = torch.tensor([0.0, 0.1, 0.5, 1.0])
    out = attn(x, pos, negative_encoder_hidden_states=neg, nasa_scale=scales)
    for b in range(4):
        z = (reference_attention(attn, x[b:b + 1], pos[b:b + 1])
             - scales[b] * reference_attention(attn, x[b:b + 1], neg[b:b + 1]))
        torch.testing.assert_close(out[b:b + 1], attn.to_out[0](z), rtol=1e-5, atol=1e-5)


def test_nasa_without_negative_branch_is_plain():
    attn = make_attention()
    x, pos, _ = make_inputs()
    plain = attn(x, pos)
    attn.set_processor(NasaAttnProcessor())
    assert torch.equal(attn(x, pos), plain)


def test_plain_processor_refuses_a_negative_branch():
    attn = make_attention()
    x, pos, neg = make_inputs()
    with pytest.raises(TypeError, match="set_nasa"):
        attn(x, pos, negative_encoder_hidden_states=neg, nasa_scale=torch.zeros(4))


def test_nasa_needs_both_negative_states_and_scale():
    attn = make_attention()
    attn.set_processor(NasaAttnProcessor())
    x, pos, neg = make_inputs()
    with pytest.raises(ValueError, match="together"):
        attn(x, pos, negative_encoder_hidden_states=neg)


def test_set_nasa_switches_only_attn2():
    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.attn1 = Attention(64, None, heads=4, dim_head=16)
            self.attn2 = Attention(64, 128, heads=4, dim_head=16)

    model = torch.nn.Sequential(Block(), Block())
    assert set_nasa(model, True) == 2
    assert all(isinstance(b.attn2.processor, NasaAttnProcessor) for b in model)
    assert all(isinstance(b.attn1.processor, AttnProcessor) for b in model)
    assert set_nasa(model, False) == 2
    assert all(isinstance(b.attn2.processor, AttnProcessor) for b in model)


def test_set_nasa_refuses_a_model_without_cross_attention():
    with pytest.raises(ValueError, match="attn2"):
        set_nasa(torch.nn.Linear(2, 2), True)


def test_diffusers_module_names():
    names = {name for name, _ in make_attention().named_parameters()}
    assert names == {"to_q.weight", "to_k.weight", "to_v.weight", "to_out.0.weight", "to_out.0.bias"}
