"""Distil a teacher into a one-step student with Variational Score Distillation: SwiftBrush (fixed kappa) or PG-SB
(random kappa), exactly as docs/design/method.md says; then export the student as a model package.

    /usr/bin/python3 -m trainer.distill --config JOB.json --out models/<id> [--config more.json] [--key=value ...]
    /usr/bin/python3 -m trainer.distill --config trainer/configs/distill-unet-eps.json --out models/shapes-unet-eps-pgsb
    torchrun --nproc_per_node=2 -m trainer.distill ...       (DDP on the student and the LoRA teacher; batch per rank)

A job arrives as JSON holding only what differs from the defaults below (the admin endpoint's body: backbone, method,
guidance, steps, batch_size, seed, name); every key and value is checked, a bad one exits with code 2 and a message.

Models: the frozen teacher psi (models/base/teacher-<backbone>.pt, or any checkpoint sample.load_teacher reads); the
student f_theta, a copy of it called once at t = 999 on pure noise (diffusion.one_step_generate, eps or v); the LoRA
teacher pi, a second copy with LoRA on every attention projection (trainer/lora.py). Prompts: captions of
shapes-world stream `seed` (sample i of step s on rank r is index (s * world_size + r) * batch_size + i), as text
states of the frozen tiny CLIP; "" is CFG's unconditional branch.

One step (docs/design/method.md):
  student: x0 = f_theta(z, y); t ~ U{20..980}; x_t = sqrt(alpha_bar_t) x0 + sigma_t eps;
           grad = sigma_t^2 (eps_psi(x_t, t, y, kappa_teacher) - eps_pi(x_t, t, y, kappa_lora)), NaN/inf -> 0;
           loss = 0.5 MSE(x0, stopgrad(x0 - grad)); gradient norm clipped at 1.0.
  LoRA:    the same x0 (detached), t ~ U{0..999}, 10% of prompts dropped to "", the teacher's own denoising loss
           (train_teacher.DenoisingLoss without min-SNR weights). lora_steps > 1: that many LoRA steps per student
           step, the later ones on fresh samples of the updated student (DMD2's two-time-scale rule).
A v-prediction teacher (unet-v): the LoRA teacher trains on its own v target, and both teachers' CFG outputs are
converted to eps (eps = sigma_t x_t + sqrt(alpha_bar_t) v) before the VSD difference; CFG is linear, so this equals
CFG on eps.

NASA-T (nasa_training_scale > 0, docs/design/method.md: NASA in training): half the prompts are offered a negative
prompt (training_negative: an attribute the caption leaves free, or one of the two objects it names; trainer/README.md);
the student runs NASA with that negative at alpha ~ U(0, nasa_training_scale), one draw per step (rows without a
negative at 0, exactly the plain student), and both teachers' CFG takes the negative prompt as its unconditional
branch. The LoRA teacher still learns the student's samples given the caption alone (as in VSD without NASA); its
CFG reads the negative the way the frozen teacher's does, so the two stay comparable.

init_from continues an earlier distillation of the same teacher (another recipe, e.g. with NASA-T): its checkpoint's
student and LoRA teacher start the run, or, from a student (<run_dir>/student.pt, models/students/<id>.pt), that
student with a fresh LoRA teacher (zero, the frozen teacher, as in any run's start); fresh optimizers and the step
count at 0; student.pt and model.json record that run's lineage (init) and total_steps.
regression_weight > 0: every VSD step also regresses the student onto a batch of the warm start's teacher samples
(warm_start_pairs of them, drawn once), loss = VSD + regression_weight * MSE (DMD's regression loss, Yin et al. 2024,
kept for the whole run rather than only as a warm start: it ties each noise to the teacher's own image for it, which
the distribution-matching gradient alone does not, and so guards against mode collapse).
lora_warmup_steps: the first steps train the LoRA teacher alone (its lora_steps per step, on samples of the student,
which rests), so that a student started with a fresh LoRA teacher is not first pushed along the teacher's CFG
direction alone (what VSD's gradient is while the LoRA teacher is the frozen teacher); not with the warm start, which
trains the LoRA teacher alongside already. Its progress lines carry loss_lora alone.

student_head v (unet-eps teachers only): the student's output is read as v instead of eps. An eps student's image at
t = 999 is x0 = (z - sqrt(1 - alpha_bar_T) eps) / sqrt(alpha_bar_T), 14.6x its output's error; a v student's is
sqrt(alpha_bar_T) z - sqrt(1 - alpha_bar_T) v, bounded (docs/results.md, unet-eps). The student is then a unet-v
backbone (same network) distilled from the eps teacher; model.json names that teacher.

guidance_mode, the one flag between the methods: fixed (SB: both teachers at guidance.fixed, default 4.5), random
(PG-SB: one kappa ~ U(guidance.min, guidance.max) per step for both; defaults U(0.5, 4) for UNets, U(0.5, 3) for the
DiT), and the ablations random-teacher-only / random-lora-only (that teacher random, the other at guidance.fixed).
Kappa of step s is a function of (seed, s): the same on every rank and after a resume.

Output: progress as one JSON object per line on stdout (progress.ProgressLog: step, total, eta_s, loss_student,
loss_lora, kappa, kappa_lora, ...; fid and align every eval_every steps) and in <run_dir>/progress.jsonl; the
resumable checkpoint <run_dir>/ckpt.pt (student, LoRA, both optimizers, RNG), saved every checkpoint_every_s, at the
end and on SIGTERM/SIGINT; at the end <run_dir>/student.pt (+ student.json with the final metrics) and the model
package in --out (export.py), whose model.json records method, recipe, steps, seed and metrics. keep = "best" exports
the student of the probe with the lowest FID instead of the last one (kept in <run_dir>/best-student.pt as the run
goes; its steps and metrics are then that student's). run_dir defaults to
runs/distill/<id>; the package id is `name`, or --out's folder name (the registry requires them equal).
Exit codes: 0 done, 2 bad config, 1 failure (NaN loss, ...; message on stderr), 143 SIGTERM / 130 SIGINT after saving
the checkpoint. The same command again resumes.
"""
import argparse
import copy
import dataclasses
import json
import math
import os
import random
import re
import signal
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from trainer import cpu_threads, diffusion, distributed, export, judge, package, shapes, warm_start
from trainer.checkpoint import TrainingCheckpoints, config_changes, half_weights, load_checkpoint, save_checkpoint
from trainer.configurator import ConfigError, configure
from trainer.evaluate import StudentSampler
from trainer.fid import FidReference
from trainer.lora import add_lora
from trainer.models.attention import set_nasa
from trainer.models.clip import load_clip
from trainer.models.vae import load_vae
from trainer.progress import NonFiniteMetricError, ProgressLog, TimeBudget
from trainer.sample import BACKBONES, TextEncoder, alignment, backbone_of, load_teacher
from trainer.train_teacher import DenoisingLoss

