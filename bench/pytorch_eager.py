"""The PyTorch eager baseline of the benchmark suite: what a user would run instead of the service. The same one-step
student as a package's generator.onnx (trainer.generator.Generator: student with NASA, x0, VAE decode, uint8 pixels),
timed per batch size with the timing rule of bench/lib/engine-throughput.ts (two warm-up calls, then calls until
both `--seconds` and `--min-runs` are reached).

    /usr/bin/python3 bench/pytorch_eager.py --package models/shapes-fixture --batches 1,4,16 --seconds 1.5 \\
        --min-runs 2 --threads 2,1 --parity-out bench/results/tmp/parity

--threads takes a list: the suite times torch's 2 threads (the service's intra-op thread count) and 1 thread, and
compares the service with the faster of the two. On a busy machine OpenMP's 2-thread barriers can be many times
slower than 1 thread; the report shows both.

Weights come from the package's training record (model.json):
  recipe.random_init   rebuilt with trainer.export.random_models(backbone, tiny, seed): the same seeded
                       initialisation that exported the package (the parity check below confirms it);
  inputs.student/vae   the checkpoints the package was exported from (sha256 checked against the record).
A package with neither cannot be rebuilt in PyTorch: exit code 3 and a message on stderr.

--parity-out DIR: seeded inputs of batch 2 (one row with nasa_scale 0, one with half the maximum) and this side's
pixels, as raw little-endian .bin files described by parity.json; the suite runs the same inputs through the engine
and reports the largest pixel difference, so the baseline is shown to be the same model.

Prints one JSON object on stdout.
"""
import argparse
import copy
import json
import math
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import trainer  # noqa: E402,F401  first: it picks OpenBLAS's kernels before torch loads them, as every trainer command does
import torch  # noqa: E402

from trainer import package  # noqa: E402
from trainer.export import random_models  # noqa: E402
from trainer.generator import Generator  # noqa: E402
from trainer.models.vae import load_vae  # noqa: E402
from trainer.sample import load_teacher  # noqa: E402

NO_WEIGHTS_EXIT = 3
PARITY_BATCH = 2


class NoWeights(RuntimeError):
    """The package's training record names no weights this script can rebuild."""


def build_generator(manifest):
    """(Generator in eval mode, (C, h, w) latent shape, (L, D) text shape, a description of the weights)."""
    training = manifest.get("training", {})
    recipe = training.get("recipe", {})
    inputs = training.get("inputs", {})
    if "random_init" in recipe:
        models = random_models(recipe["random_init"], bool(recipe.get("tiny", False)), int(recipe.get("seed", 0)))
        student, vae, scaling_factor = models.student, models.vae, models.scaling_factor
        weights = f"random init of {recipe['random_init']} (tiny={bool(recipe.get('tiny'))}, seed {recipe.get('seed', 0)})"
    elif "student" in inputs and "vae" in inputs:
        for name in ("student", "vae"):
            path = os.path.join(REPO, inputs[name]["path"])
            if not os.path.isfile(path):
                raise NoWeights(f"the {name} checkpoint {inputs[name]['path']} named by the training record is missing")
            digest = package.file_entry(path)["sha256"]
            if digest != inputs[name]["sha256"]:
                raise NoWeights(f"{inputs[name]['path']} has sha256 {digest}, the training record says {inputs[name]['sha256']}")
        student = load_teacher(os.path.join(REPO, inputs["student"]["path"]))
        vae, scaling_factor = load_vae(os.path.join(REPO, inputs["vae"]["path"]))
        weights = f"checkpoints {inputs['student']['path']} + {inputs['vae']['path']}"
    else:
        raise NoWeights("the training record has neither recipe.random_init nor inputs.student/vae")
    generator = Generator(copy.deepcopy(student), vae, scaling_factor).eval()
    latent = manifest["latent"]
    text = manifest["text"]
    return generator, (latent["channels"], latent["height"], latent["width"]), (text["max_length"], text["hidden_size"]), weights


def nearest_rank(sorted_values, q):
    """The same percentile as bench/lib/stats.ts."""
    rank = math.ceil(q / 100 * len(sorted_values))
    return sorted_values[min(len(sorted_values), max(1, rank)) - 1]


