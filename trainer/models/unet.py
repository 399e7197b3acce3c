"""A Stable-Diffusion-like conditional UNet in miniature (diffusers' UNet2DConditionModel layout and names).

conv_in -> down blocks (ResNet blocks, Transformer2D blocks at the attention levels, strided-conv downsampling) ->
mid block (ResNet, Transformer2D, ResNet) -> up blocks (ResNet blocks over concatenated skips, Transformer2D,
nearest upsampling + conv) -> GroupNorm, SiLU, conv_out. Each Transformer2D block holds a BasicTransformerBlock with
attn1 (self-attention), attn2 (cross-attention to the text states) and a GEGLU feed-forward.

The same class serves unet-eps (SD1.5-like, predicts noise) and unet-v (SD2.1-like, predicts v): only
`parameterization` in the args differs, and the network does not look at it; trainer/diffusion.py does.
"""
import math
from dataclasses import asdict, dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from trainer.models.attention import Attention, cross_attention_kwargs


@dataclass
class UNetArgs:
    in_channels: int = 4  # latent channels (contracts.md: 4 x 16 x 16)
    out_channels: int = 4
    sample_size: int = 16  # latent height = width
    block_channels: Tuple[int, ...] = (64, 128, 128)  # one entry per resolution level (16, 8, 4)
    attention_levels: Tuple[bool, ...] = (False, True, True)  # Transformer2D blocks at these levels
    layers_per_block: int = 1  # ResNet blocks per down level (up levels get one more, as in diffusers)
    cross_attention_dim: int = 128  # text hidden size D
    attention_head_dim: int = 32  # channels per head
    time_embed_dim: int = 256
    ff_mult: int = 4  # GEGLU feed-forward width, times the channels
    norm_groups: int = 32
    parameterization: str = "eps"  # eps (unet-eps) | v (unet-v)

    def __post_init__(self):
        self.block_channels = tuple(self.block_channels)
        self.attention_levels = tuple(self.attention_levels)
        if len(self.block_channels) != len(self.attention_levels):
            raise ValueError("block_channels and attention_levels need one entry per level")
        if self.parameterization not in ("eps", "v"):
            raise ValueError(f"parameterization must be eps or v, got {self.parameterization!r}")
        if self.sample_size % 2 ** (len(self.block_channels) - 1):
            raise ValueError("sample_size must be divisible by 2 ** (levels - 1)")


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (B,) timesteps -> (B, dim), cos first (diffusers flip_sin_to_cos=True, shift 0)."""
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    angles = timesteps.float()[:, None] * torch.exp(exponent)[None, :]  # (B, half)
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


def broadcast_timesteps(timestep, batch: int, device) -> torch.Tensor:
    """An int, 0-d or (B,) timestep -> (B,) tensor."""
    t = torch.as_tensor(timestep, device=device)
    return t.reshape(1).expand(batch) if t.dim() == 0 else t


class TimestepEmbedding(nn.Module):
    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x):
        return self.linear_2(F.silu(self.linear_1(x)))


class ResnetBlock2D(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, temb_dim: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=1e-5)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_dim, out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=1e-5)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x, temb):  # x (B, Cin, H, W), temb (B, temb_dim)
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        shortcut = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return shortcut + h  # (B, Cout, H, W)


class GEGLU(nn.Module):
    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x):
        hidden, gate = self.proj(x).chunk(2, dim=-1)
        return hidden * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.ModuleList([GEGLU(dim, dim * mult), nn.Dropout(0.0), nn.Linear(dim * mult, dim)])

    def forward(self, x):
        for layer in self.net:
            x = layer(x)
        return x


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim: int, cross_attention_dim: int, head_dim: int, ff_mult: int):
        super().__init__()
        heads = dim // head_dim
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, None, heads=heads, dim_head=head_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, cross_attention_dim, heads=heads, dim_head=head_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, ff_mult)

    def forward(self, x, encoder_hidden_states, cross_kwargs):  # x (B, T, C), encoder_hidden_states (B, L, D)
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), encoder_hidden_states, **cross_kwargs)
        return x + self.ff(self.norm3(x))


class Transformer2DModel(nn.Module):
    def __init__(self, channels: int, args: "UNetArgs"):
        super().__init__()
        self.norm = nn.GroupNorm(args.norm_groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList([
            BasicTransformerBlock(channels, args.cross_attention_dim, args.attention_head_dim, args.ff_mult)])
        self.proj_out = nn.Linear(channels, channels)

    def forward(self, x, encoder_hidden_states, cross_kwargs):  # x (B, C, H, W)
        batch, channels, height, width = x.shape
        h = self.norm(x).permute(0, 2, 3, 1).reshape(batch, height * width, channels)  # (B, HW, C)
        h = self.proj_in(h)
        for block in self.transformer_blocks:
            h = block(h, encoder_hidden_states, cross_kwargs)
        h = self.proj_out(h).reshape(batch, height, width, channels).permute(0, 3, 1, 2)
        return x + h


class Downsample2D(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class Upsample2D(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class DownBlock(nn.Module):
    def __init__(self, in_channels, out_channels, layers, temb_dim, attention, args: UNetArgs, downsample: bool):
        super().__init__()
        self.resnets = nn.ModuleList([
            ResnetBlock2D(in_channels if i == 0 else out_channels, out_channels, temb_dim, args.norm_groups)
            for i in range(layers)])
        self.attentions = nn.ModuleList([
            Transformer2DModel(out_channels, args)
            for _ in range(layers)]) if attention else None
        self.downsamplers = nn.ModuleList([Downsample2D(out_channels)]) if downsample else None

    def forward(self, x, temb, encoder_hidden_states, cross_kwargs):
        skips = []
        for i, resnet in enumerate(self.resnets):
            x = resnet(x, temb)
            if self.attentions is not None:
                x = self.attentions[i](x, encoder_hidden_states, cross_kwargs)
            skips.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            skips.append(x)
        return x, skips


class UpBlock(nn.Module):
    def __init__(self, skip_channels, in_channels, out_channels, temb_dim, attention, args: UNetArgs,
                 upsample: bool):
        super().__init__()
        # skip_channels: the channels of each skip this block consumes, in the order it pops them
        self.resnets = nn.ModuleList([
            ResnetBlock2D((in_channels if i == 0 else out_channels) + skip, out_channels, temb_dim, args.norm_groups)
            for i, skip in enumerate(skip_channels)])
        self.attentions = nn.ModuleList([
            Transformer2DModel(out_channels, args)
            for _ in skip_channels]) if attention else None
        self.upsamplers = nn.ModuleList([Upsample2D(out_channels)]) if upsample else None

    def forward(self, x, skips, temb, encoder_hidden_states, cross_kwargs):
        for i, resnet in enumerate(self.resnets):
            x = resnet(torch.cat([x, skips.pop()], dim=1), temb)
            if self.attentions is not None:
                x = self.attentions[i](x, encoder_hidden_states, cross_kwargs)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


class MidBlock(nn.Module):
    def __init__(self, channels, temb_dim, args: UNetArgs):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(channels, channels, temb_dim, args.norm_groups)
                                      for _ in range(2)])
        self.attentions = nn.ModuleList([
            Transformer2DModel(channels, args)])

    def forward(self, x, temb, encoder_hidden_states, cross_kwargs):
        x = self.resnets[0](x, temb)
        x = self.attentions[0](x, encoder_hidden_states, cross_kwargs)
        return self.resnets[1](x, temb)


class UNet2DConditionModel(nn.Module):
    def __init__(self, args: UNetArgs):
        super().__init__()
        self.args = args
        channels = args.block_channels
        levels = len(channels)
        temb_dim = args.time_embed_dim
        self.conv_in = nn.Conv2d(args.in_channels, channels[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(channels[0], temb_dim)

        self.down_blocks = nn.ModuleList()
        skip_channels = [channels[0]]  # conv_in's output is the first skip
        for level in range(levels):
            last = level == levels - 1
            block_in = channels[max(level - 1, 0)]
            self.down_blocks.append(DownBlock(block_in, channels[level], args.layers_per_block, temb_dim,
                                              args.attention_levels[level], args, downsample=not last))
            skip_channels += [channels[level]] * (args.layers_per_block + (0 if last else 1))

        self.mid_block = MidBlock(channels[-1], temb_dim, args)

        self.up_blocks = nn.ModuleList()
        x_channels = channels[-1]
        for level in reversed(range(levels)):
            consumed = [skip_channels.pop() for _ in range(args.layers_per_block + 1)]
            self.up_blocks.append(UpBlock(consumed, x_channels, channels[level], temb_dim,
                                          args.attention_levels[level], args, upsample=level > 0))
            x_channels = channels[level]

        self.conv_norm_out = nn.GroupNorm(args.norm_groups, channels[0], eps=1e-5)
        self.conv_out = nn.Conv2d(channels[0], args.out_channels, 3, padding=1)

    def forward(self, sample: torch.Tensor, timestep, encoder_hidden_states: torch.Tensor,
                negative_encoder_hidden_states: Optional[torch.Tensor] = None,
                nasa_scale: Optional[torch.Tensor] = None) -> torch.Tensor:
        """sample (B, 4, 16, 16), timestep int or (B,), encoder_hidden_states (B, L, D) -> prediction (B, 4, 16, 16).

        negative_encoder_hidden_states (B, L, D) and nasa_scale (B,) reach the attn2 modules; they need
        set_nasa(model, True) first."""
        cross_kwargs = cross_attention_kwargs(negative_encoder_hidden_states, nasa_scale)
        t = broadcast_timesteps(timestep, sample.shape[0], sample.device)
        temb = self.time_embedding(timestep_embedding(t, self.args.block_channels[0]))  # (B, temb_dim)

        x = self.conv_in(sample)
        skips = [x]
        for block in self.down_blocks:
            x, block_skips = block(x, temb, encoder_hidden_states, cross_kwargs)
            skips += block_skips
        x = self.mid_block(x, temb, encoder_hidden_states, cross_kwargs)
        for block in self.up_blocks:
            x = block(x, skips, temb, encoder_hidden_states, cross_kwargs)
        return self.conv_out(F.silu(self.conv_norm_out(x)))

    def model_args(self) -> dict:
        return asdict(self.args)
