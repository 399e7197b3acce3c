"""Train a diffusion teacher (unet-eps, unet-v or dit) on VAE latents of the shapes world, conditioned on the frozen
tiny CLIP's text states.

    /usr/bin/python3 -m trainer.train_teacher trainer/configs/teacher-unet-eps.json [--key=value ...]
    torchrun --nproc_per_node=2 -m trainer.train_teacher ...      (DDP; batch_size is per process)

Data: the first dataset_size samples of shapes-world stream `seed`, encoded once (VAE posterior mean times
scaling_factor; CLIP last_hidden_state per distinct caption) and cached under cache_dir, keyed by the VAE and CLIP
checkpoints' bytes. The encoders are frozen, so this is what encoding every batch on the fly would compute, without
spending most of each step on it; the three teachers share one cache. Each step draws batch_size random samples.

Loss: 10% of captions dropped to "" (for CFG), t ~ U{0..999}, MSE on the backbone's own target (eps or v) with
min-SNR-gamma weights. regress_onto names a trained teacher (any backbone): the target is then that teacher's
prediction at the same (x_t, t, text), converted to this backbone's parameterization, instead of the data's own
(knowledge distillation of the denoiser: a deterministic target, the same for both CFG branches).
AdamW with warmup + cosine decay, gradient clipping, an EMA of the weights (what sampling, evaluation and export
use). Resumes from <out_dir>/ckpt.pt (weights + EMA + optimizer + RNG); saves every
checkpoint_every_s seconds, at the end and on SIGTERM. init_from continues an earlier teacher (same backbone and
model args, or the same plus long skips) with a fresh optimizer and schedule; the checkpoint and the exported record
name it (path, sha256, steps, recipe) as `init`. Every eval_every steps the EMA model's judge alignment on
eval_prompts prompts (25-step DDIM at eval_guidance) is logged. trainer/sample.py evaluates and exports the result.
"""
import hashlib
import json
import os
import sys
import time
from dataclasses import asdict

import torch
from torch import nn

from trainer import cpu_threads, diffusion, distributed, package, shapes
from trainer.checkpoint import TrainingCheckpoints, load_checkpoint, save_checkpoint
from trainer.configurator import configure_or_exit
from trainer.models.vae import encode_images, load_vae
from trainer.progress import ProgressLog, TimeBudget, cosine_lr
from trainer.sample import BACKBONES, TextEncoder, build_backbone, ema_weights, evaluate_alignment, load_teacher

# -----------------------------------------------------------------------------
# defaults (trainer/configs/teacher-*.json hold what differs; --key=value overrides)
out_dir = "runs/teacher-unet-eps"  # ckpt.pt and progress.jsonl go here
backbone = "unet-eps"  # unet-eps | unet-v | dit
model = {}  # overrides of the backbone's args dataclass (UNetArgs / DiTArgs field names)
clip_path = "models/base/clip.pt"  # frozen text encoder
vae_path = "models/base/vae.pt"  # frozen autoencoder; its scaling_factor scales the latents
seed = 21  # shapes-world seed of the training set (CLIP trains on 11, the VAE on 1; evaluation seeds are > 1000)
dataset_size = 50000  # training samples, encoded once
cache_dir = "runs/cache"  # encoded training sets, shared by the teachers
torch_seed = 1337  # parameter init, then (plus the rank) the sample / timestep / noise stream
device = "auto"  # auto | cpu | cuda
threads = 1  # cpu_threads.use: torch and OpenBLAS (1: faster than 2 on these 2 cores; trainer/README.md, Framework)
# diffusion loss
caption_dropout = 0.1  # fraction of captions replaced by "" (the CFG unconditional branch)
min_snr_gamma = 5.0  # min-SNR-gamma loss weighting; 0: unweighted
# optimisation
batch_size = 64  # per process
max_steps = 4000
learning_rate = 5e-4
min_lr_ratio = 0.1  # cosine decay to learning_rate * min_lr_ratio at max_steps
warmup_steps = 200
weight_decay = 0.01
grad_clip = 1.0  # 0: off
ema_decay = 0.999  # with warmup: min(ema_decay, (1 + step) / (10 + step))
# logging, evaluation and checkpoints
log_every = 20  # steps
eval_every = 500  # steps; 0: never
eval_prompts = 40  # alignment prompts per evaluation (half one object, half two)
eval_guidance = 5.0  # CFG scale of the evaluation
checkpoint_every_s = 120  # seconds between checkpoints
time_budget_s = 0  # > 0: lower max_steps (once, after 50 steps) so that the run ends within this many seconds
init_from = ""  # a trained teacher (models/base/teacher-*.pt or a ckpt.pt) whose EMA weights start a fresh run
regress_onto = ""  # a trained teacher whose predictions are the targets instead of the data's noise; "" = data
DEFAULTS = {k: v for k, v in dict(globals()).items()
            if k.islower() and not k.startswith("_") and isinstance(v, (int, float, str, list, dict))}