# -----------------------------------------------------------------------------
# defaults (trainer/configs/distill-*.json and jobs hold what differs)
backbone = "unet-eps"  # unet-eps | unet-v | dit (models/base/teacher-<backbone>.pt) or a teacher checkpoint (.pt)
method = "pg-sb"  # pg-sb | sb: what model.json records
guidance_mode = ""  # "" (pg-sb: random, sb: fixed) | fixed | random | random-teacher-only | random-lora-only
guidance = {}  # {"min", "max"} (random kappa) and/or {"fixed"}; a missing value takes the backbone's default
steps = 1000  # student steps (each followed by lora_steps LoRA steps)
batch_size = 32  # per process
seed = 0  # shapes-world stream of the prompts (< 1000: higher seeds are evaluation sets), init and noise seed
name = ""  # the package id; "" = --out's folder name
student_lr = 2e-5  # AdamW (see trainer/README.md, Distillation, for why this value)
student_lr_schedule = "constant"  # constant | cosine: student_lr decays to 0 over the run's steps (half a cosine)
lora_lr = 1e-3  # AdamW, constant (the paper's)
lora_rank = 16  # LoRA rank on every attention projection
lora_alpha = 16.0  # LoRA scale alpha / rank
lora_caption_dropout = 0.1  # fraction of the LoRA step's prompts replaced by ""
lora_steps = 1  # LoRA steps per student step: 1, the paper's 1:1; more let the LoRA teacher keep up (DMD2's TTUR)
student_grad_clip = 1.0  # max gradient norm of the student
eval_every = 200  # steps between FID evaluations (also after the last step); 0: only the final one
eval_n = 256  # images of each FID evaluation (fid.FidReference)
log_every = 10  # steps per progress line
threads = 1  # cpu_threads.use: torch and OpenBLAS (1: faster than 2 on these 2 cores; trainer/README.md, Framework)
device = "auto"  # auto | cpu | cuda
clip_path = "models/base/clip.pt"  # frozen text encoder (and FID features)
vae_path = "models/base/vae.pt"  # decoder of the evaluation images and of the package
run_dir = ""  # checkpoints and logs; "" = runs/distill/<id>
checkpoint_every_s = 300  # seconds between checkpoints
time_budget_s = 0  # > 0: lower `steps` (once, after 50 steps) so that the run ends within this many seconds
keep = "last"  # last | best: the student exported, the last step's or the lowest-FID probe's (VSD can drift late)
write_package = True  # write the model package into --out at the end (false: student.pt only, where ONNX export is off)
student_head = ""  # "" = the teacher's parameterization; v: a unet-eps teacher's student reads its output as v
init_from = ""  # an earlier distillation's <run_dir>/ckpt.pt (same teacher, student_head, lora_rank): its student and
#   LoRA start this run (fresh optimizers, step 0); or its student.pt: that student, LoRA fresh; "" = as the teacher
warm_start_steps = 0  # the first steps regress the student onto teacher samples instead of VSD (trainer/warm_start.py)
warm_start_pairs = 1024  # teacher samples (25-step DDIM + CFG 4.5) the warm start regresses onto
warm_start_lr = 1e-5  # the student's learning rate in the warm start
regression_weight = 0.0  # > 0: every VSD step adds this times the warm start's regression loss (DMD's combined loss)
lora_warmup_steps = 0  # the first steps train the LoRA teacher alone, on samples of the resting student (init_from a
#   student.pt, whose LoRA starts fresh: at zero the VSD gradient is the teacher's CFG direction alone)
nasa_training_scale = 0.0  # NASA-T: alpha ~ U(0, this) per step with training negative prompts; 0: off
nasa_default_scale = 0.0  # the package's nasa block
nasa_max_scale = 1.0
DEFAULTS = {k: v for k, v in dict(globals()).items()
            if k.islower() and not k.startswith("_") and isinstance(v, (int, float, str, list, dict))}
# -----------------------------------------------------------------------------

NEGATIVE_SHARE = 0.5  # NASA-T: the share of training prompts offered a negative prompt (the others: none, NASA at 0)
MAX_NASA_TRAINING_SCALE = 10.0
STUDENT_T_RANGE = (20, 980)  # the student step's t ~ U{20 .. 980} (docs/design/method.md)
FIXED_GUIDANCE = 4.5  # SwiftBrush's kappa
RANDOM_GUIDANCE = {"unet-eps": (0.5, 4.0), "unet-v": (0.5, 4.0), "dit": (0.5, 3.0)}  # PG-SB's U(min, max)
GUIDANCE_KEYS = {"fixed": {"fixed"}, "random": {"min", "max"}, "random-teacher-only": {"min", "max", "fixed"},
                 "random-lora-only": {"min", "max", "fixed"}}
METHOD_MODES = {"sb": ("fixed",), "pg-sb": ("random", "random-teacher-only", "random-lora-only")}
# The ranges an operator may use, inclusive. The admin endpoint's (src/jobs/job-spec.ts, FINETUNE_LIMITS) lie within
# them for guidance, steps and batch_size, and equal this seed range (test/jobs-trainer-limits.test.ts checks both).
MAX_GUIDANCE = 50.0
RANGES = {"steps": (1, 10 ** 7), "batch_size": (1, 4096), "seed": (0, 999), "lora_rank": (1, 1024),
          "lora_steps": (1, 100), "eval_every": (0, 10 ** 7), "eval_n": (2, 100000), "log_every": (1, 10 ** 6),
          "threads": (1, 1024), "checkpoint_every_s": (1, 10 ** 6), "time_budget_s": (0, 10 ** 7),
          "warm_start_pairs": (1, 10 ** 6)}
