"""Train the shapes-world VAE (trainer/models/vae.py).

    /usr/bin/python3 -m trainer.train_vae trainer/configs/vae.json [--key=value ...]
    torchrun --nproc_per_node=2 -m trainer.train_vae ...      (DDP; batch_size is per process)

Resumes from <out_dir>/ckpt.pt when it exists; saves it every checkpoint_every_s seconds, at the end and on SIGTERM.
Step s trains on samples [s * world_size * batch_size, ...) of the shapes stream `seed`, so a resumed run sees
exactly the data it would have seen. trainer/eval_vae.py measures the result and writes models/base/vae.pt.

Loss: L1 on pixels (flat colors and sharp corners matter more than MSE), weighted up by edge_weight next to color
boundaries, + kl_weight * KL per latent element. The decoder also sees latents with extra Gaussian noise (up to
latent_noise_max, in units of the latents' std), so the slightly-off latents a diffusion model produces still decode
to clean shapes. The committed VAE trained in two phases (trainer/README.md): mse_weight 1 first, edge_weight 8 after.
"""
import math
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

from trainer import cpu_threads, distributed, shapes
from trainer.checkpoint import TrainingCheckpoints
from trainer.configurator import configure_or_exit
from trainer.models.vae import AutoencoderKL, VaeArgs, images_to_tensor
from trainer.progress import ProgressLog, cosine_lr

# -----------------------------------------------------------------------------
# defaults (trainer/configs/vae.json holds what differs; --key=value overrides)
out_dir = "runs/vae"  # ckpt.pt and progress.jsonl go here
seed = 1  # shapes-world seed of the training stream (evaluation uses other seeds)
torch_seed = 1337  # parameter init and sampling noise
device = "auto"  # auto | cpu | cuda
threads = 1  # cpu_threads.use: torch and OpenBLAS
channels_last = True  # NHWC activations: oneDNN's convolutions run about twice as fast that way on CPU
# model
downsample_factor = 4  # 64x64 -> 16x16 latents; must equal 2 ** (len(block_out_channels) - 1)
latent_channels = 4
block_out_channels = [16, 32, 128]  # channels per resolution, full resolution first
layers_per_block = 1  # encoder resnets per resolution
decoder_layers_per_block = 2  # decoder resnets per resolution
norm_groups = 0  # 0: no GroupNorm, which loses the colors here (trainer/models/vae.py)
# loss
kl_weight = 1e-6  # times the KL per latent element, next to the L1 per pixel
mse_weight = 0.0  # optional MSE term beside L1 (speeds up early color learning, but blurs edges)
edge_weight = 0.0  # extra L1 weight on pixels next to a color boundary, where corners are won or lost
latent_noise_max = 0.2  # decoder input noise: sigma ~ U(0, max) per sample, in units of the batch latent std
# optimisation
batch_size = 16  # per process
max_steps = 2500
learning_rate = 1e-3
min_lr_ratio = 0.1  # cosine decay to learning_rate * min_lr_ratio at lr_decay_steps
warmup_steps = 100
lr_decay_steps = 0  # 0: max_steps
weight_decay = 0.0
grad_clip = 1.0  # 0: off
# logging and checkpoints
log_every = 20  # steps
eval_every = 200  # steps; PSNR on a fixed held-out batch
checkpoint_every_s = 120  # seconds between checkpoints
DEFAULTS = {k: v for k, v in dict(globals()).items()
            if not k.startswith("_") and not k.isupper() and isinstance(v, (int, float, str, list))}
# -----------------------------------------------------------------------------

EVAL_SEED = 2  # held-out seed of the PSNR batch logged during training


class VaeLoss(nn.Module):
    """One training forward: encode, sample the posterior, perturb, decode, losses. What DDP wraps."""

    def __init__(self, vae, config):
        super().__init__()
        self.vae = vae
        self.kl_weight = config["kl_weight"]
        self.mse_weight = config["mse_weight"]
        self.edge_weight = config["edge_weight"]
        self.latent_noise_max = config["latent_noise_max"]

    def forward(self, x):  # x (B, 3, 64, 64) in [-1, 1]
        posterior = self.vae.encode(x)
        z = posterior.sample()  # (B, C, h, w)
        if self.latent_noise_max > 0:
            sigma = torch.rand(z.shape[0], 1, 1, 1, device=z.device) * self.latent_noise_max
            z = z + sigma * posterior.mean.detach().std() * torch.randn_like(z)
        reconstruction = self.vae.decode(z)
        error = (reconstruction - x).abs()
        l1 = error.mean()
        mse = F.mse_loss(reconstruction, x)
        kl = posterior.kl().mean() / z[0].numel()
        loss = self.kl_weight * kl + self.mse_weight * mse
        if self.edge_weight > 0:
            loss = loss + ((1 + self.edge_weight * boundary_mask(x)) * error).mean()
        else:
            loss = loss + l1
        return loss, l1.detach(), mse.detach(), kl.detach()


