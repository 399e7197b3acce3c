"""The warm start of a distillation (trainer.distill's warm_start_steps): the teacher's own samples to regress the
one-step student onto before VSD begins, DMD's regression loss (Yin et al. 2024) used as an initialisation.

Why: an eps student called once at t = 999 turns its output into an image through x0 = (z - sqrt(1 - alpha_bar_T)
eps) / sqrt(alpha_bar_T), which multiplies any error in the teacher's eps by 14.6. The teacher's one call there is
noise (FID 0.63 on the probe set), VSD from it did not turn into a generator in any budget tried (docs/results.md,
"Stability"), while a few hundred regression steps onto (noise, prompt) -> 25-step DDIM + CFG image pairs give
backgrounds and shapes. The pairs are image-free in the paper's sense: the teacher draws them.

A pair set is drawn once per run and cached in <run_dir>/warm-start-pairs.pt, so that a resumed run regresses onto
the same pairs; a cache drawn by another teacher, seed or size is drawn again."""
import os
import random
from dataclasses import dataclass

import torch

from trainer import diffusion, shapes
from trainer.checkpoint import load_checkpoint, save_checkpoint

DDIM_STEPS = 25  # the teachers' evaluation sampler (trainer.evaluate)
GUIDANCE = 4.5  # the teachers' evaluation CFG scale
NOISE_SEED_BASE = 10 ** 8  # pair i of seed s draws its noise from NOISE_SEED_BASE + s * 10**6 + i: no evaluation seed
GENERATION_BATCH = 64


@dataclass
class TeacherPairs:
    """prompts[i] with noise[i] (N, C, h, w) -> latents[i] (N, C, h, w), the teacher's DDIM + CFG sample."""
    prompts: list
    noise: torch.Tensor
    latents: torch.Tensor

    def batch(self, seed: int, step: int, rank: int, world_size: int, batch_size: int, device):
        """One rank's regression batch at `step`: (prompts, noise, latents), a fixed draw of (seed, step, rank)."""
        picks = random.Random(f"warm start {seed} {step} {rank} {world_size}").choices(range(len(self.prompts)),
                                                                                       k=batch_size)
        return [self.prompts[i] for i in picks], self.noise[picks].to(device), self.latents[picks].to(device)


def draw_pairs(teacher, text_encoder, source: dict, progress=None) -> TeacherPairs:
    """source["n"] pairs from the training stream's first captions of shapes-world seed source["seed"];
    progress(done, n) after each batch of teacher samples."""
    seed, n = source["seed"], source["n"]
    prompts = [shapes.sample_scene(seed, i)[1] for i in range(n)]
    args = teacher.args
    noise = diffusion.seeded_noise([NOISE_SEED_BASE + seed * 10 ** 6 + i for i in range(n)],
                                   (args.in_channels, args.sample_size, args.sample_size))
    uncond = text_encoder.empty()
    latents = []
    for start in range(0, n, GENERATION_BATCH):
        chunk = prompts[start:start + GENERATION_BATCH]
        latents.append(diffusion.ddim_sample(teacher, text_encoder(chunk), uncond, GUIDANCE, DDIM_STEPS,
                                             noise=noise[start:start + len(chunk)].to(text_encoder.device)).cpu())
        if progress:
            progress(start + len(chunk), n)
    return TeacherPairs(prompts, noise, torch.cat(latents))


def load_or_draw_pairs(path: str, teacher, text_encoder, seed: int, n: int, teacher_sha256: str, save: bool,
                       progress=None) -> TeacherPairs:
    """The pairs cached at `path` if they were drawn with this teacher, seed and size; else drawn (and saved there
    if `save`: the master process)."""
    source = {"teacher_sha256": teacher_sha256, "seed": seed, "n": n}
    if os.path.exists(path):
        cached = load_checkpoint(path)
        if cached["source"] == source:
            return TeacherPairs(cached["prompts"], cached["noise"], cached["latents"])
    pairs = draw_pairs(teacher, text_encoder, source, progress)
    if save:
        save_checkpoint(path, prompts=pairs.prompts, noise=pairs.noise, latents=pairs.latents, source=source)
    return pairs
