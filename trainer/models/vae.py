"""A Stable-Diffusion-style KL autoencoder for the shapes world, with diffusers' module names.

    encoder: conv_in -> down_blocks (resnets, then a stride-2 conv except in the last) -> mid_block
             -> norm/SiLU/conv_out -> quant_conv -> (mean, logvar)     (B, 3, 64, 64) -> 2 x (B, 4, 64/f, 64/f)
    decoder: post_quant_conv -> conv_in -> mid_block -> up_blocks (resnets, then nearest x2 + conv)
             -> norm/SiLU/conv_out                                     (B, 4, 64/f, 64/f) -> (B, 3, 64, 64)

The downsampling factor f is 2 ** (len(block_out_channels) - 1). Only Conv2d, GroupNorm, SiLU and nearest upsampling:
decode() exports to ONNX opset 17 as is.

norm_groups = 0 drops GroupNorm (the committed VAE uses that): on these mostly flat images GroupNorm discards each
group's absolute level, which is the color, and GroupNorm runs stalled on grey blobs; without it, the second conv of
every residual branch starts at zero so the deep net starts as a shallow one.

Latents given to diffusion models are scaled: z_scaled = z * scaling_factor, where scaling_factor is measured on the
data at the end of training (1 / std of the latents) and stored in the checkpoint next to the weights.
"""
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainer.checkpoint import load_checkpoint


@dataclass
class VaeArgs:
    in_channels: int = 3
    latent_channels: int = 4
    block_out_channels: list = field(default_factory=lambda: [32, 64, 128])  # one per resolution, full res first
    layers_per_block: int = 1  # resnets per resolution in the encoder
    decoder_layers_per_block: int = 2  # the decoder gets more capacity: sharp corners are decided there
    norm_groups: int = 8  # GroupNorm groups; 0: no normalisation (see the module docstring)

    @property
    def downsample_factor(self):
        return 2 ** (len(self.block_out_channels) - 1)


def normalization(groups, channels):
    return nn.GroupNorm(groups, channels) if groups > 0 else nn.Identity()


class ResnetBlock(nn.Module):
    def __init__(self, in_channels, out_channels, groups):
        super().__init__()
        self.norm1 = normalization(groups, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = normalization(groups, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None
        if groups == 0:  # without normalisation each residual branch starts at zero, so the deep net starts shallow
            nn.init.zeros_(self.conv2.weight)
            nn.init.zeros_(self.conv2.bias)

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (x if self.conv_shortcut is None else self.conv_shortcut(x))


class Downsample(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Block(nn.Module):
    """Resnets at one resolution, then an optional resampler."""

    def __init__(self, in_channels, out_channels, layers, groups, resample=None):
        super().__init__()
        self.resnets = nn.ModuleList(
            ResnetBlock(in_channels if i == 0 else out_channels, out_channels, groups) for i in range(layers))
        self.resample = resample

    def forward(self, x):
        for resnet in self.resnets:
            x = resnet(x)
        return x if self.resample is None else self.resample(x)


class MidBlock(nn.Module):
    def __init__(self, channels, groups):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock(channels, channels, groups), ResnetBlock(channels, channels, groups)])

    def forward(self, x):
        for resnet in self.resnets:
            x = resnet(x)
        return x


class Encoder(nn.Module):
    def __init__(self, args: VaeArgs):
        super().__init__()
        channels = args.block_out_channels
        self.conv_in = nn.Conv2d(args.in_channels, channels[0], 3, padding=1)
        self.down_blocks = nn.ModuleList()
        for i, out_channels in enumerate(channels):
            in_channels = channels[max(i - 1, 0)]
            is_last = i == len(channels) - 1
            self.down_blocks.append(Block(in_channels, out_channels, args.layers_per_block, args.norm_groups,
                                          resample=None if is_last else Downsample(out_channels)))
        self.mid_block = MidBlock(channels[-1], args.norm_groups)
        self.conv_norm_out = normalization(args.norm_groups, channels[-1])
        self.conv_out = nn.Conv2d(channels[-1], 2 * args.latent_channels, 3, padding=1)

    def forward(self, x):  # (B, 3, H, W) -> (B, 2 * latent_channels, H/f, W/f)
        h = self.conv_in(x)
        for block in self.down_blocks:
            h = block(h)
        h = self.mid_block(h)
        return self.conv_out(F.silu(self.conv_norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, args: VaeArgs):
        super().__init__()
        channels = list(reversed(args.block_out_channels))  # lowest resolution first
        self.conv_in = nn.Conv2d(args.latent_channels, channels[0], 3, padding=1)
        self.mid_block = MidBlock(channels[0], args.norm_groups)
        self.up_blocks = nn.ModuleList()
        for i, out_channels in enumerate(channels):
            in_channels = channels[max(i - 1, 0)]
            is_last = i == len(channels) - 1
            self.up_blocks.append(Block(in_channels, out_channels, args.decoder_layers_per_block, args.norm_groups,
                                        resample=None if is_last else Upsample(out_channels)))
        self.conv_norm_out = normalization(args.norm_groups, channels[-1])
        self.conv_out = nn.Conv2d(channels[-1], args.in_channels, 3, padding=1)

    def forward(self, z):  # (B, latent_channels, h, w) -> (B, 3, h*f, w*f)
        h = self.mid_block(self.conv_in(z))
        for block in self.up_blocks:
            h = block(h)
        return self.conv_out(F.silu(self.conv_norm_out(h)))


class LatentDistribution:
    """The encoder's diagonal Gaussian over latents (unscaled)."""

    def __init__(self, moments):  # (B, 2C, h, w)
        self.mean, logvar = moments.chunk(2, dim=1)
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)

    def sample(self, generator=None):
        noise = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * noise

    def kl(self):
        """KL to N(0, I), summed over latent elements: (B,)"""
        return 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar).sum(dim=(1, 2, 3))