RESUMABLE_CHANGES = {"steps", "eval_every", "eval_n", "log_every", "threads", "device", "checkpoint_every_s",
                     "write_package", "time_budget_s", "nasa_default_scale", "nasa_max_scale"}  # a rerun may change
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")  # src/registry/model-manifest.ts's MODEL_ID_PATTERN
EXIT_CODES = {"SIGTERM": 143, "SIGINT": 130}
STUDENT_LR_SCHEDULES = ("constant", "cosine")


class DistillError(RuntimeError):
    """The run cannot go on (a non-finite loss): exit code 1."""


# ----------------------------------------------------------------------------- configuration


def _check(condition, message):
    if not condition:
        raise ConfigError(message)


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def resolve_teacher(backbone_or_path: str) -> str:
    """The teacher checkpoint of a backbone name, or the path itself."""
    if backbone_or_path in BACKBONES:
        path = f"models/base/teacher-{backbone_or_path}.pt"
    else:
        _check(backbone_or_path.endswith(".pt"), f"backbone must be one of {', '.join(BACKBONES)} or a teacher "
                                                 f"checkpoint path (.pt), got {backbone_or_path!r}")
        path = backbone_or_path
    _check(os.path.isfile(path), f"no teacher checkpoint at {path} (train and export the teacher first)")
    return path


def resolve_guidance(config, backbone_name: str) -> dict:
    """{"mode", "min", "max", "fixed"} from guidance_mode, method and guidance, the backbone's defaults filled in."""
    mode = config["guidance_mode"] or METHOD_MODES[config["method"]][0]
    _check(mode in GUIDANCE_KEYS, f"guidance_mode must be one of {', '.join(GUIDANCE_KEYS)}, got {mode!r}")
    _check(mode in METHOD_MODES[config["method"]],
           f"guidance_mode {mode} does not belong to method {config['method']} (sb: fixed; pg-sb: random or an "
           "ablation)")
    given = config["guidance"]
    unknown = set(given) - GUIDANCE_KEYS[mode]
    _check(not unknown, f"guidance keys {sorted(unknown)} do not apply to guidance_mode {mode} "
                        f"(it takes {sorted(GUIDANCE_KEYS[mode])})")
    for key, value in given.items():
        _check(_number(value) and 0.0 <= value <= MAX_GUIDANCE,
               f"guidance.{key} must be a number in [0, {MAX_GUIDANCE:g}], got {json.dumps(value)}")
    low, high = RANDOM_GUIDANCE[backbone_name]
    resolved = {"mode": mode, "min": float(given.get("min", low)), "max": float(given.get("max", high)),
                "fixed": float(given.get("fixed", FIXED_GUIDANCE))}
    _check(resolved["min"] <= resolved["max"], f"guidance.min {resolved['min']} is above guidance.max "
                                               f"{resolved['max']}")
    if mode == "fixed":
        del resolved["min"], resolved["max"]
    elif mode == "random":
        del resolved["fixed"]
    return resolved


def validate(config, out_dir: str) -> dict:
    """Range and consistency checks beyond the types that configure() checked; returns the run's settings (the
    config with guidance and the teacher resolved, the model id, run_dir). Raises ConfigError."""
    _check(config["method"] in METHOD_MODES, f"method must be pg-sb or sb, got {config['method']!r}")
    ranges = dict(RANGES, warm_start_steps=(0, config["steps"] - 1), lora_warmup_steps=(0, config["steps"] - 1))
    for key, (low, high) in ranges.items():
        _check(low <= config[key] <= high, f"{key} must be in [{low}, {high}], got {config[key]}")
    _check(_number(config["regression_weight"]) and 0.0 <= config["regression_weight"] <= 1e6,
           f"regression_weight must be in [0, 1e6], got {config['regression_weight']}")
    for key in ("student_lr", "lora_lr", "warm_start_lr", "lora_alpha", "student_grad_clip"):
        _check(math.isfinite(config[key]) and 0.0 < config[key] <= (1.0 if key.endswith("lr") else 1e6),
               f"{key} must be positive{' and at most 1' if key.endswith('lr') else ''}, got {config[key]}")
    _check(0.0 <= config["lora_caption_dropout"] <= 1.0,
           f"lora_caption_dropout must be in [0, 1], got {config['lora_caption_dropout']}")
    _check(_number(config["nasa_training_scale"]) and 0.0 <= config["nasa_training_scale"] <= MAX_NASA_TRAINING_SCALE,
           f"nasa_training_scale must be in [0, {MAX_NASA_TRAINING_SCALE:g}], got {config['nasa_training_scale']}")
    _check(0.0 <= config["nasa_default_scale"] <= config["nasa_max_scale"],
           "need 0 <= nasa_default_scale <= nasa_max_scale")
    _check(config["keep"] in ("last", "best"), f"keep must be last or best, got {config['keep']!r}")
    _check(config["student_lr_schedule"] in STUDENT_LR_SCHEDULES,
           f"student_lr_schedule must be constant or cosine, got {config['student_lr_schedule']!r}")
    _check(config["student_head"] in ("", "v"), f"student_head must be \"\" or v, got {config['student_head']!r}")
    _check(config["device"] in ("auto", "cpu", "cuda"), f"device must be auto, cpu or cuda, got {config['device']!r}")
    model_id = config["name"] or os.path.basename(os.path.normpath(out_dir))
    _check(ID_PATTERN.match(model_id), f"model id {model_id!r} must match {ID_PATTERN.pattern}")
    _check(os.path.basename(os.path.normpath(out_dir)) == model_id,
           f"--out must be a folder named after the model id ({model_id}); the registry requires it")
    for key in ("clip_path", "vae_path"):
        _check(os.path.isfile(config[key]), f"{key}: no checkpoint at {config[key]}")
    teacher_path = resolve_teacher(config["backbone"])
    try:
        teacher_checkpoint = load_checkpoint(teacher_path)
        backbone_name = teacher_checkpoint.get("backbone") or teacher_checkpoint["config"]["backbone"]
    except Exception as error:  # any unreadable file is a bad job, not a crash
        raise ConfigError(f"cannot read the teacher checkpoint {teacher_path}: {error}") from None
    _check(backbone_name in BACKBONES, f"{teacher_path} is not a teacher checkpoint of a known backbone")
    _check(not config["student_head"] or backbone_name == "unet-eps",
           f"student_head v needs a unet-eps teacher (a unet-v student is that UNet read as v), not {backbone_name}")
    settings = dict(config, guidance=resolve_guidance(config, backbone_name), name=model_id,
                    run_dir=config["run_dir"] or os.path.join("runs", "distill", model_id),
                    teacher_checkpoint={"path": teacher_path, "backbone": backbone_name,
                                        "sha256": package.file_entry(teacher_path)["sha256"]})
    settings["guidance_mode"] = settings["guidance"]["mode"]
    _check(not (config["init_from"] and config["warm_start_steps"]),
           "warm_start_steps starts a student from its teacher; init_from continues a distilled one: not both")
    _check(not (config["lora_warmup_steps"] and config["warm_start_steps"]),
           "the warm start trains the LoRA teacher alongside the student already; lora_warmup_steps: not both")
    if config["init_from"]:
        check_init_from(config["init_from"], settings)
    check_resumable(settings)
    return settings