# -----------------------------------------------------------------------------

# init_from may switch these model args on: the layers they add start as the identity (DiTArgs.long_skips), so the
# continued model computes what the loaded one did
GROWABLE_ARGS = ("long_skips",)
GROWN_PREFIXES = ("skip_linears.",)
MAX_CHANNEL_STD_RATIO = 3.0  # warn when the training latents' per-channel stds differ more than this


class TeacherWeights(nn.Module):
    """The trained weights and their EMA, checkpointed together (state dict keys model.* and ema.*)."""

    def __init__(self, model: nn.Module, ema: nn.Module):
        super().__init__()
        self.model = model
        self.ema = ema

    @torch.no_grad()
    def update_ema(self, step: int, decay: float) -> None:
        decay = min(decay, (1 + step) / (10 + step))
        ema_params, params = list(self.ema.parameters()), list(self.model.parameters())
        torch._foreach_mul_(ema_params, decay)
        torch._foreach_add_(ema_params, params, alpha=1 - decay)


class DenoisingLoss(nn.Module):
    """One training forward: noise the latents, predict, min-SNR-weighted MSE on the target. What DDP wraps.
    target_model (frozen): its prediction at x_t, as (x0, eps), makes the target instead of (x0, noise)."""

    def __init__(self, model: nn.Module, min_snr_gamma: float, target_model: nn.Module = None):
        super().__init__()
        self.model = model
        self.parameterization = model.args.parameterization
        self.min_snr_gamma = min_snr_gamma
        self.target_model = target_model

    def forward(self, x0, text_states, t, noise):  # x0 (B, C, h, w), text_states (B, L, D), t (B,)
        x_t = diffusion.q_sample(x0, t, noise)
        prediction = self.model(x_t, t, text_states)
        if self.target_model is not None:
            with torch.no_grad():
                x0, noise = diffusion.x0_and_eps(self.target_model.args.parameterization,
                                                 self.target_model(x_t, t, text_states), x_t, t)
        target = diffusion.training_target(self.parameterization, x0, noise, t)
        per_sample = (prediction - target).pow(2).mean(dim=(1, 2, 3))  # (B,)
        if self.min_snr_gamma > 0:
            per_sample = per_sample * diffusion.min_snr_weight(self.parameterization, t, self.min_snr_gamma)
        return per_sample.mean()


def build_dataset(config, text_encoder: TextEncoder, vae, scaling_factor: float) -> dict:
    """Encode samples [0, dataset_size) of stream `seed`: latents (N, C, h, w) float16, caption_index (N,) into
    text_states (U, L, D) float16 of the U distinct captions."""
    size, chunk = config["dataset_size"], 256
    latents, captions = [], []
    started = time.time()
    for start in range(0, size, chunk):
        images, batch_captions = shapes.batch(config["seed"], start, min(chunk, size - start))
        latents.append(encode_images(vae, images, scaling_factor).half())
        captions += batch_captions
        if start // chunk % 40 == 0:
            print(f"encoding the training set: {start + len(images)}/{size} images, "
                  f"{time.time() - started:.0f} s", flush=True)
    distinct = sorted(set(captions))
    index = {caption: i for i, caption in enumerate(distinct)}
    states = torch.cat([text_encoder(distinct[i:i + chunk]).half() for i in range(0, len(distinct), chunk)])
    print(f"encoded {size} images and {len(distinct)} distinct captions in {time.time() - started:.0f} s", flush=True)
    return {"latents": torch.cat(latents), "caption_index": torch.tensor([index[c] for c in captions]),
            "text_states": states, "captions": distinct}