class AutoencoderKL(nn.Module):
    def __init__(self, args: VaeArgs):
        super().__init__()
        self.args = args
        self.encoder = Encoder(args)
        self.decoder = Decoder(args)
        self.quant_conv = nn.Conv2d(2 * args.latent_channels, 2 * args.latent_channels, 1)
        self.post_quant_conv = nn.Conv2d(args.latent_channels, args.latent_channels, 1)

    def encode(self, x) -> LatentDistribution:  # x (B, 3, 64, 64) in [-1, 1]
        return LatentDistribution(self.quant_conv(self.encoder(x)))

    def decode(self, z):  # z (B, C, h, w) unscaled -> (B, 3, 64, 64), about [-1, 1], not clamped
        return self.decoder(self.post_quant_conv(z))

    def forward(self, x):
        return self.decode(self.encode(x).mean)


def images_to_tensor(images):
    """uint8 (B, H, W, 3) numpy -> float32 (B, 3, H, W) in [-1, 1] (the pixel range of every model here)."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def tensor_to_images(x):
    """float (B, 3, H, W) in about [-1, 1] -> uint8 (B, H, W, 3) numpy, rounded and clamped."""
    pixels = ((x.detach().float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def encode_images(vae, images, scaling_factor, sample=False, generator=None):
    """uint8 images (B, 64, 64, 3) -> scaled latents (B, C, h, w): what diffusion models are trained on."""
    device = next(vae.parameters()).device
    posterior = vae.encode(images_to_tensor(images).to(device))
    z = posterior.sample(generator) if sample else posterior.mean
    return z * scaling_factor


@torch.no_grad()
def decode_latents(vae, latents, scaling_factor):
    """Scaled latents (B, C, h, w) -> uint8 images (B, 64, 64, 3)."""
    return tensor_to_images(vae.decode(latents / scaling_factor))


def load_vae(path, device="cpu"):
    """(AutoencoderKL in eval mode, scaling_factor) from a checkpoint with model_args, model, scaling_factor."""
    checkpoint = load_checkpoint(path, device)
    vae = AutoencoderKL(VaeArgs(**checkpoint["model_args"]))
    vae.load_state_dict(checkpoint["model"])
    return vae.to(device).eval(), float(checkpoint["scaling_factor"])