def check_init_from(path: str, settings) -> None:
    """init_from must be a distillation of the same teacher with the same student head: its checkpoint (with LoRA of
    the same rank) or its student."""
    _check(os.path.isfile(path), f"init_from: no checkpoint at {path}")
    try:
        checkpoint = load_checkpoint(path)
        config = checkpoint["config"]
        teacher, rank = config["teacher_checkpoint"]["sha256"], config["lora_rank"]
    except Exception as error:  # a teacher checkpoint, an unreadable file: a bad job
        raise ConfigError(f"init_from: {path} is not a distillation (<run_dir>/ckpt.pt or a student.pt): {error!r}") \
            from None
    _check(teacher == settings["teacher_checkpoint"]["sha256"],
           f"init_from: {path} distilled another teacher than {settings['teacher_checkpoint']['path']}")
    head = config.get("student_head", "")
    _check(head == settings["student_head"],
           f"init_from: {path} has student_head {head!r}, this run {settings['student_head']!r}")
    _check(not holds_lora(checkpoint) or rank == settings["lora_rank"],
           f"init_from: {path} has LoRA rank {rank}, this run {settings['lora_rank']}")


def holds_lora(checkpoint: dict) -> bool:
    """A training checkpoint (<run_dir>/ckpt.pt: student, LoRA and optimizers) rather than a student.pt."""
    return "optimizer" in checkpoint


def start_from_distillation(path: str, weights: nn.Module) -> dict:
    """Load the distillation at `path` into the run (a checkpoint's student and LoRA weights, or a student's weights,
    the LoRA left as initialised); its lineage entry."""
    checkpoint = load_checkpoint(path)
    if holds_lora(checkpoint):
        weights.load_state_dict(checkpoint["model"])
    else:
        weights.student.load_state_dict(checkpoint["model"])  # float16 as stored, into the float32 student
    return package.lineage_entry(path, checkpoint)


def check_resumable(settings):
    """A run_dir that holds another run's checkpoint may only be resumed with the same recipe."""
    path = os.path.join(settings["run_dir"], "ckpt.pt")
    if not os.path.exists(path):
        return
    changed = [key for key in config_changes(load_checkpoint(path)["config"], settings, DEFAULTS)
               if key not in RESUMABLE_CHANGES]
    _check(not changed, f"{settings['run_dir']} holds a run with a different recipe ({', '.join(changed)} differ); "
                        "use another --out or run_dir, or delete it")


def parse_command_line(argv):
    """(config files, --key=value overrides, --out) of `python -m trainer.distill`."""
    parser = argparse.ArgumentParser(description="Distil a teacher into a one-step student (SB / PG-SB) and export "
                                                 "it as a model package.", allow_abbrev=False)
    parser.add_argument("--config", action="append", default=[], help="JSON config (job) file; repeatable")
    parser.add_argument("--out", required=True, help="the package folder, models/<id>")
    args, overrides = parser.parse_known_args(argv)
    return args.config, overrides, args.out


# ----------------------------------------------------------------------------- the method


def vsd_start(config) -> int:
    """The run's first VSD step: after the warm start or the LoRA warm-up (at most one of them is set)."""
    return config["warm_start_steps"] + config["lora_warmup_steps"]


def student_learning_rate(config, step: int, total: int) -> float:
    """The student's learning rate for step `step` (0-based) of `total`: warm_start_lr in the warm start, then
    student_lr, or under the cosine schedule student_lr * (1 + cos(pi * k / K)) / 2 at VSD step k of K, a function of
    the step alone, so the same after a resume (in a LoRA warm-up the student rests: the first VSD step's)."""
    if step < config["warm_start_steps"]:
        return config["warm_start_lr"]
    if config["student_lr_schedule"] == "constant":
        return config["student_lr"]
    first = vsd_start(config)
    return config["student_lr"] * 0.5 * (1.0 + math.cos(math.pi * max(step - first, 0) / (total - first)))


def guidance_scales(guidance: dict, seed: int, step: int):
    """(kappa_teacher, kappa_lora) of a step: one draw u ~ U(min, max) from (seed, step), shared as the mode says."""
    mode = guidance["mode"]
    if mode == "fixed":
        return guidance["fixed"], guidance["fixed"]
    drawn = random.Random(f"kappa {seed} {step}").uniform(guidance["min"], guidance["max"])
    if mode == "random":
        return drawn, drawn
    if mode == "random-teacher-only":
        return drawn, guidance["fixed"]
    if mode == "random-lora-only":
        return guidance["fixed"], drawn
    raise ValueError(f"unknown guidance mode {mode!r}")