def load_dataset(config, text_encoder, vae, scaling_factor, dist_info) -> dict:
    """The encoded training set from the cache, built by the master process when missing."""
    key = hashlib.sha256(f"{package.file_entry(config['vae_path'])['sha256']} "
                         f"{package.file_entry(config['clip_path'])['sha256']} "
                         f"{config['seed']} {config['dataset_size']}".encode()).hexdigest()[:16]
    path = os.path.join(config["cache_dir"], f"teacher-data-{key}.pt")
    if dist_info.is_master and not os.path.exists(path):
        save_checkpoint(path, **build_dataset(config, text_encoder, vae, scaling_factor))
    distributed.barrier(dist_info)
    dataset = load_checkpoint(path)
    if dist_info.is_master:
        sample_latents = dataset["latents"][:4096].float()
        stds = sample_latents.std(dim=(0, 2, 3))
        print(f"training set {path}: {len(dataset['latents'])} latents {tuple(dataset['latents'].shape[1:])}, "
              f"{len(dataset['captions'])} distinct captions; latent channel means "
              f"{[round(v, 3) for v in sample_latents.mean(dim=(0, 2, 3)).tolist()]}, stds "
              f"{[round(v, 3) for v in stds.tolist()]}", flush=True)
        if stds.max() > MAX_CHANNEL_STD_RATIO * stds.min():
            print(f"warning: the latent channels' stds differ {stds.max() / stds.min():.1f}x: the same noise drowns "
                  "the low-variance channels early and an eps model must predict them far more precisely; "
                  "standardise the VAE's latents per channel", flush=True)
    return dataset


def draw_batch(dataset, empty_states, batch_size: int, caption_dropout: float, device):
    """Random samples of the training set with caption dropout: (x0 (B, C, h, w), text_states (B, L, D))."""
    index = torch.randint(0, len(dataset["latents"]), (batch_size,))
    x0 = dataset["latents"][index].float()
    states = dataset["text_states"][dataset["caption_index"][index]].float()
    dropped = torch.rand(batch_size) < caption_dropout
    states = torch.where(dropped[:, None, None], empty_states, states)
    return x0.to(device), states.to(device)


def start_from_teacher(path: str, weights: TeacherWeights, backbone: str) -> dict:
    """Load the EMA weights of the teacher at `path` into weights.model and weights.ema; its lineage entry."""
    checkpoint = load_checkpoint(path)
    found = checkpoint.get("backbone") or checkpoint["config"]["backbone"]
    wanted = asdict(weights.model.args)
    grown = {**checkpoint["model_args"], **{key: wanted[key] for key in GROWABLE_ARGS if key in wanted}}
    if found != backbone or json.dumps(grown, sort_keys=True) != json.dumps(wanted, sort_keys=True):
        print(f"config error: init_from {path} is a {found} with {checkpoint['model_args']}, "
              f"this run builds a {backbone} with {wanted}", file=sys.stderr)
        sys.exit(2)
    state = ema_weights(checkpoint)
    for module in (weights.model, weights.ema):
        missing, unexpected = module.load_state_dict(state, strict=False)
        if unexpected or any(not key.startswith(GROWN_PREFIXES) for key in missing):
            print(f"config error: init_from {path} has weights this run cannot start from (not in this model: "
                  f"{unexpected}; not in the checkpoint: {missing})", file=sys.stderr)
            sys.exit(2)
    return package.lineage_entry(path, checkpoint)


