"""A PixArt-alpha-like diffusion transformer in miniature (diffusers' PixArtTransformer2DModel layout and names).

Patchify the 4 x 16 x 16 latent (patch 2 -> 64 tokens) with fixed 2-D sin-cos positions; project the text states
(caption_projection); condition on the timestep with adaLN-single: one MLP maps the timestep to six modulation
vectors shared by all blocks, each block adds its own learned scale_shift_table. A block is modulated
self-attention (attn1), plain cross-attention to the text (attn2), modulated MLP. Unpatchify; predicts eps
(PixArt-alpha's learned sigma is left out: DDIM does not use it).

long_skips adds U-ViT's long skip connections (Bao et al. 2023, "All are Worth Words"): block depth-1-i also reads
block i's input (the patch embedding for the last block, as a U-Net's outermost skip), added through a linear layer
(skip_linears) that starts at zero, so that a trained DiT without them continues from exactly the function it had.
"""
from dataclasses import asdict, dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from trainer.models.attention import Attention, cross_attention_kwargs
from trainer.models.unet import broadcast_timesteps, timestep_embedding


@dataclass
class DiTArgs:
    in_channels: int = 4  # latent channels (contracts.md: 4 x 16 x 16)
    sample_size: int = 16  # latent height = width
    patch_size: int = 2  # 16 / 2 -> 8 x 8 = 64 tokens
    hidden_size: int = 192
    depth: int = 8  # transformer blocks
    heads: int = 6
    mlp_ratio: float = 4.0
    cross_attention_dim: int = 128  # text hidden size D
    frequency_embedding_size: int = 256  # sinusoidal timestep features
    parameterization: str = "eps"
    long_skips: bool = False  # U-ViT long skip connections from the first half of the blocks to the second

    def __post_init__(self):
        if self.parameterization not in ("eps", "v"):
            raise ValueError(f"parameterization must be eps or v, got {self.parameterization!r}")
        if self.sample_size % self.patch_size or self.hidden_size % self.heads:
            raise ValueError("sample_size must be divisible by patch_size and hidden_size by heads")
        if self.long_skips and self.depth % 2:
            raise ValueError(f"long_skips pair the blocks, so depth must be even, got {self.depth}")


def sincos_2d_positions(dim: int, grid: int) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding (MAE / DiT / PixArt) -> (grid * grid, dim), row-major tokens."""
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    coords = torch.arange(grid, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")

    def embed(pos):  # (grid * grid,) -> (grid * grid, dim / 2)
        angles = pos.reshape(-1, 1) * omega[None, :]
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)

    return torch.cat([embed(cols), embed(rows)], dim=1).float()


class Mlp(nn.Module):
    """linear_1 -> GELU(tanh) -> linear_2: PixArt's caption projection and, with other sizes, the block MLP."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, hidden)
        self.linear_2 = nn.Linear(hidden, out_dim)

    def forward(self, x):
        return self.linear_2(F.gelu(self.linear_1(x), approximate="tanh"))


class TimestepEmbedder(nn.Module):
    def __init__(self, frequency_dim: int, hidden: int):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.linear_1 = nn.Linear(frequency_dim, hidden)
        self.linear_2 = nn.Linear(hidden, hidden)

    def forward(self, t):  # (B,) -> (B, hidden)
        return self.linear_2(F.silu(self.linear_1(timestep_embedding(t, self.frequency_dim))))


class AdaLayerNormSingle(nn.Module):
    """adaLN-single: the timestep embedding and the six shared modulation vectors (B, 6 * hidden)."""

    def __init__(self, args: DiTArgs):
        super().__init__()
        self.timestep_embedder = TimestepEmbedder(args.frequency_embedding_size, args.hidden_size)
        self.linear = nn.Linear(args.hidden_size, 6 * args.hidden_size)

    def forward(self, t):
        embedded = self.timestep_embedder(t)  # (B, hidden)
        return self.linear(F.silu(embedded)), embedded


