"""Attention with diffusers' module names and a swappable processor.

`Attention` owns the projections (to_q, to_k, to_v, to_out[0]); a processor decides how they are combined. The
plain processor is written as explicit MatMul -> Mul(scale) -> Softmax -> MatMul so that an ONNX export has the
classic Stable Diffusion shape that the service's NASA graph rewrite looks for. NASA (Negative-Away Steer Attention,
SNOOPI) is a second processor that adds a negative branch through the same projections, the way diffusers'
IP-Adapter processor adds an image branch.

Every backbone names its text cross-attention `attn2`; `set_nasa(model, enabled)` swaps their processors.
"""
from typing import Optional

import torch
from torch import nn


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, T, heads * d) -> (B, heads, T, d)"""
    batch, tokens, inner = x.shape
    return x.reshape(batch, tokens, heads, inner // heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, heads, T, d) -> (B, T, heads * d)"""
    batch, heads, tokens, dim_head = x.shape
    return x.transpose(1, 2).reshape(batch, tokens, heads * dim_head)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(Q K^T * scale) V on (B, heads, T, d) tensors; no fused kernel, so the export shows every op."""
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale  # (B, heads, Tq, Tk)
    return torch.matmul(scores.softmax(dim=-1), v)  # (B, heads, Tq, d)


class AttnProcessor:
    """Plain scaled dot-product attention."""

    def __call__(self, attn: "Attention", hidden_states: torch.Tensor,
                 encoder_hidden_states: Optional[torch.Tensor] = None, **kwargs) -> torch.Tensor:
        if kwargs:
            raise TypeError(f"AttnProcessor got unexpected arguments {sorted(kwargs)}; "
                            "a negative branch needs set_nasa(model, True)")
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        q = split_heads(attn.to_q(hidden_states), attn.heads)  # (B, h, Tq, d)
        k = split_heads(attn.to_k(context), attn.heads)  # (B, h, Tk, d)
        v = split_heads(attn.to_v(context), attn.heads)
        z = merge_heads(attend(q, k, v, attn.scale))  # (B, Tq, h * d)
        return attn.to_out[1](attn.to_out[0](z))


class NasaAttnProcessor:
    """NASA for a cross-attention: Z = softmax(Q K+^T s) V+ - nasa_scale * softmax(Q K-^T s) V-, before to_out.

    K-/V- come from the layer's own to_k/to_v applied to negative_encoder_hidden_states; each branch has its own
    softmax and nothing is renormalised (SNOOPI eq. for NASA). nasa_scale is per sample, shape (B,), so requests with
    and without a negative prompt share one batch; a sample with scale 0 gets exactly the plain output.
    Called without a negative branch (negative_encoder_hidden_states None) it is the plain attention.
    """

    def __call__(self, attn: "Attention", hidden_states: torch.Tensor,
                 encoder_hidden_states: Optional[torch.Tensor] = None,
                 negative_encoder_hidden_states: Optional[torch.Tensor] = None,
                 nasa_scale: Optional[torch.Tensor] = None) -> torch.Tensor:
        if encoder_hidden_states is None:
            raise ValueError("NASA applies to cross-attention only: encoder_hidden_states is required")
        if (negative_encoder_hidden_states is None) != (nasa_scale is None):
            raise ValueError("negative_encoder_hidden_states and nasa_scale must be given together")
        q = split_heads(attn.to_q(hidden_states), attn.heads)  # (B, h, Tq, d)
        k = split_heads(attn.to_k(encoder_hidden_states), attn.heads)  # (B, h, Tk, d)
        v = split_heads(attn.to_v(encoder_hidden_states), attn.heads)
        z = merge_heads(attend(q, k, v, attn.scale))  # (B, Tq, h * d)
        if negative_encoder_hidden_states is not None:
            k_neg = split_heads(attn.to_k(negative_encoder_hidden_states), attn.heads)
            v_neg = split_heads(attn.to_v(negative_encoder_hidden_states), attn.heads)
            z_neg = merge_heads(attend(q, k_neg, v_neg, attn.scale))  # (B, Tq, h * d)
            z = z - nasa_scale.reshape(-1, 1, 1).to(z.dtype) * z_neg
        return attn.to_out[1](attn.to_out[0](z))


class Attention(nn.Module):
    """Multi-head attention; self-attention when cross_attention_dim is None."""

    def __init__(self, query_dim: int, cross_attention_dim: Optional[int] = None, heads: int = 4,
                 dim_head: int = 32, dropout: float = 0.0):
        super().__init__()
        inner = heads * dim_head
        context_dim = query_dim if cross_attention_dim is None else cross_attention_dim
        self.heads = heads
        self.scale = dim_head ** -0.5
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, query_dim), nn.Dropout(dropout)])
        self.processor = AttnProcessor()

    def set_processor(self, processor) -> None:
        self.processor = processor

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: Optional[torch.Tensor] = None,
                **processor_kwargs) -> torch.Tensor:
        return self.processor(self, hidden_states, encoder_hidden_states, **processor_kwargs)


def set_nasa(model: nn.Module, enabled: bool) -> int:
    """Give every cross-attention (modules named attn2) the NASA processor, or the plain one back.

    Returns how many layers were switched, so callers can check it against the architecture."""
    count = 0
    for name, module in model.named_modules():
        if name.split(".")[-1] == "attn2" and isinstance(module, Attention):
            module.set_processor(NasaAttnProcessor() if enabled else AttnProcessor())
            count += 1
    if count == 0:
        raise ValueError("model has no cross-attention modules named attn2")
    return count


def cross_attention_kwargs(negative_encoder_hidden_states: Optional[torch.Tensor],
                           nasa_scale: Optional[torch.Tensor]) -> dict:
    """The keyword arguments a backbone forwards to its attn2 modules: none when there is no negative branch."""
    if negative_encoder_hidden_states is None and nasa_scale is None:
        return {}
    return {"negative_encoder_hidden_states": negative_encoder_hidden_states, "nasa_scale": nasa_scale}