def boundary_mask(x):
    """(B, 1, H, W) 1.0 where a pixel's 3x3 neighbourhood is not one flat color (both sides of every edge)."""
    spread = F.max_pool2d(x, 3, stride=1, padding=1) + F.max_pool2d(-x, 3, stride=1, padding=1)  # max - min
    return (spread.amax(dim=1, keepdim=True) > 0.02).float()


def model_args_from(config):
    args = VaeArgs(latent_channels=config["latent_channels"], block_out_channels=list(config["block_out_channels"]),
                   layers_per_block=config["layers_per_block"],
                   decoder_layers_per_block=config["decoder_layers_per_block"], norm_groups=config["norm_groups"])
    if args.downsample_factor != config["downsample_factor"]:
        print(f"config error: downsample_factor {config['downsample_factor']} needs "
              f"{int(math.log2(config['downsample_factor'])) + 1} entries in block_out_channels, got "
              f"{config['block_out_channels']}", file=sys.stderr)
        sys.exit(2)
    return args


@torch.no_grad()
def psnr(vae, x):
    """PSNR in dB of mean-latent reconstructions of x (B, 3, H, W) in [-1, 1], on the uint8 pixel scale."""
    reconstruction = vae(x).clamp(-1, 1)
    mse = ((reconstruction - x) * 127.5).round().pow(2).mean().item()
    return 10 * math.log10(255 ** 2 / max(mse, 1e-10))


def main(argv):
    config = configure_or_exit(DEFAULTS, argv)
    model_args = model_args_from(config)
    cpu_threads.use(config["threads"])
    dist_info = distributed.setup(config["device"])
    torch.manual_seed(config["torch_seed"])

    memory_format = torch.channels_last if config["channels_last"] else torch.contiguous_format
    vae = AutoencoderKL(model_args).to(dist_info.device, memory_format=memory_format)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=config["learning_rate"], weight_decay=config["weight_decay"])
    checkpoints = TrainingCheckpoints(config["out_dir"], vae, optimizer, model_args, config, dist_info,
                                      every_s=config["checkpoint_every_s"], defaults=DEFAULTS)
    step = checkpoints.resume()
    training_step = distributed.wrap(VaeLoss(vae, config).to(dist_info.device), dist_info)

    eval_x = images_to_tensor(shapes.batch(EVAL_SEED, 0, 64)[0]).to(dist_info.device)
    log = ProgressLog(os.path.join(config["out_dir"], "progress.jsonl"), config["max_steps"], dist_info.is_master,
                      start_step=step)
    if dist_info.is_master:
        print(f"vae: {sum(p.numel() for p in vae.parameters()) / 1e6:.2f}M parameters, {model_args}, "
              f"world size {dist_info.world_size}, device {dist_info.device}")
    global_batch = config["batch_size"] * dist_info.world_size
    while step < config["max_steps"]:
        start = step * global_batch + dist_info.rank * config["batch_size"]
        x = images_to_tensor(shapes.batch(config["seed"], start, config["batch_size"])[0])
        x = x.to(dist_info.device, memory_format=memory_format)
        lr = cosine_lr(step, config["learning_rate"], config["warmup_steps"],
                       config["lr_decay_steps"] or config["max_steps"], config["min_lr_ratio"])
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss, l1, mse, kl = training_step(x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(vae.parameters(), config["grad_clip"])
        optimizer.step()
        step += 1

        if step % config["log_every"] == 0 or step == config["max_steps"]:
            metrics = dict(loss=distributed.all_reduce_mean(loss.item(), dist_info),
                           l1=distributed.all_reduce_mean(l1.item(), dist_info),
                           mse=distributed.all_reduce_mean(mse.item(), dist_info),
                           kl=distributed.all_reduce_mean(kl.item(), dist_info), lr=lr)
            if dist_info.is_master and (step % config["eval_every"] == 0 or step == config["max_steps"]):
                metrics["eval_psnr"] = psnr(vae.eval(), eval_x)
                vae.train()
            log.log(step, **metrics)
        if checkpoints.after_step(step, final=step == config["max_steps"]):
            sys.exit(143)
    distributed.finish(dist_info)


if __name__ == "__main__":
    main(sys.argv[1:])
