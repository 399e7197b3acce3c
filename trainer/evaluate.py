"""One row of the results table: a one-step student (from its package) or a teacher (DDIM + CFG), measured the same way.

    /usr/bin/python3 -m trainer.evaluate --package models/shapes-unet-eps-pgsb [--nasa-scales=0,0.25,0.5,1]
    /usr/bin/python3 -m trainer.evaluate --teacher models/base/teacher-unet-eps.pt --cfg 4.5 --steps 25
    /usr/bin/python3 -m trainer.evaluate --student runs/distill/<id>/student.pt     (a student without its package)
    ... [--nasa-scale 0.5] [--n 200] [--fid-n 1000] [--images-per-pair 10] [--only alignment,spread]
        [--out results/row.json]

Prints one JSON object:
- alignment: the pixel judge on eval_sets.alignment_prompts(n), one image per prompt (noise seed ALIGNMENT_SEED + i),
  one-object and two-object prompts separately, and the failures by first unmet requirement (sample.alignment);
- clip_score: 100 x the mean cosine of tiny-CLIP image and prompt embeddings of those images;
- fid: trainer/fid.py on fid-n images (the real images' captions as prompts);
- negative: eval_sets.negative_pairs(), images_per_pair images each (seeds NEGATIVE_SEED + i), the success rate
  (negated attribute absent, the paper's number), kept (the prompt's attributes still there) and both, per NASA
  scale (0 = NASA off), over all pairs and per kind (under-specified, removal); chosen_nasa_scale is the candidate
  for model.json's nasa.default_scale (choose_nasa_scale).
  A teacher also gets cfg_negative: the negative prompt as CFG's unconditional branch, its usual negative prompt;
- spread: what the model draws where the prompt leaves a background, color or size free (trainer/spread.py);
- ms_per_image: text encoder + generation + VAE decoder, PyTorch on this machine's CPU threads, at the evaluation
  batch size and at batch 1.
A package's student runs in PyTorch from the checkpoint its model.json records (training.inputs.student, e.g.
runs/distill/<id>/student.pt, checked against its sha256) through trainer.generator.Generator, the module that
generator.onnx is exported from, so what is measured is what the service serves.
"""
import argparse
import copy
import json
import os
import sys
import time

import numpy as np
import torch

from trainer import cpu_threads, diffusion, eval_sets, judge, package, spread
from trainer.checkpoint import load_checkpoint
from trainer.eval_clip import embed_images, embed_texts
from trainer.fid import FidReference
from trainer.generator import Generator
from trainer.models.attention import set_nasa
from trainer.models.clip import load_clip
from trainer.models.vae import decode_latents, load_vae
from trainer.sample import GRID_COLUMNS, GRID_PROMPTS, TextEncoder, alignment, backbone_of, load_teacher, save_grid

ALIGNMENT_SEED = 0  # noise seed of alignment image i: ALIGNMENT_SEED + i (as sample.evaluate_alignment)
NEGATIVE_SEED = 7000  # noise seed of negative-prompt image i: NEGATIVE_SEED + i
DEFAULT_NASA_SCALES = (0.0, 0.25, 0.5, 1.0)
KEPT_TOLERANCE = 0.05  # choose_nasa_scale: how much of the kept rate NASA may cost
LATENCY_IMAGES = 3  # images timed one by one for ms_per_image at batch 1
METRICS = ("alignment", "fid", "negative", "spread")  # --only chooses among them


class EvaluationError(RuntimeError):
    """A package or checkpoint that cannot be evaluated (no recorded student, a changed checkpoint)."""


class StudentSampler:
    """A one-step student as the service runs it: trainer.generator.Generator (NASA in every attn2, one call at
    t = 999, VAE decoder, uint8 pixels) on a copy of the student, since Generator switches its processors."""

    def __init__(self, student, text_encoder: TextEncoder, vae, scaling_factor: float, batch_size: int = 50):
        self.generator = Generator(copy.deepcopy(student), vae, scaling_factor).eval()
        self.text_encoder = text_encoder
        self.batch_size = batch_size
        args = student.args
        self.latent_shape = (args.in_channels, args.sample_size, args.sample_size)

    @torch.no_grad()
    def images(self, prompts, seeds, negatives=None, nasa_scale: float = 0.0) -> np.ndarray:
        """uint8 (N, 64, 64, 3): prompts[i] with noise seed seeds[i], negative prompt negatives[i] at nasa_scale."""
        negatives = negatives or [""] * len(prompts)
        device = self.text_encoder.device
        images = []
        for start in range(0, len(prompts), self.batch_size):
            end = min(start + self.batch_size, len(prompts))
            noise = diffusion.seeded_noise(seeds[start:end], self.latent_shape, device)
            scale = torch.full((end - start,), float(nasa_scale), device=device)
            images.append(self.generator(noise, self.text_encoder(prompts[start:end]),
                                         self.text_encoder(negatives[start:end]), scale).cpu().numpy())
        return np.concatenate(images)


