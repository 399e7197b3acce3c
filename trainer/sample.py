"""Teachers: build and load them, sample them (25-step DDIM + CFG), judge their prompt alignment, export them.

    /usr/bin/python3 -m trainer.sample --ckpt runs/teacher-unet-eps/ckpt.pt --grid docs/samples/teacher-unet-eps.png
    /usr/bin/python3 -m trainer.sample --ckpt runs/teacher-unet-eps/ckpt.pt --eval --guidance=3,5,7.5
    /usr/bin/python3 -m trainer.sample --ckpt runs/teacher-unet-eps/ckpt.pt --eval --guidance=5 \\
        --export=models/base/teacher-unet-eps.pt

--eval: the judge's alignment on eval_sets.alignment_prompts(n), one image per prompt (noise seed = eval seed +
prompt index), reported for one-object and two-object prompts separately, at each guidance scale.
--export: the EMA weights as models/base/teacher-<backbone>.pt (backbone, model_args, model, step, config) and a
.json beside it with the recipe and the metrics of this --eval (the first guidance given is the one recorded as
the teacher's reference scale).
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
from PIL import Image, ImageDraw

from trainer import cpu_threads, diffusion, eval_sets, judge, package
from trainer.checkpoint import half_weights, load_checkpoint
from trainer.clip_tokenizer import DEFAULT_DIR, ClipTokenizer
from trainer.models.clip import load_clip
from trainer.models.dit import DiTArgs, PixArtTransformer2DModel
from trainer.models.unet import UNet2DConditionModel, UNetArgs
from trainer.models.vae import decode_latents, load_vae

# backbone name -> (model class, args class, parameterization), the three teachers of docs/design/shapes-world.md
BACKBONES = {
    "unet-eps": (UNet2DConditionModel, UNetArgs, "eps"),  # SD1.5-like
    "unet-v": (UNet2DConditionModel, UNetArgs, "v"),  # SD2.1-like
    "dit": (PixArtTransformer2DModel, DiTArgs, "eps"),  # PixArt-alpha-like
}
GRID_PROMPTS = [
    "a red circle on a white background", "a large blue square", "a small green triangle on a black background",
    "a yellow square on a gray background", "a purple circle and an orange triangle",
    "a blue triangle to the left of a red square", "two shapes on a black background", "a circle",
]
GRID_COLUMNS = 8  # seeds per grid prompt


def build_backbone(backbone: str, model_args: dict) -> torch.nn.Module:
    """A fresh backbone; model_args overrides the args dataclass defaults (parameterization comes from the name)."""
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; known: {', '.join(BACKBONES)}")
    model_class, args_class, parameterization = BACKBONES[backbone]
    args = args_class(**{**model_args, "parameterization": parameterization})
    return model_class(args)


def backbone_of(model: torch.nn.Module) -> str:
    """The backbone name of a model built by build_backbone."""
    if isinstance(model, PixArtTransformer2DModel):
        return "dit"
    return f"unet-{model.args.parameterization}"


def ema_weights(checkpoint: dict) -> dict:
    """The weights to sample with: the EMA of a training checkpoint (TeacherWeights), or an exported teacher's."""
    state = checkpoint["model"]
    if any(key.startswith("ema.") for key in state):
        return {key[len("ema."):]: value for key, value in state.items() if key.startswith("ema.")}
    return state


def load_teacher(path: str, device="cpu") -> torch.nn.Module:
    """A frozen teacher in eval mode, with EMA weights, from models/base/teacher-*.pt or a training checkpoint."""
    checkpoint = load_checkpoint(path, device)
    backbone = checkpoint["backbone"] if "backbone" in checkpoint else checkpoint["config"]["backbone"]
    model = build_backbone(backbone, checkpoint["model_args"])
    model.load_state_dict(ema_weights(checkpoint))
    model.requires_grad_(False)
    return model.to(device).eval()