class PixArtBlock(nn.Module):
    def __init__(self, args: DiTArgs):
        super().__init__()
        dim, head_dim = args.hidden_size, args.hidden_size // args.heads
        # PixArt's norms have no affine parameters; ours do, because torch 1.13's opset-17 exporter emits an invalid
        # LayerNormalization without them. Initialised to the identity, they change nothing at the start.
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn1 = Attention(dim, None, heads=args.heads, dim_head=head_dim)
        self.attn2 = Attention(dim, dim, heads=args.heads, dim_head=head_dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.ff = Mlp(dim, int(dim * args.mlp_ratio), dim)
        self.scale_shift_table = nn.Parameter(torch.randn(6, dim) / dim ** 0.5)

    def forward(self, x, modulation, encoder_hidden_states, cross_kwargs):
        # x (B, T, hidden); modulation (B, 6 * hidden); encoder_hidden_states (B, L, hidden)
        batch = x.shape[0]
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (
            self.scale_shift_table[None] + modulation.reshape(batch, 6, -1)).chunk(6, dim=1)  # each (B, 1, hidden)
        x = x + gate_msa * self.attn1(self.norm1(x) * (1 + scale_msa) + shift_msa)
        x = x + self.attn2(x, encoder_hidden_states, **cross_kwargs)
        return x + gate_mlp * self.ff(self.norm2(x) * (1 + scale_mlp) + shift_mlp)


class PatchEmbed(nn.Module):
    def __init__(self, args: DiTArgs):
        super().__init__()
        self.proj = nn.Conv2d(args.in_channels, args.hidden_size, args.patch_size, stride=args.patch_size)
        grid = args.sample_size // args.patch_size
        self.register_buffer("pos_embed", sincos_2d_positions(args.hidden_size, grid)[None], persistent=False)

    def forward(self, latent):  # (B, C, H, W) -> (B, T, hidden)
        return self.proj(latent).flatten(2).transpose(1, 2) + self.pos_embed


class PixArtTransformer2DModel(nn.Module):
    def __init__(self, args: DiTArgs):
        super().__init__()
        self.args = args
        dim = args.hidden_size
        self.pos_embed = PatchEmbed(args)
        self.adaln_single = AdaLayerNormSingle(args)
        self.caption_projection = Mlp(args.cross_attention_dim, dim, dim)
        self.transformer_blocks = nn.ModuleList([PixArtBlock(args) for _ in range(args.depth)])
        self.skip_linears = nn.ModuleList([nn.Linear(dim, dim) for _ in range(args.depth // 2 if args.long_skips
                                                                               else 0)])
        self.norm_out = nn.LayerNorm(dim, eps=1e-6)  # affine: see PixArtBlock
        self.scale_shift_table = nn.Parameter(torch.randn(2, dim) / dim ** 0.5)
        self.proj_out = nn.Linear(dim, args.patch_size ** 2 * args.in_channels)
        self._init_weights()

    def _init_weights(self):
        # As DiT / PixArt: xavier linears, small timestep MLP, and zero cross-attention outputs and output layer,
        # so training starts from a network whose blocks barely perturb the patch embedding.
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        embedder = self.adaln_single.timestep_embedder
        nn.init.normal_(embedder.linear_1.weight, std=0.02)
        nn.init.normal_(embedder.linear_2.weight, std=0.02)
        nn.init.normal_(self.adaln_single.linear.weight, std=0.02)
        nn.init.normal_(self.caption_projection.linear_1.weight, std=0.02)
        nn.init.normal_(self.caption_projection.linear_2.weight, std=0.02)
        for block in self.transformer_blocks:
            nn.init.zeros_(block.attn2.to_out[0].weight)
            nn.init.zeros_(block.attn2.to_out[0].bias)
        for layer in [self.proj_out, *self.skip_linears]:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def unpatchify(self, tokens):  # (B, T, p * p * C) -> (B, C, H, W)
        p, c = self.args.patch_size, self.args.in_channels
        grid = self.args.sample_size // p
        x = tokens.reshape(tokens.shape[0], grid, grid, p, p, c)
        return x.permute(0, 5, 1, 3, 2, 4).reshape(tokens.shape[0], c, grid * p, grid * p)

    def forward(self, sample: torch.Tensor, timestep, encoder_hidden_states: torch.Tensor,
                negative_encoder_hidden_states: Optional[torch.Tensor] = None,
                nasa_scale: Optional[torch.Tensor] = None) -> torch.Tensor:
        """sample (B, 4, 16, 16), timestep int or (B,), encoder_hidden_states (B, L, D) -> prediction (B, 4, 16, 16).

        negative_encoder_hidden_states (B, L, D) goes through the same caption projection and, with nasa_scale (B,),
        reaches the attn2 modules; they need set_nasa(model, True) first."""
        batch = sample.shape[0]
        t = broadcast_timesteps(timestep, batch, sample.device)
        modulation, embedded_t = self.adaln_single(t)  # (B, 6 * hidden), (B, hidden)
        context = self.caption_projection(encoder_hidden_states)  # (B, L, hidden)
        negative_context = (None if negative_encoder_hidden_states is None
                            else self.caption_projection(negative_encoder_hidden_states))
        cross_kwargs = cross_attention_kwargs(negative_context, nasa_scale)

        x = self.pos_embed(sample)  # (B, T, hidden)
        skips = []  # inputs of the first len(skip_linears) blocks, read in reverse order by the last ones
        first_reader = len(self.transformer_blocks) - len(self.skip_linears)
        for index, block in enumerate(self.transformer_blocks):
            if index < len(self.skip_linears):
                skips.append(x)
            if index >= first_reader:
                x = x + self.skip_linears[index - first_reader](skips.pop())
            x = block(x, modulation, context, cross_kwargs)
        shift, scale = (self.scale_shift_table[None] + embedded_t[:, None]).chunk(2, dim=1)  # (B, 1, hidden)
        x = self.proj_out(self.norm_out(x) * (1 + scale) + shift)  # (B, T, p * p * C)
        return self.unpatchify(x)

    def model_args(self) -> dict:
        return asdict(self.args)