class NasaConditioned(torch.nn.Module):
    """A NASA-enabled teacher with its negative branch bound, so that DDIM + CFG can call it as model(x, t, states).

    CFG stacks the conditional and unconditional rows ([x; x]); the negative states repeat to match, so NASA steers
    both branches."""

    def __init__(self, model, negative_states: torch.Tensor, nasa_scale: float):
        super().__init__()
        self.model = model
        self.args = model.args
        self.negative_states = negative_states  # (B, L, D)
        self.nasa_scale = nasa_scale

    def forward(self, x, t, states):
        repeats = x.shape[0] // self.negative_states.shape[0]
        negative = self.negative_states.repeat(repeats, 1, 1)
        scale = torch.full((x.shape[0],), self.nasa_scale, device=x.device)
        return self.model(x, t, states, negative, scale)


class TeacherSampler:
    """A teacher: deterministic DDIM with CFG (empty-prompt unconditional branch, or the negative prompt with
    negative_as_uncond), optionally with NASA in every attn2."""

    def __init__(self, teacher, text_encoder: TextEncoder, vae, scaling_factor: float, guidance: float, steps: int,
                 batch_size: int = 50):
        self.teacher = teacher
        self.nasa_teacher = copy.deepcopy(teacher)
        set_nasa(self.nasa_teacher, True)
        self.text_encoder, self.vae, self.scaling_factor = text_encoder, vae, scaling_factor
        self.guidance, self.steps, self.batch_size = guidance, steps, batch_size
        args = teacher.args
        self.latent_shape = (args.in_channels, args.sample_size, args.sample_size)

    @torch.no_grad()
    def images(self, prompts, seeds, negatives=None, nasa_scale: float = 0.0,
               negative_as_uncond: bool = False) -> np.ndarray:
        device = self.text_encoder.device
        images = []
        for start in range(0, len(prompts), self.batch_size):
            end = min(start + self.batch_size, len(prompts))
            states = self.text_encoder(prompts[start:end])
            negative_states = self.text_encoder(negatives[start:end]) if negatives else None
            uncond = negative_states if negative_as_uncond else self.text_encoder.empty()
            model = (NasaConditioned(self.nasa_teacher, negative_states, nasa_scale)
                     if negatives and nasa_scale else self.teacher)
            noise = diffusion.seeded_noise(seeds[start:end], self.latent_shape, device)
            latents = diffusion.ddim_sample(model, states, uncond, self.guidance, self.steps, noise=noise)
            images.append(decode_latents(self.vae, latents, self.scaling_factor))
        return np.concatenate(images)


def clip_score(clip, tokenizer, images: np.ndarray, prompts) -> float:
    """100 x the mean cosine similarity of each image's tiny-CLIP embedding with its prompt's."""
    image_embeds = embed_images(clip, images, 250)
    text_embeds = embed_texts(clip, tokenizer, list(prompts), 250)
    return float(100.0 * (image_embeds * text_embeds).sum(-1).mean())


def negative_rates(images: np.ndarray, pairs) -> dict:
    """Success (negated attribute absent), kept and both, over images made for `pairs` (one pair per image), and the
    same for each kind of pair (by_kind: under-specified, removal; with n, its number of images): the issue's targets
    are per kind."""
    outcomes = [eval_sets.negative_outcome(judge.read_image(image), pair) for image, pair in zip(images, pairs)]
    kinds = {}
    for outcome, pair in zip(outcomes, pairs):
        kinds.setdefault(pair["kind"], []).append(outcome)
    return dict(_rates(outcomes), by_kind={kind: dict(_rates(chosen), n=len(chosen)) for kind, chosen in kinds.items()})


def _rates(outcomes) -> dict:
    return {"success": float(np.mean([o["success"] for o in outcomes])),
            "kept": float(np.mean([o["kept"] for o in outcomes])),
            "success_and_kept": float(np.mean([o["success"] and o["kept"] for o in outcomes]))}


def choose_nasa_scale(by_scale: dict) -> float:
    """The candidate nasa.default_scale: the highest success rate among the scales whose kept rate is within
    KEPT_TOLERANCE of NASA off (scale 0); the smaller scale on ties."""
    baseline = by_scale[0.0]["kept"]
    allowed = [scale for scale, rates in by_scale.items() if rates["kept"] >= baseline - KEPT_TOLERANCE]
    return min(allowed, key=lambda scale: (-by_scale[scale]["success"], scale))