def step_prompts(seed: int, step: int, rank: int, world_size: int, batch_size: int) -> list:
    """The captions of one rank's batch at one step (only captions: sample_scene skips rendering)."""
    start = distributed.batch_start(step, rank, world_size, batch_size)
    return [shapes.sample_scene(seed, start + i)[1] for i in range(batch_size)]


def training_negative(caption: str, rng: random.Random) -> str:
    """NASA-T's negative prompt for a training caption, of the two kinds eval_sets.negative_pairs evaluates: an
    attribute the caption leaves free ("red" for "a circle on a white background", "square" for "two shapes"), or one
    of the two objects a caption names ("blue square" for "a red circle and a blue square", where no phrase of one
    could describe the other); "" (no negative) for 1 - NEGATIVE_SHARE of the captions and for a caption that leaves
    nothing free. A removal negative names what the caption asks for; the teachers' CFG with it as the unconditional
    branch still removes it (docs/results.md, Negative prompts: the teachers' CFG-negative column, half of whose pairs
    are removals)."""
    if rng.random() >= NEGATIVE_SHARE:
        return ""
    named = judge.parse_caption(caption)
    if named.count == 2 and named.objects:
        first, second = named.objects
        choices = [" ".join(filter(None, (negated.color, negated.shape))) for negated, kept in ((first, second),
                                                                                               (second, first))
                   if (negated.color and kept.color and negated.color != kept.color)
                   or (negated.shape and kept.shape and negated.shape != kept.shape)]
    else:
        described = named.objects[0] if named.objects else judge.ObjectSpec()
        choices = ([] if described.color else list(shapes.COLORS)) + ([] if described.shape else list(shapes.SHAPES))
    choices += [] if named.background else list(shapes.BACKGROUNDS)
    return rng.choice(choices) if choices else ""


def step_negatives(seed: int, step: int, rank: int, world_size: int, prompts: list) -> list:
    """The NASA-T negative prompts of one rank's batch (prompts = step_prompts of the same step): a function of the
    seed and each sample's stream index, so the same whichever process draws them, and after a resume."""
    start = distributed.batch_start(step, rank, world_size, len(prompts))
    return [training_negative(caption, random.Random(f"negative {seed} {start + i}"))
            for i, caption in enumerate(prompts)]


def nasa_training_alpha(scale: float, seed: int, step: int) -> float:
    """NASA-T's alpha of a step, ~ U(0, scale), from (seed, step)."""
    return random.Random(f"nasa {seed} {step}").uniform(0.0, scale)


def nasa_inputs(text_encoder, negatives: list, empty_states, alpha: float) -> dict:
    """Distillation.step's NASA-T arguments: the negatives' text states, rows without one exactly empty_states (the
    plain unconditional branch), and the student's NASA scale per row, alpha where there is a negative, else 0."""
    has_negative = torch.tensor([bool(negative) for negative in negatives], device=empty_states.device)
    return {"negative_states": torch.where(has_negative[:, None, None], text_encoder(negatives), empty_states),
            "nasa_scale": has_negative.to(empty_states.dtype) * alpha}


def guided_eps(model, x_t, t, text_states, uncond_states, kappa: float) -> torch.Tensor:
    """eps of the CFG prediction pred("") + kappa (pred(y) - pred("")), from the model's own parameterization."""
    prediction = diffusion.cfg_prediction(model, x_t, t, text_states, uncond_states, kappa)
    return diffusion.x0_and_eps(model.args.parameterization, prediction, x_t, t)[1]


def vsd_gradient(eps_teacher, eps_lora, t) -> torch.Tensor:
    """w(t) (eps_teacher - eps_lora) with w = sigma_t^2 = 1 - alpha_bar_t; NaN and inf become 0."""
    sigma_squared = (1.0 - diffusion.ALPHAS_CUMPROD.to(t.device)[t]).to(eps_teacher.dtype).reshape(-1, 1, 1, 1)
    return torch.nan_to_num(sigma_squared * (eps_teacher - eps_lora), nan=0.0, posinf=0.0, neginf=0.0)


