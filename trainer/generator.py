"""The module behind generator.onnx: one student call with NASA, the one-step x0 formula, the VAE decoder, uint8 pixels.

    noise (B, C, h, w), encoder_hidden_states (B, L, D), negative_encoder_hidden_states (B, L, D), nasa_scale (B,)
      -> student at t = 999 with NASA in every attn2 (diffusion.one_step_generate: prediction -> x0 latent)
      -> latents / scaling_factor -> vae.decode -> ((x.clamp(-1, 1) + 1) * 127.5).round() -> uint8 (B, H, W, 3)

One graph keeps the latent on the device between student and VAE (onnxruntime-node returns every output to the
host) and returns the smallest output there is, uint8 pixels in NHWC, ready for the image encoder. A sample with
nasa_scale 0 gets exactly the plain student's pixels (NasaAttnProcessor subtracts 0 * Z-), so requests with and
without a negative prompt share a batch.
"""
import torch
from torch import nn

from trainer import diffusion
from trainer.models.attention import set_nasa


def to_pixels(x: torch.Tensor) -> torch.Tensor:
    """Decoder output (B, 3, H, W) in about [-1, 1] -> uint8 (B, H, W, 3): clamp, scale to 0..255, round half to even
    (torch.round and ONNX Round agree on it)."""
    return ((x.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)


class Generator(nn.Module):
    """A one-step student (any backbone with the NASA forward signature) fused with the VAE decoder.

    The student's attn2 processors are switched to NASA here; `cross_attention_layers` is how many there are, the
    number the service's NASA graph rewrite and the tests check against. with_latents=True also returns the x0
    latent (B, C, h, w), scaled like the training latents: the parity fixture compares it at 1e-4, where pixels can
    only be compared within one grey level."""

    def __init__(self, student: nn.Module, vae: nn.Module, scaling_factor: float, with_latents: bool = False):
        super().__init__()
        self.student = student
        self.vae = vae
        self.scaling_factor = float(scaling_factor)
        self.with_latents = with_latents
        self.cross_attention_layers = set_nasa(student, True)

    def forward(self, noise, encoder_hidden_states, negative_encoder_hidden_states, nasa_scale):
        latents = diffusion.one_step_generate(self.student, noise, encoder_hidden_states,
                                              negative_encoder_hidden_states, nasa_scale)  # (B, C, h, w)
        image = to_pixels(self.vae.decode(latents / self.scaling_factor))  # (B, H, W, 3) uint8
        return (image, latents) if self.with_latents else image