def evaluate_negative(sampler, images_per_pair: int, nasa_scales, teacher: bool) -> dict:
    pairs = [pair for pair in eval_sets.negative_pairs() for _ in range(images_per_pair)]
    prompts, negatives = [p["prompt"] for p in pairs], [p["negative"] for p in pairs]
    seeds = [NEGATIVE_SEED + i for i in range(len(pairs))]
    by_scale = {scale: negative_rates(sampler.images(prompts, seeds, negatives, scale), pairs)
                for scale in sorted({0.0, *nasa_scales})}
    result = {"pairs": len(eval_sets.negative_pairs()), "images_per_pair": images_per_pair,
              "by_nasa_scale": {str(scale): rates for scale, rates in by_scale.items()},
              "chosen_nasa_scale": choose_nasa_scale(by_scale)}
    if teacher:
        result["cfg_negative"] = negative_rates(sampler.images(prompts, seeds, negatives, negative_as_uncond=True),
                                                pairs)
    return result


def timed_images(sampler, prompts, seeds):
    """(images, ms per image) of one call."""
    started = time.perf_counter()
    images = sampler.images(prompts, seeds)
    return images, 1000.0 * (time.perf_counter() - started) / len(prompts)


def evaluate(sampler, clip, tokenizer, n: int, fid_n: int, images_per_pair: int, nasa_scales,
             teacher: bool, spread_seeds: int = 0, only=METRICS) -> dict:
    """The metrics of the results table for one sampler (StudentSampler or TeacherSampler): all, or those in `only`
    (alignment brings clip_score and ms_per_image, measured on its images)."""
    row = {}
    if "alignment" in only:
        prompts = eval_sets.alignment_prompts(n)
        images, ms_per_image = timed_images(sampler, prompts, [ALIGNMENT_SEED + i for i in range(n)])
        single = [timed_images(sampler, prompts[i:i + 1], [ALIGNMENT_SEED + i])[1]
                  for i in range(LATENCY_IMAGES + 1)]
        row.update(alignment={"n": n, **alignment(images, prompts)},
                   clip_score=clip_score(clip, tokenizer, images, prompts),
                   ms_per_image={"batch": sampler.batch_size, "value": ms_per_image,
                                 "batch_1": float(np.median(single[1:]))})  # the first single call warms up
    if "fid" in only:
        reference = FidReference(clip, fid_n)
        row["fid"] = {"n": fid_n, "value": reference.fid(sampler.images(reference.prompts, reference.seeds))}
    if "negative" in only:
        row["negative"] = evaluate_negative(sampler, images_per_pair, nasa_scales, teacher)
    if "spread" in only:
        row["spread"] = spread.measure(sampler, spread_seeds)
    row["threads"] = torch.get_num_threads()
    return row


def _existing_path(path: str) -> str:
    """A path recorded relative to the exporting process's working directory (the repo root, normally)."""
    if os.path.isfile(path):
        return path
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    candidate = os.path.join(repo_root, path)
    if os.path.isfile(candidate):
        return candidate
    raise EvaluationError(f"no file at {path} (recorded in the package's model.json)")