def check_model_config(config) -> None:
    if config["backbone"] not in BACKBONES:
        print(f"config error: backbone must be one of {', '.join(BACKBONES)}, got {config['backbone']!r}",
              file=sys.stderr)
        sys.exit(2)
    try:
        build_backbone(config["backbone"], config["model"])
    except (TypeError, ValueError) as error:
        print(f"config error: model {config['model']} does not fit backbone {config['backbone']}: {error}",
              file=sys.stderr)
        sys.exit(2)


def main(argv):
    config = configure_or_exit(DEFAULTS, argv)
    check_model_config(config)
    cpu_threads.use(config["threads"])
    dist_info = distributed.setup(config["device"])
    device = dist_info.device

    text_encoder = TextEncoder(config["clip_path"], device)
    vae, scaling_factor = load_vae(config["vae_path"], device)
    dataset = load_dataset(config, text_encoder, vae, scaling_factor, dist_info)
    empty_states = text_encoder.empty().cpu()  # (1, L, D)

    torch.manual_seed(config["torch_seed"])
    model = build_backbone(config["backbone"], config["model"]).to(device)
    ema = build_backbone(config["backbone"], config["model"]).to(device)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False).eval()
    weights = TeacherWeights(model, ema)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["learning_rate"],
                                  weight_decay=config["weight_decay"], foreach=True)
    checkpoints = TrainingCheckpoints(config["out_dir"], weights, optimizer, model.args, config, dist_info,
                                      every_s=config["checkpoint_every_s"], extra={"init": None}, defaults=DEFAULTS)
    torch.manual_seed(config["torch_seed"] + 1 + dist_info.rank)  # each rank its own data and noise stream
    step = checkpoints.resume()
    if step == 0 and config["init_from"]:
        checkpoints.extra["init"] = start_from_teacher(config["init_from"], weights, config["backbone"])
    target_model = load_teacher(config["regress_onto"], device) if config["regress_onto"] else None
    training_step = distributed.wrap(DenoisingLoss(model, config["min_snr_gamma"], target_model).to(device),
                                     dist_info)

    log = ProgressLog(os.path.join(config["out_dir"], "progress.jsonl"), config["max_steps"], dist_info.is_master,
                      start_step=step)
    if dist_info.is_master:
        print(f"{config['backbone']}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, "
              f"{model.args}, world size {dist_info.world_size}, device {device}", flush=True)
    budget = TimeBudget(config["time_budget_s"], step,
                        agree=lambda total: round(distributed.all_reduce_mean(total, dist_info)))
    step_started = time.time()
    while step < config["max_steps"]:
        x0, text_states = draw_batch(dataset, empty_states, config["batch_size"], config["caption_dropout"], device)
        t = torch.randint(0, diffusion.NUM_TRAIN_TIMESTEPS, (config["batch_size"],), device=device)
        noise = torch.randn_like(x0)
        lr = cosine_lr(step, config["learning_rate"], config["warmup_steps"], config["max_steps"],
                       config["min_lr_ratio"])
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = training_step(x0, text_states, t, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = (torch.nn.utils.clip_grad_norm_(model.parameters(), config["grad_clip"])
                     if config["grad_clip"] > 0 else torch.tensor(0.0))
        optimizer.step()
        weights.update_ema(step, config["ema_decay"])
        step += 1
        config["max_steps"] = log.total = budget.fit(step, config["max_steps"])

        if step % config["log_every"] == 0 or step == config["max_steps"]:
            metrics = dict(loss=distributed.all_reduce_mean(loss.item(), dist_info), grad_norm=grad_norm.item(),
                           lr=lr, s_per_step=(time.time() - step_started) / config["log_every"])
            if dist_info.is_master and config["eval_every"] and (
                    step % config["eval_every"] == 0 or step == config["max_steps"]):
                result = evaluate_alignment(ema, text_encoder, vae, scaling_factor, config["eval_guidance"],
                                            config["eval_prompts"])
                metrics.update(align_single=result["single"], align_two=result["two"])
            log.log(step, **metrics)
            step_started = time.time()
        if checkpoints.after_step(step, final=step == config["max_steps"]):
            sys.exit(143)
    distributed.finish(dist_info)


if __name__ == "__main__":
    main(sys.argv[1:])
