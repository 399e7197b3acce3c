"""Reparameterise a trained VAE so that its scaled latents have zero mean and unit std in every channel.

    /usr/bin/python3 -m trainer.standardize_vae --vae models/base/vae.pt --out models/base/vae.pt

Why: the trained VAE's latents scaled by one scaling factor had per-channel stds 0.53 / 0.89 / 1.71 / 0.11. The same
diffusion noise then drowns the low-variance channel within the first few timesteps, and an eps-model must predict it
far more precisely than the others; the teachers learnt colors slowly on those latents. SD's single scaling factor
assumes channels of similar spread; ours are not.

How: the per-channel affine map z' = (z * scaling_factor - mean_c) / std_c is folded into the VAE's two 1x1 convs
(quant_conv's mean rows and log-variance biases; post_quant_conv's input columns and bias), so the architecture,
the ONNX export and the service are unchanged, decode(encode(x)) is the same function, and the new scaling factor
is 1. Statistics: posterior means of shapes-world samples [0, n) of stream `seed` (the teachers' training stream).
"""
import argparse
import math
import sys

import torch

from trainer import shapes
from trainer.checkpoint import load_checkpoint, save_checkpoint
from trainer.models.vae import encode_images, load_vae


def latent_statistics(vae_path: str, seed: int, n: int, chunk: int = 512):
    """Per-channel mean and std (float64, (C,)) of the scaled posterior means of n samples of stream `seed`."""
    vae, scaling_factor = load_vae(vae_path)
    latents = torch.cat([encode_images(vae, shapes.batch(seed, start, min(chunk, n - start))[0], scaling_factor)
                         for start in range(0, n, chunk)]).double()
    return latents.mean(dim=(0, 2, 3)), latents.std(dim=(0, 2, 3))


def standardized_state(checkpoint: dict, mean: torch.Tensor, std: torch.Tensor) -> dict:
    """The checkpoint's state dict with z' = (z * scaling_factor - mean) / std folded into the 1x1 convs."""
    scaling_factor = float(checkpoint["scaling_factor"])
    state = {key: value.clone() for key, value in checkpoint["model"].items()}
    channels = mean.numel()
    weight, bias = state["quant_conv.weight"].double(), state["quant_conv.bias"].double()  # (2C, 2C, 1, 1): mean, logvar
    for c in range(channels):
        gain = scaling_factor / std[c]
        weight[c] *= gain
        bias[c] = bias[c] * gain - mean[c] / std[c]
        bias[channels + c] += 2 * math.log(gain)  # the posterior's variance scales with the mean
    post_weight, post_bias = state["post_quant_conv.weight"].double(), state["post_quant_conv.bias"].double()
    post_bias = post_bias + (post_weight[:, :, 0, 0] * (mean / scaling_factor)[None, :]).sum(1)
    for c in range(channels):
        post_weight[:, c] *= std[c] / scaling_factor
    state.update({"quant_conv.weight": weight.float(), "quant_conv.bias": bias.float(),
                  "post_quant_conv.weight": post_weight.float(), "post_quant_conv.bias": post_bias.float()})
    return state


def main(argv):
    parser = argparse.ArgumentParser(description="Standardise a VAE's latents per channel (exact reparameterisation).")
    parser.add_argument("--vae", default="models/base/vae.pt")
    parser.add_argument("--out", default="models/base/vae.pt")
    parser.add_argument("--seed", type=int, default=21, help="shapes-world stream of the statistics")
    parser.add_argument("--n", type=int, default=8192, help="samples of the statistics")
    args = parser.parse_args(argv)
    checkpoint = load_checkpoint(args.vae)
    if "latent_standardization" in checkpoint:
        print(f"{args.vae} is already standardised", file=sys.stderr)
        return 2
    mean, std = latent_statistics(args.vae, args.seed, args.n)
    print(f"per-channel mean {[round(v, 4) for v in mean.tolist()]}, std {[round(v, 4) for v in std.tolist()]}")
    record = {"source_scaling_factor": float(checkpoint["scaling_factor"]), "seed": args.seed, "n": args.n,
              "mean": mean.tolist(), "std": std.tolist()}
    save_checkpoint(args.out, **dict(checkpoint, model=standardized_state(checkpoint, mean, std), scaling_factor=1.0,
                                     latent_standardization=record))
    print(f"wrote {args.out} (scaling factor 1.0)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