def package_inputs(package_dir: str) -> dict:
    """model.json and the student, CLIP and VAE checkpoints its training record names, each checked against the
    recorded sha256 (the package's ONNX graphs were exported from exactly these)."""
    with open(os.path.join(package_dir, "model.json")) as f:
        manifest = json.load(f)
    inputs = manifest["training"].get("inputs")
    if not inputs:
        raise EvaluationError(f"{package_dir}/model.json records no checkpoints (a random-init package?)")
    paths = {}
    for name in ("student", "clip", "vae"):
        path = _existing_path(inputs[name]["path"])
        if package.file_entry(path)["sha256"] != inputs[name]["sha256"]:
            raise EvaluationError(f"{path} changed since {package_dir} was exported (sha256 differs)")
        paths[name] = path
    return {"manifest": manifest, **paths}


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Evaluate a one-step student package or a teacher (one JSON row).")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--package", help="model package folder, e.g. models/<id> (its student runs in PyTorch)")
    source.add_argument("--teacher", help="teacher checkpoint, sampled with DDIM + CFG")
    source.add_argument("--student", help="student checkpoint (distill's student.pt), one step, with --clip/--vae; "
                                          "a teacher checkpoint: the student before distillation (teacher-init)")
    parser.add_argument("--cfg", type=float, default=4.5, help="--teacher: CFG scale")
    parser.add_argument("--steps", type=int, default=25, help="--teacher: DDIM steps")
    parser.add_argument("--clip", default="models/base/clip.pt", help="tiny CLIP (packages record theirs)")
    parser.add_argument("--vae", default="models/base/vae.pt", help="VAE (packages record theirs)")
    scales = parser.add_mutually_exclusive_group()
    scales.add_argument("--nasa-scale", type=float, help="NASA off and at this scale")
    scales.add_argument("--nasa-scales", default=",".join(str(s) for s in DEFAULT_NASA_SCALES),
                        help="comma-separated sweep of NASA scales (0 = off is always included)")
    parser.add_argument("--n", type=int, default=200, help="alignment prompts (eval_sets.alignment_prompts(n))")
    parser.add_argument("--fid-n", type=int, default=1000, help="images for FID")
    parser.add_argument("--images-per-pair", type=int, default=10, help="images per negative-prompt pair")
    parser.add_argument("--spread-seeds", type=int, default=0,
                        help="noise seeds per spread prompt (0: spread.SEEDS_PER_PROMPT, about 150 images per kind)")
    parser.add_argument("--only", default=",".join(METRICS),
                        help=f"comma-separated metrics to measure (default all: {','.join(METRICS)})")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu | cuda (ms_per_image is then the GPU's)")
    parser.add_argument("--out", help="also write the JSON row here")
    parser.add_argument("--grid", help="write a sample grid PNG here (sample.GRID_PROMPTS x 8 seeds)")
    parser.add_argument("--grid-only", action="store_true", help="with --grid: the grid, no evaluation")
    args = parser.parse_args(argv)
    args.scales = ([args.nasa_scale] if args.nasa_scale is not None
                   else [float(s) for s in args.nasa_scales.split(",") if s.strip()])
    if any(scale < 0 for scale in args.scales) or args.n < 2 or args.fid_n < 2 or args.images_per_pair < 1:
        parser.error("need NASA scales >= 0, --n >= 2, --fid-n >= 2 and --images-per-pair >= 1")
    args.only = tuple(metric for metric in args.only.split(",") if metric)
    if not args.only or set(args.only) - set(METRICS):
        parser.error(f"--only takes a comma-separated subset of {','.join(METRICS)}, got {args.only}")
    return args


def main(argv):
    args = parse_args(argv)
    cpu_threads.use(args.threads)
    if args.package:
        inputs = package_inputs(args.package)
        manifest = inputs["manifest"]
        clip_path, vae_path, student_path = inputs["clip"], inputs["vae"], inputs["student"]
        row = {"model": manifest["id"], "backbone": manifest["backbone"], "method": manifest["method"],
               "sampler": "one-step", "student_checkpoint": student_path,
               "steps": manifest["training"].get("total_steps", manifest["training"]["steps"])}
    elif args.student:
        clip_path, vae_path, student_path = args.clip, args.vae, args.student
        # distill's student.pt (backbone, config: the run's recipe), or a teacher: every student's step 0
        checkpoint = load_checkpoint(student_path)
        recipe = checkpoint["config"]
        row = {"model": student_path, "backbone": checkpoint["backbone"],
               "method": recipe.get("method", "teacher-init"), "sampler": "one-step"}
        if "guidance" in recipe:  # distilled: its recipe, and the step it was kept at (keep = best: not the last),
            # counting the steps of the runs it continued (init_from)
            steps = checkpoint["step"] + package.earlier_steps(checkpoint.get("init"))
            row.update(guidance=recipe["guidance"], steps=steps)
    else:
        clip_path, vae_path, student_path = args.clip, args.vae, None
    text_encoder = TextEncoder(clip_path, args.device)
    vae, scaling_factor = load_vae(vae_path, args.device)
    if student_path:
        sampler = StudentSampler(load_teacher(student_path, args.device), text_encoder, vae, scaling_factor,
                                 args.batch_size)
    else:
        teacher = load_teacher(args.teacher, args.device)
        row = {"model": args.teacher, "backbone": backbone_of(teacher), "method": "teacher",
               "sampler": f"ddim-{args.steps}", "cfg": args.cfg}
        sampler = TeacherSampler(teacher, text_encoder, vae, scaling_factor, args.cfg, args.steps, args.batch_size)
    if args.grid:
        prompts = [prompt for prompt in GRID_PROMPTS for _ in range(GRID_COLUMNS)]
        save_grid(sampler.images(prompts, list(range(len(prompts)))), prompts, GRID_COLUMNS, args.grid)
        print(f"wrote {args.grid}", file=sys.stderr)
        if args.grid_only:
            return
    row.update(evaluate(sampler, load_clip(clip_path), text_encoder.tokenizer, args.n, args.fid_n,
                        args.images_per_pair, args.scales, teacher=bool(args.teacher),
                        spread_seeds=args.spread_seeds, only=args.only))
    row["device"] = args.device
    text = json.dumps(row, indent=1)
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except EvaluationError as error:
        print(f"evaluation error: {error}", file=sys.stderr)
        sys.exit(2)