def inputs_of(batch, latent_shape, text_shape, max_scale, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn((batch, *latent_shape), generator=generator),
            torch.randn((batch, *text_shape), generator=generator),
            torch.randn((batch, *text_shape), generator=generator),
            torch.full((batch,), max_scale / 2))


def time_batch(generator, batch, inputs, seconds, min_runs):
    with torch.inference_mode():
        for _ in range(2):
            generator(*inputs)
        times = []
        cpu_started = time.process_time()  # every thread of the process
        started = time.perf_counter()
        while len(times) < min_runs or time.perf_counter() - started < seconds:
            run_started = time.perf_counter()
            generator(*inputs)
            times.append((time.perf_counter() - run_started) * 1000)
        cpu_cores = (time.process_time() - cpu_started) / (time.perf_counter() - started)
    ordered = sorted(times)
    return {"batch": batch, "runs": len(times), "medianMs": nearest_rank(ordered, 50), "p90Ms": nearest_rank(ordered, 90),
            "meanMs": sum(times) / len(times), "imagesPerSecond": batch * len(times) * 1000 / sum(times),
            "cpuCores": cpu_cores}


def write_parity(generator, latent_shape, text_shape, max_scale, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    noise, states, negative_states, _ = inputs_of(PARITY_BATCH, latent_shape, text_shape, max_scale, seed=1234)
    nasa_scale = torch.tensor([0.0, max_scale / 2])
    with torch.inference_mode():
        image = generator(noise, states, negative_states, nasa_scale)  # (B, H, W, 3) uint8
    tensors = {"noise": noise, "encoder_hidden_states": states, "negative_encoder_hidden_states": negative_states,
               "nasa_scale": nasa_scale}
    description = {"batch": PARITY_BATCH, "inputs": {}, "image": {"file": "image.bin", "dims": list(image.shape)}}
    for name, tensor in tensors.items():
        tensor.numpy().astype("<f4").tofile(os.path.join(out_dir, f"{name}.bin"))
        description["inputs"][name] = {"file": f"{name}.bin", "dims": list(tensor.shape)}
    image.numpy().tofile(os.path.join(out_dir, "image.bin"))
    with open(os.path.join(out_dir, "parity.json"), "w") as f:
        json.dump(description, f, indent=2)


def blas_info():
    for part in torch.__config__.show().replace(",", "\n").split("\n"):
        if "BLAS_INFO" in part:
            return part.strip().split("=", 1)[1]
    return "unknown"


def main(argv):
    parser = argparse.ArgumentParser(description="PyTorch eager throughput of a package's student (JSON on stdout).")
    parser.add_argument("--package", required=True, help="the model package folder (its model.json)")
    parser.add_argument("--batches", default="1,4,16,64", help="comma-separated batch sizes")
    parser.add_argument("--seconds", type=float, default=1.5, help="least timed seconds per batch size")
    parser.add_argument("--min-runs", type=int, default=2, help="least timed calls per batch size")
    parser.add_argument("--threads", default="2", help="comma-separated torch.set_num_threads values, timed in turn")
    parser.add_argument("--parity-out", help="write the parity inputs and pixels here")
    args = parser.parse_args(argv)
    thread_counts = [int(value) for value in args.threads.split(",")]
    batches = [int(value) for value in args.batches.split(",")]
    torch.set_num_threads(thread_counts[0])
    with open(os.path.join(args.package, "model.json")) as f:
        manifest = json.load(f)
    try:
        generator, latent_shape, text_shape, weights = build_generator(manifest)
    except NoWeights as error:
        print(f"pytorch baseline: {error}", file=sys.stderr)
        return NO_WEIGHTS_EXIT
    max_scale = float(manifest["nasa"]["max_scale"])
    if args.parity_out:
        write_parity(generator, latent_shape, text_shape, max_scale, args.parity_out)
    runs = []
    for threads in thread_counts:
        torch.set_num_threads(threads)
        timings = [time_batch(generator, batch, inputs_of(batch, latent_shape, text_shape, max_scale), args.seconds,
                              args.min_runs) for batch in batches]
        runs.append({"threads": threads, "batches": timings})
    print(json.dumps({"torch": torch.__version__, "blas": blas_info(), "openblasCoretype": os.environ.get("OPENBLAS_CORETYPE"),
                      "ompWaitPolicy": os.environ.get("OMP_WAIT_POLICY"), "weights": weights,
                      "parameters": sum(p.numel() for p in generator.parameters()), "runs": runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