class OneStepStudent(nn.Module):
    """The student's forward for DDP: noise (B, C, h, w), text states (B, L, D) (and NASA-T's negative states
    (B, L, D) at nasa_scale (B,)) -> x0 latent (B, C, h, w)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, noise, text_states, negative_states=None, nasa_scale=None):
        return diffusion.one_step_generate(self.model, noise, text_states, negative_states, nasa_scale)


class DistillWeights(nn.Module):
    """What the checkpoint holds: the student (student.*) and the LoRA adapters (lora.*), not the frozen teachers."""

    def __init__(self, student: nn.Module, adapters: nn.ModuleDict):
        super().__init__()
        self.student = student
        self.lora = adapters


class Optimizers:
    """Several optimizers as one for TrainingCheckpoints (state_dict / load_state_dict by name)."""

    def __init__(self, **optimizers):
        self.optimizers = optimizers

    def state_dict(self):
        return {name: optimizer.state_dict() for name, optimizer in self.optimizers.items()}

    def load_state_dict(self, state):
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state[name])


class Distillation:
    """The four models and two optimizers of VSD, and one training step."""

    def __init__(self, teacher: nn.Module, config: dict, dist_info):
        self.teacher = teacher  # psi, frozen
        self.student = copy.deepcopy(teacher).requires_grad_(True).train()  # f_theta, starts as the teacher
        if config["student_head"]:  # the same network, its output read as v: a unet-v student (backbone_of)
            self.student.args = dataclasses.replace(self.student.args, parameterization=config["student_head"])
        if config["nasa_training_scale"]:
            set_nasa(self.student, True)  # processors only: the weights, and so the checkpoint, are unchanged
        self.lora_teacher = copy.deepcopy(teacher)  # pi: the teacher plus LoRA
        self.adapters = add_lora(self.lora_teacher, config["lora_rank"], config["lora_alpha"])
        self.weights = DistillWeights(self.student, self.adapters)
        self.student_optimizer = torch.optim.AdamW(self.student.parameters(), lr=config["student_lr"],
                                                   weight_decay=0.0)
        self.lora_optimizer = torch.optim.AdamW(self.adapters.parameters(), lr=config["lora_lr"], weight_decay=0.0)
        self.optimizers = Optimizers(student=self.student_optimizer, lora=self.lora_optimizer)
        self.config = config
        self.dist_info = dist_info
        self.student_forward = OneStepStudent(self.student)
        self.lora_loss = DenoisingLoss(self.lora_teacher, min_snr_gamma=0.0)  # MSE on the teacher's own target

    def wrap(self):
        """DDP on the student and the LoRA teacher (after a resume has loaded their weights)."""
        self.student_forward = distributed.wrap(self.student_forward, self.dist_info)
        self.lora_loss = distributed.wrap(self.lora_loss, self.dist_info)

    def step(self, text_states, empty_states, kappa_teacher: float, kappa_lora: float, negative_states=None,
             nasa_scale=None, regression=None) -> dict:
        """One student step, then lora_steps LoRA steps on the student's samples (the first on this step's, the next
        on fresh ones of the updated student). text_states (B, L, D), empty_states (1, L, D). NASA-T:
        negative_states (B, L, D), the student's NASA negative at nasa_scale (B,) and both teachers' unconditional
        branch (a row without a negative prompt holds "" at scale 0). regression: (noise, text_states, latents) of
        teacher samples, whose MSE to the student's images, times regression_weight, joins the student's loss."""
        batch, device = text_states.shape[0], text_states.device
        negative = () if negative_states is None else (negative_states, nasa_scale)
        noise = self.student_noise(text_states)
        x0 = self.student_forward(noise, text_states, *negative)  # (B, C, h, w), with gradient
        t = torch.randint(STUDENT_T_RANGE[0], STUDENT_T_RANGE[1] + 1, (batch,), device=device)
        with torch.no_grad():
            x_t = diffusion.q_sample(x0.detach(), t, torch.randn_like(x0))
            uncond = empty_states.expand(batch, -1, -1) if negative_states is None else negative_states
            eps_teacher = guided_eps(self.teacher, x_t, t, text_states, uncond, kappa_teacher)
            eps_lora = guided_eps(self.lora_teacher, x_t, t, text_states, uncond, kappa_lora)
            grad = vsd_gradient(eps_teacher, eps_lora, t)
        student_loss = 0.5 * F.mse_loss(x0, (x0 - grad).detach())
        extra = {}
        if regression is not None:
            regression_loss = self.regression_loss(*regression)
            extra["loss_regression"] = regression_loss.item()
            grad_norm = self.student_update(student_loss + self.config["regression_weight"] * regression_loss)
        else:
            grad_norm = self.student_update(student_loss)  # then the LoRA teacher, on the same samples
        return {"loss_student": student_loss.item(), **extra,
                "loss_lora": self.lora_steps(x0, noise, text_states, empty_states, negative),
                "student_grad_norm": grad_norm}

    def regression_loss(self, noise, text_states, latents):
        """MSE of the student's images from `noise` (B, C, h, w) and text_states (B, L, D) to the teacher's samples
        `latents` for the same noise and prompts."""
        return F.mse_loss(self.student_forward(noise, text_states), latents)

    def warm_step(self, noise, text_states, latents, empty_states) -> dict:
        """One warm-start step: the student's MSE to the teacher's samples `latents` from `noise` (B, C, h, w) and
        text_states (B, L, D), then the LoRA steps on the student's samples as in a VSD step, so that the LoRA
        teacher follows the student from the start."""
        x0 = self.student_forward(noise, text_states)
        regression_loss = F.mse_loss(x0, latents)
        grad_norm = self.student_update(regression_loss)
        return {"loss_regression": regression_loss.item(), "loss_lora": self.lora_steps(x0, noise, text_states,
                                                                                         empty_states, ()),
                "student_grad_norm": grad_norm}

    def lora_warmup_step(self, text_states, empty_states) -> dict:
        """One LoRA warm-up step: the LoRA steps of a VSD step on samples of the student, which does not move."""
        noise = self.student_noise(text_states)
        with torch.no_grad():
            x0 = self.student_forward(noise, text_states)
        return {"loss_lora": self.lora_steps(x0, noise, text_states, empty_states, ())}

    def student_noise(self, text_states):
        """The student's input noise z (B, C, h, w) for text_states (B, L, D)."""
        args = self.student.args
        return torch.randn(text_states.shape[0], args.in_channels, args.sample_size, args.sample_size,
                           device=text_states.device)

    def student_update(self, loss) -> float:
        """One clipped optimizer step of the student on `loss`; the gradient norm before clipping."""
        self.student_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.student.parameters(), self.config["student_grad_clip"])
        self.student_optimizer.step()
        return grad_norm.item()

    def lora_steps(self, x0, noise, text_states, empty_states, negative) -> float:
        """lora_steps LoRA steps: the first on the student's samples x0 of this step, the next on fresh ones of the
        updated student; their mean loss."""
        lora_losses = [self.lora_step(x0.detach(), text_states, empty_states)]
        for _ in range(self.config["lora_steps"] - 1):
            with torch.no_grad():
                samples = self.student_forward(torch.randn_like(noise), text_states, *negative)
            lora_losses.append(self.lora_step(samples, text_states, empty_states))
        return sum(lora_losses) / len(lora_losses)

    def lora_step(self, samples, text_states, empty_states) -> float:
        """One update of the LoRA teacher: its denoising loss on the student's samples (B, C, h, w), with
        lora_caption_dropout of the prompts dropped to ""; returns the loss."""
        batch, device = samples.shape[0], samples.device
        t = torch.randint(0, diffusion.NUM_TRAIN_TIMESTEPS, (batch,), device=device)
        dropped = torch.rand(batch, device=device) < self.config["lora_caption_dropout"]
        lora_states = torch.where(dropped[:, None, None], empty_states, text_states)
        lora_loss = self.lora_loss(samples, lora_states, t, torch.randn_like(samples))
        self.lora_optimizer.zero_grad(set_to_none=True)
        lora_loss.backward()
        self.lora_optimizer.step()
        return lora_loss.item()