class TextEncoder:
    """Prompts -> the frozen tiny CLIP's last_hidden_state (B, L, D), the teachers' conditioning."""

    def __init__(self, clip_path: str, device="cpu", tokenizer_dir: str = DEFAULT_DIR):
        self.text_model = load_clip(clip_path, device).text_model
        self.text_model.requires_grad_(False)
        self.tokenizer = ClipTokenizer.from_dir(tokenizer_dir)
        self.max_length = self.text_model.args.max_length
        self.device = device

    @torch.no_grad()
    def __call__(self, prompts) -> torch.Tensor:
        ids = torch.from_numpy(self.tokenizer(list(prompts), self.max_length)).to(self.device)
        return self.text_model(ids)

    def empty(self) -> torch.Tensor:
        """The unconditional branch of CFG: the empty prompt, (1, L, D)."""
        return self([""])


@torch.no_grad()
def generate(model, text_encoder: TextEncoder, vae, scaling_factor: float, prompts, guidance: float,
             seeds, steps: int = 25, batch_size: int = 50, clip_x0=None) -> np.ndarray:
    """uint8 images (N, 64, 64, 3) for prompts[i] with noise seed seeds[i], by DDIM + CFG."""
    uncond = text_encoder.empty()
    images = []
    for start in range(0, len(prompts), batch_size):
        chunk = list(prompts[start:start + batch_size])
        noise = diffusion.seeded_noise(seeds[start:start + len(chunk)],
                                       (model.args.in_channels, model.args.sample_size, model.args.sample_size),
                                       text_encoder.device)
        latents = diffusion.ddim_sample(model, text_encoder(chunk), uncond, guidance, steps, noise=noise,
                                        clip_x0=clip_x0)
        images.append(decode_latents(vae, latents, scaling_factor))
    return np.concatenate(images)


def alignment(images: np.ndarray, prompts) -> dict:
    """Judge alignment of images with their prompts, for one-object and two-object prompts separately, and why the
    others fail: failures[single|two] counts each image's first unmet requirement (judge.FAILURES order)."""
    verdicts = {1: [], 2: []}
    for image, prompt in zip(images, prompts):
        requirements = judge.parse_caption(prompt)
        verdicts[requirements.count].append(judge.failure(judge.read_image(image), requirements))
    single, two = ([verdict is None for verdict in verdicts[count]] for count in (1, 2))
    return {"single": float(np.mean(single)) if single else float("nan"), "n_single": len(single),
            "two": float(np.mean(two)) if two else float("nan"), "n_two": len(two),
            "all": float(np.mean(single + two)),
            "failures": {kind: {reason: verdicts[count].count(reason) for reason in judge.FAILURES
                                if reason in verdicts[count]}
                         for kind, count in (("single", 1), ("two", 2))}}


def evaluate_alignment(model, text_encoder, vae, scaling_factor, guidance: float, n: int = 200, steps: int = 25,
                       seed: int = 0, clip_x0=None) -> dict:
    """Alignment on the fixed eval_sets.alignment_prompts(n); image i uses noise seed `seed + i`."""
    prompts = eval_sets.alignment_prompts(n)
    images = generate(model, text_encoder, vae, scaling_factor, prompts, guidance,
                      [seed + i for i in range(n)], steps, clip_x0=clip_x0)
    return alignment(images, prompts)


