"""Measure a trained VAE and (optionally) write the committed artifact models/base/vae.pt + vae.json.

    /usr/bin/python3 -m trainer.eval_vae [--checkpoint=runs/vae/ckpt.pt] [--n=2000] [--out=models/base/vae.pt]

Measures on samples 0..n-1 of the judge's held-out seed (trainer/judge_accuracy.py):
- scaling_factor: 1 / std of the posterior means over scale_samples training images (so scaled latents have unit std);
- PSNR of reconstructions (posterior mean -> decode -> uint8) against the renders;
- judge scene accuracy on reconstructions from clean latents, and from latents with N(0, noise_std^2) added in
  scaled-latent units (what a diffusion model's slightly-off output looks like to the decoder).
Prints one JSON object. With --out, writes the slim checkpoint (model_args, fp32 weights, scaling_factor; no
optimizer) and a JSON of recipe and metrics beside it.
"""
import json
import math
import sys

import numpy as np
import torch

from trainer import cpu_threads, judge_accuracy, shapes, train_vae
from trainer.checkpoint import load_checkpoint, write_artifact
from trainer.configurator import configure_or_exit
from trainer.models.vae import AutoencoderKL, VaeArgs, decode_latents, encode_images

checkpoint = "runs/vae/ckpt.pt"  # a training checkpoint (or a slim one written by --out)
n = 2000  # evaluation samples
seed = judge_accuracy.seed  # held-out shapes seed of the judge's accuracy measurement
noise_std = 0.1  # noise added to scaled latents for the noised-latent accuracy
noise_seed = 0  # torch seed of that noise
scale_samples = 1024  # training images used to measure the scaling factor
batch_size = 250
threads = 1
out = ""  # when set: write the slim checkpoint here and <out without .pt>.json beside it
DEFAULTS = {k: v for k, v in dict(globals()).items()
            if not k.startswith("_") and not k.isupper() and isinstance(v, (int, float, str))}


def measure_scaling_factor(vae, train_seed, count, batch_size):
    """1 / std of the posterior means of `count` training images."""
    latents = torch.cat([encode_images(vae, shapes.batch(train_seed, start, min(batch_size, count - start))[0], 1.0)
                         for start in range(0, count, batch_size)])
    return 1.0 / latents.std().item()


def evaluate(vae, scaling_factor, config):
    generator = torch.Generator().manual_seed(config["noise_seed"])

    def reconstruct(images):
        return decode_latents(vae, encode_images(vae, images, scaling_factor), scaling_factor)

    def reconstruct_noised(images):
        latents = encode_images(vae, images, scaling_factor)
        noise = torch.randn(latents.shape, generator=generator) * config["noise_std"]
        return decode_latents(vae, latents + noise, scaling_factor)

    squared_error = 0.0
    for start in range(0, config["n"], config["batch_size"]):
        images = shapes.batch(config["seed"], start, min(config["batch_size"], config["n"] - start))[0]
        squared_error += ((reconstruct(images).astype(np.float64) - images) ** 2).sum()
    mse = squared_error / (config["n"] * shapes.IMAGE_SIZE * shapes.IMAGE_SIZE * 3)
    clean = judge_accuracy.accuracy(reconstruct, config["n"], config["seed"], config["batch_size"])
    noised = judge_accuracy.accuracy(reconstruct_noised, config["n"], config["seed"], config["batch_size"])
    return {"n": config["n"], "seed": config["seed"], "scaling_factor": scaling_factor,
            "psnr_db": round(10 * math.log10(255 ** 2 / max(mse, 1e-12)), 3),
            "judge_accuracy_clean": clean["scene_accuracy"], "caption_accuracy_clean": clean["caption_accuracy"],
            "judge_accuracy_noised": noised["scene_accuracy"], "caption_accuracy_noised": noised["caption_accuracy"],
            "noise_std_scaled": config["noise_std"], "errors_clean": clean["scene_errors"][:5],
            "errors_noised": noised["scene_errors"][:5]}


def main(argv):
    config = configure_or_exit(DEFAULTS, argv)
    cpu_threads.use(config["threads"])
    state = load_checkpoint(config["checkpoint"])
    vae = AutoencoderKL(VaeArgs(**state["model_args"]))
    vae.load_state_dict(state["model"])
    vae.eval()
    train_config = {k: v for k, v in state.get("config", {}).items() if k in train_vae.DEFAULTS}
    if "scaling_factor" in state:
        scaling_factor = float(state["scaling_factor"])
    else:
        scaling_factor = measure_scaling_factor(vae, train_config["seed"], config["scale_samples"],
                                                config["batch_size"])
    metrics = evaluate(vae, scaling_factor, config)
    print(json.dumps(metrics, indent=1))
    if config["out"]:
        write_artifact(config["out"], "vae", state, vae, train_config,
                       {k: v for k, v in metrics.items() if not k.startswith("errors")}, "trainer.train_vae",
                       f"/usr/bin/python3 -m trainer.eval_vae --checkpoint=runs/vae/ckpt.pt --n={config['n']} "
                       f"--out={config['out']}", extra={"scaling_factor": scaling_factor})


if __name__ == "__main__":
    main(sys.argv[1:])