# ----------------------------------------------------------------------------- evaluation and export


class FidProbe:
    """FID (and the judge's alignment on the same images) of the current student, on the master process."""

    def __init__(self, config, text_encoder):
        self.text_encoder = text_encoder
        self.vae, self.scaling_factor = load_vae(config["vae_path"], text_encoder.device)
        self.reference = FidReference(load_clip(config["clip_path"]), config["eval_n"])

    def __call__(self, student) -> dict:
        sampler = StudentSampler(student, self.text_encoder, self.vae, self.scaling_factor)
        images = sampler.images(self.reference.prompts, self.reference.seeds)
        return {"fid": self.reference.fid(images), "align": alignment(images, self.reference.prompts)["all"]}


class BestStudent:
    """keep = "best": the student (float16, as stored) of the probe with the lowest FID so far, in
    <run_dir>/best-student.pt, where a resumed run finds it again."""

    def __init__(self, run_dir: str, fresh: bool):
        self.path = os.path.join(run_dir, "best-student.pt")
        if fresh and os.path.exists(self.path):  # left by an earlier run whose checkpoint is gone
            os.remove(self.path)
        self.step, self.fid = 0, math.inf
        if os.path.exists(self.path):
            saved = load_checkpoint(self.path)
            self.step, self.fid = saved["step"], saved["metrics"]["fid"]

    def offer(self, student, step: int, metrics: dict):
        if metrics["fid"] < self.fid:
            save_checkpoint(self.path, model=half_weights(student.state_dict()), step=step, metrics=metrics)
            self.step, self.fid = step, metrics["fid"]

    def restore(self, student) -> int:
        """Loads the kept weights into `student`; returns their step."""
        student.load_state_dict(load_checkpoint(self.path)["model"])
        return self.step


def write_student(settings, student, step: int, metrics: dict, init) -> str:
    """<run_dir>/student.pt in the format sample.load_teacher and export.load_models read, and student.json (its
    metrics, which export puts in model.json); init: the lineage of the run init_from continued, or None."""
    path = os.path.join(settings["run_dir"], "student.pt")
    save_checkpoint(path, backbone=backbone_of(student), model_args=student.model_args(),
                    model=half_weights(student.state_dict()), step=step, config=settings, init=init)
    with open(os.path.splitext(path)[0] + ".json", "w") as f:
        json.dump({"backbone": backbone_of(student), "method": settings["method"], "steps": step,
                   "total_steps": step + package.earlier_steps(init), "recipe": settings, "init": init,
                   "metrics": metrics}, f, indent=2)
        f.write("\n")
    return path


def export_student(settings, student_path: str, out_dir: str) -> dict:
    """The model package of the student, through export.py."""
    models = export.load_models(student_path, settings["clip_path"], settings["vae_path"])
    display_name = export.default_display_name(models.backbone, settings["method"])
    if settings["guidance_mode"] not in ("fixed", "random"):
        display_name += f" (ablation: {settings['guidance_mode']})"
    if settings["student_head"]:
        teacher_backbone = settings["teacher_checkpoint"]["backbone"]
        display_name += f" (a {settings['student_head']} head on the {teacher_backbone} teacher)"
    fields = export.manifest_fields(models, settings["name"], display_name, settings["method"],
                                    export.default_teacher_id(settings["teacher_checkpoint"]["backbone"]),
                                    settings["nasa_default_scale"],
                                    settings["nasa_max_scale"])
    return export.export_package(models, out_dir, fields)


# ----------------------------------------------------------------------------- the run


def vsd_step(distillation, settings, text_encoder, empty_states, step: int, dist_info, pairs=None):
    """One VSD step on the step's training prompts (and, with regression_weight, a batch of the teacher `pairs`):
    (losses, the step's kappas and NASA-T alpha for the log)."""
    prompts = step_prompts(settings["seed"], step, dist_info.rank, dist_info.world_size, settings["batch_size"])
    kappa_teacher, kappa_lora = guidance_scales(settings["guidance"], settings["seed"], step)
    scales, nasa = {"kappa": kappa_teacher, "kappa_lora": kappa_lora}, {}
    if settings["nasa_training_scale"]:
        negatives = step_negatives(settings["seed"], step, dist_info.rank, dist_info.world_size, prompts)
        scales["nasa_alpha"] = nasa_training_alpha(settings["nasa_training_scale"], settings["seed"], step)
        nasa = nasa_inputs(text_encoder, negatives, empty_states, scales["nasa_alpha"])
    regression = None
    if settings["regression_weight"]:
        pair_prompts, noise, latents = pairs.batch(settings["seed"], step, dist_info.rank, dist_info.world_size,
                                                   settings["batch_size"], empty_states.device)
        regression = (noise, text_encoder(pair_prompts), latents)
    losses = distillation.step(text_encoder(prompts), empty_states, kappa_teacher, kappa_lora, **nasa,
                               regression=regression)
    return losses, scales


def log_message(text):
    """Human messages go to stderr: stdout carries the progress JSON lines."""
    print(text, file=sys.stderr, flush=True)