def save_grid(images: np.ndarray, prompts, columns: int, path: str, scale: int = 2) -> None:
    """Rows of `columns` images, each row under its prompt, as a PNG."""
    size, band = images.shape[1] * scale, 14
    rows = len(images) // columns
    canvas = Image.new("RGB", (columns * size, rows * (size + band)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for row in range(rows):
        draw.text((2, row * (size + band) + 1), prompts[row * columns], fill=(0, 0, 0))
        for column in range(columns):
            tile = Image.fromarray(images[row * columns + column]).resize((size, size), Image.NEAREST)
            canvas.paste(tile, (column * size, row * (size + band) + band))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    canvas.save(path)


def export_teacher(checkpoint_path: str, out_path: str, metrics: dict) -> None:
    """models/base/teacher-<backbone>.pt (EMA weights only, stored in float16) and its .json record."""
    checkpoint = load_checkpoint(checkpoint_path)
    backbone = checkpoint.get("backbone") or checkpoint["config"]["backbone"]
    weights = half_weights(ema_weights(checkpoint))
    init = checkpoint.get("init")  # the teacher this run continued (train_teacher's init_from), if any
    torch.save({"backbone": backbone, "model_args": checkpoint["model_args"], "model": weights,
                "step": checkpoint["step"], "config": checkpoint["config"], "init": init}, out_path)
    config = checkpoint["config"]
    # the latent space and the conditioning the teacher was trained in: it only works with these exact encoders
    encoders = {name: {"path": config[key], "sha256": package.file_entry(config[key])["sha256"]}
                for name, key in (("vae", "vae_path"), ("clip", "clip_path"))}
    record = {"backbone": backbone, "parameterization": BACKBONES[backbone][2], "model_args": checkpoint["model_args"],
              "parameters": sum(v.numel() for v in weights.values()), "steps": checkpoint["step"],
              "total_steps": checkpoint["step"] + package.earlier_steps(init), "encoders": encoders, "recipe": config,
              "init": init, "metrics": metrics}
    with open(os.path.splitext(out_path)[0] + ".json", "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")


def main(argv):
    parser = argparse.ArgumentParser(description="Sample, evaluate and export a diffusion teacher.")
    parser.add_argument("--ckpt", required=True, help="training checkpoint or models/base/teacher-*.pt")
    parser.add_argument("--clip", default="models/base/clip.pt")
    parser.add_argument("--vae", default="models/base/vae.pt")
    parser.add_argument("--grid", help="write a sample grid PNG here (GRID_PROMPTS x 8 seeds)")
    parser.add_argument("--eval", action="store_true", help="judge alignment on eval_sets.alignment_prompts(n)")
    parser.add_argument("--n", type=int, default=200, help="number of alignment prompts")
    parser.add_argument("--guidance", default="5", help="CFG scale(s), comma-separated; the grid uses the first")
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps")
    parser.add_argument("--clip-x0", type=float, default=None, help="clamp predicted latents to +-this")
    parser.add_argument("--seed", type=int, default=0, help="noise seed of the first image")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu | cuda")
    parser.add_argument("--export", help="write the EMA teacher here (.pt + .json with the --eval metrics)")
    parser.add_argument("--json", help="write the --eval results here")
    args = parser.parse_args(argv)
    cpu_threads.use(args.threads)
    guidances = [float(g) for g in args.guidance.split(",")]

    model = load_teacher(args.ckpt, args.device)
    text_encoder = TextEncoder(args.clip, args.device)
    vae, scaling_factor = load_vae(args.vae, args.device)
    if args.grid:
        columns = GRID_COLUMNS
        prompts = [p for p in GRID_PROMPTS for _ in range(columns)]
        seeds = [args.seed + i for i in range(len(prompts))]
        images = generate(model, text_encoder, vae, scaling_factor, prompts, guidances[0], seeds, args.steps,
                          clip_x0=args.clip_x0)
        save_grid(images, prompts, columns, args.grid)
        print(f"wrote {args.grid}")
    results = {}
    if args.eval:
        print(f"{'guidance':>8} {'single':>7} {'two':>7} {'all':>7}   ({backbone_of(model)}, {args.steps} DDIM steps, "
              f"n={args.n})")
        for guidance in guidances:
            metrics = evaluate_alignment(model, text_encoder, vae, scaling_factor, guidance, args.n, args.steps,
                                         args.seed, args.clip_x0)
            results[str(guidance)] = metrics
            print(f"{guidance:>8g} {metrics['single']:>7.1%} {metrics['two']:>7.1%} {metrics['all']:>7.1%}",
                  flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)
    if args.export:
        metrics = {"alignment": {"guidance": guidances[0], "ddim_steps": args.steps, "n": args.n,
                                 "clip_x0": args.clip_x0, **results[str(guidances[0])]},
                   "alignment_by_guidance": results} if results else {}
        export_teacher(args.ckpt, args.export, metrics)
        print(f"wrote {args.export}")


if __name__ == "__main__":
    main(sys.argv[1:])