def run(settings, out_dir: str) -> int:
    cpu_threads.use(settings["threads"])
    dist_info = distributed.setup(settings["device"])
    device = dist_info.device
    teacher = load_teacher(settings["teacher_checkpoint"]["path"], device)
    text_encoder = TextEncoder(settings["clip_path"], device)
    empty_states = text_encoder.empty()  # (1, L, D)
    probe = FidProbe(settings, text_encoder) if dist_info.is_master else None  # builds models: before seeding

    torch.manual_seed(settings["seed"])  # the LoRA init: the same on every rank
    distillation = Distillation(teacher, settings, dist_info)
    checkpoints = TrainingCheckpoints(settings["run_dir"], distillation.weights, distillation.optimizers,
                                      distillation.student.args, settings, dist_info,
                                      every_s=settings["checkpoint_every_s"],
                                      stop_signals=(signal.SIGTERM, signal.SIGINT), extra={"init": None},
                                      defaults=DEFAULTS)
    torch.manual_seed(settings["seed"] + 1 + dist_info.rank)  # each rank its own noise stream
    step = start_step = checkpoints.resume()
    if step == 0 and settings["init_from"]:
        checkpoints.extra["init"] = start_from_distillation(settings["init_from"], distillation.weights)
    best = BestStudent(settings["run_dir"], fresh=step == 0) if settings["keep"] == "best" and probe else None
    distillation.wrap()
    total = settings["steps"]
    log = ProgressLog(os.path.join(settings["run_dir"], "progress.jsonl"), total, dist_info.is_master,
                      start_step=step, json_stdout=True)
    if dist_info.is_master:
        log_message(f"distilling {settings['teacher_checkpoint']['path']} ({settings['teacher_checkpoint']['backbone']}"
                    f", {sum(p.numel() for p in teacher.parameters()) / 1e6:.2f}M parameters) with "
                    f"{settings['method']} {settings['guidance']}, LoRA rank {settings['lora_rank']} "
                    f"({sum(p.numel() for p in distillation.adapters.parameters()) / 1e6:.3f}M), world size "
                    f"{dist_info.world_size}, device {device}, run dir {settings['run_dir']}")

    # the budget's clock includes the warm start or LoRA warm-up; its seconds per step are measured on VSD steps
    budget = TimeBudget(settings["time_budget_s"], max(step, vsd_start(settings)),
                        agree=lambda total: round(distributed.all_reduce_mean(total, dist_info)))
    pairs = None
    if step < settings["warm_start_steps"] or settings["regression_weight"]:
        progress = (lambda done, n: log_message(f"warm start: teacher samples {done}/{n}")) if dist_info.is_master \
            else None
        pairs = warm_start.load_or_draw_pairs(
            os.path.join(settings["run_dir"], "warm-start-pairs.pt"), teacher, text_encoder, settings["seed"],
            settings["warm_start_pairs"], settings["teacher_checkpoint"]["sha256"], save=dist_info.is_master,
            progress=progress)
    window, window_started = [], time.time()
    final_metrics = None  # the probe at the last step
    while step < total:
        for group in distillation.student_optimizer.param_groups:
            group["lr"] = student_learning_rate(settings, step, total)
        if step < settings["warm_start_steps"]:
            prompts, noise, latents = pairs.batch(settings["seed"], step, dist_info.rank, dist_info.world_size,
                                                  settings["batch_size"], device)
            losses, scales = distillation.warm_step(noise, text_encoder(prompts), latents, empty_states), {}
        elif step < settings["lora_warmup_steps"]:
            prompts = step_prompts(settings["seed"], step, dist_info.rank, dist_info.world_size, settings["batch_size"])
            losses, scales = distillation.lora_warmup_step(text_encoder(prompts), empty_states), {}
        else:
            losses, scales = vsd_step(distillation, settings, text_encoder, empty_states, step, dist_info, pairs)
        for key, value in losses.items():
            if key.startswith("loss_") and not math.isfinite(value):
                raise DistillError(f"{key} is {value} at step {step + 1}: stopping (lower student_lr or "
                                   "lora_lr; the last checkpoint is in run_dir)")
        window.append(losses)
        step += 1
        settings["steps"] = total = log.total = budget.fit(step, total)
        evaluation_due = (settings["eval_every"] and step % settings["eval_every"] == 0) or step == total
        if step == total:  # the student is stored in float16 (write_student): the last evaluation is of that model
            distillation.student.load_state_dict(half_weights(distillation.student.state_dict()))
        if step % settings["log_every"] == 0 or evaluation_due:  # the same steps on every rank (all_reduce)
            means = {}
            for key in dict.fromkeys(key for losses in window for key in losses):  # a window may span the warm start
                values = [losses[key] for losses in window if key in losses]
                means[key] = distributed.all_reduce_mean(sum(values) / len(values), dist_info)
            record = dict(means, **scales, s_per_step=(time.time() - window_started) / len(window))
            if probe and evaluation_due:
                final_metrics = probe(distillation.student)
                record.update(final_metrics)
                if best:
                    best.offer(distillation.student, step, final_metrics)
            log.log(step, **record)
            window, window_started = [], time.time()
        if checkpoints.after_step(step, final=step == total):
            return EXIT_CODES.get(checkpoints.stop.signal_name, 143)
    distributed.cleanup()
    if dist_info.is_master:
        if best and best.step != step:  # an earlier probe's student: evaluate it again as stored (float16)
            step = best.restore(distillation.student)
            metrics = probe(distillation.student)
        elif step > start_step:  # evaluated at its last step, rounded as stored
            metrics = final_metrics
        else:  # resumed a finished run: evaluate the stored form of what the checkpoint holds
            distillation.student.load_state_dict(half_weights(distillation.student.state_dict()))
            metrics = probe(distillation.student)
        final = {"fid": {"n": settings["eval_n"], "value": metrics["fid"]}, "align_fid_prompts": metrics["align"]}
        student_path = write_student(settings, distillation.student, step, final, checkpoints.extra["init"])
        if settings["write_package"]:
            manifest = export_student(settings, student_path, out_dir)
            event = {"event": "exported", "model_id": manifest["id"], "package": out_dir, "student": student_path}
        else:
            event = {"event": "student", "student": student_path}
        print(json.dumps(dict(event, steps=step, metrics=final)), flush=True)
    distributed.finish(dist_info)  # under torchrun: exits here
    return 0


def main(argv):
    config_files, overrides, out_dir = parse_command_line(argv)
    try:
        settings = validate(configure(DEFAULTS, config_files + overrides), out_dir)
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return 2
    try:
        return run(settings, out_dir)
    except (DistillError, NonFiniteMetricError) as error:
        print(f"distill failed: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
