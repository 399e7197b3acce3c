"""Negative-prompt quality and NASA's cost, measured through the HTTP API of a running service (issue #4, item 6).

    /usr/bin/python3 bench/negative_prompts.py --url http://127.0.0.1:8080 [--model ID] [--images-per-pair 10] \\
        [--scales 0,0.5,1] [--concurrency 8] [--out bench/results/negative/<model>.json] [--save-images DIR]

The evaluation of trainer/evaluate.py (evaluate_negative), with the service as the sampler: every pair of
trainer.eval_sets.negative_pairs(), images_per_pair images each, image i with seed NEGATIVE_SEED + i, judged by
trainer.eval_sets.negative_outcome. One POST /generate per image (png, one image, explicit seed, the pair's negative
prompt, explicit negative_scale), `--concurrency` requests in flight so the micro-batcher batches them. Scales: 0
(NASA off), the model's nasa.default_scale from GET /models, and --scales.

Per scale: success (negated attribute absent), kept (the prompt's attributes present) and both, for each kind
(under-specified, removal) and overall; wall time, images/s (also as a fraction of NASA off's: NASA's cost) and the
mean batch size the service reported. A warm-up pass (one image per pair, untimed) fills the embedding cache first,
so every scale is timed on the same footing.
The issue's targets are reported PASS/MISS at the default scale, never enforced.

Comparable with the PyTorch evaluation in prompts, pairs, seeds and rule, not image for image: the service draws its
noise with its own generator (src/noise/seeded-noise.ts), the trainer with torch.randn.

Prints a table; writes the JSON to --out. --save-images DIR keeps every image as DIR/<scale>/<seed>.png.
Exit codes: 0 measured (targets missed or not), 1 the server is unreachable or answered an error, 2 bad arguments
(including a model the server does not serve or a scale above its nasa.max_scale).
"""
import argparse
import base64
import concurrent.futures
import io
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from trainer import eval_sets  # noqa: E402
from trainer.evaluate import NEGATIVE_SEED, negative_rates  # noqa: E402

DEFAULT_SCALES = "0,0.5,1"  # NASA scales measured, besides 0 and the model's default
DEFAULT_IMAGES_PER_PAIR = 10  # as trainer/evaluate.py
DEFAULT_CONCURRENCY = 8  # requests in flight: enough for the micro-batcher to fill batches
REQUEST_TIMEOUT_S = 120  # per request; a busy service queues, a hung one should not hang the bench
KINDS = ("under-specified", "removal")
TARGETS = (  # issue #4: (kind, rate, at least), at the model's default scale
    ("under-specified", "success", 0.95),
    ("removal", "success", 0.80),
    ("removal", "kept", 0.80),
)
THROUGHPUT_NOTE = ("images/s through the HTTP path with this client's concurrency, embeddings cached; the autocannon "
                   "bench (npm run bench) is the authoritative throughput number")
NOISE_NOTE = ("same pairs, seeds and rule as trainer/evaluate.py; the service's noise generator differs from "
              "torch.randn, so the rates compare, the images do not")
SERVER_FAILED_EXIT = 1
BAD_ARGUMENTS_EXIT = 2


class ServerError(RuntimeError):
    """The server is unreachable or answered something other than 2xx."""


class BadArgument(ValueError):
    """An argument the server shows to be wrong: a model it does not serve, a scale above the model's max_scale."""


def error_summary(body: bytes) -> str:
    """'CODE: message' of the service's error body, or the start of whatever else came back."""
    try:
        error = json.loads(body)
        return f"{error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return body[:200].decode("utf-8", "replace") or "(empty body)"


def call(base_url: str, path: str, payload=None) -> dict:
    """GET (or POST payload as JSON) base_url + path; the JSON answer, or ServerError."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(base_url + path, data=data, headers={"content-type": "application/json"},
                                     method="GET" if payload is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        raise ServerError(f"{request.method} {path} answered {error.code} {error_summary(error.read())}") from None
    except urllib.error.URLError as error:
        raise ServerError(f"cannot reach {base_url}: {error.reason}") from None
    except OSError as error:
        raise ServerError(f"{request.method} {base_url}{path} failed: {error}") from None


def choose_model(base_url: str, model_id):
    """The model's GET /models entry: --model, or the active model."""
    models = call(base_url, "/models")["data"]
    if model_id is None:
        active = next((model for model in models if model["active"]), None)
        if active is None:
            raise ServerError(f"{base_url} has no active model")
        return active
    for model in models:
        if model["id"] == model_id:
            return model
    raise BadArgument(f"--model {model_id} is not served at {base_url} (served: {', '.join(m['id'] for m in models)})")


def generate(base_url: str, model_id: str, pair: dict, seed: int, scale: float):
    """(png bytes, batch size) of one image of `pair` with `seed` at NASA `scale`."""
    answer = call(base_url, "/generate", {"model": model_id, "prompt": pair["prompt"],
                                          "negative_prompt": pair["negative"], "negative_scale": scale,
                                          "seed": seed, "num_images": 1, "format": "png"})
    image = answer["images"][0]
    if image["seed"] != seed:
        raise ServerError(f"asked for seed {seed}, the service echoed {image['seed']}")
    return base64.b64decode(image["b64_json"]), answer["batch_size"]


def generate_all(base_url: str, model_id: str, jobs, scale: float, concurrency: int):
    """[(png, batch size)] in the order of jobs [(pair, seed)], `concurrency` requests in flight."""
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        futures = [pool.submit(generate, base_url, model_id, pair, seed, scale) for pair, seed in jobs]
        try:
            return [future.result() for future in futures]
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise


def decode_png(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))  # (H, W, 3) uint8


def measure_scale(base_url: str, model_id: str, jobs, scale: float, concurrency: int, save_dir) -> dict:
    started = time.perf_counter()
    answers = generate_all(base_url, model_id, jobs, scale, concurrency)
    wall_s = time.perf_counter() - started
    if save_dir:
        os.makedirs(os.path.join(save_dir, str(scale)), exist_ok=True)
        for (_, seed), (png, _) in zip(jobs, answers):
            with open(os.path.join(save_dir, str(scale), f"{seed}.png"), "wb") as f:
                f.write(png)
    images = [decode_png(png) for png, _ in answers]
    pairs = [pair for pair, _ in jobs]
    overall = negative_rates(images, pairs)
    by_kind = overall.pop("by_kind")
    result = {kind: {key: value for key, value in by_kind[kind].items() if key != "n"} for kind in KINDS}
    result["overall"] = overall
    result.update({"images": len(images), "wall_s": wall_s, "images_per_s": len(images) / wall_s,
                   "mean_batch_size": float(np.mean([batch for _, batch in answers]))})
    return result


def target_rows(rates: dict) -> list:
    return [{"kind": kind, "rate": rate, "at_least": at_least, "value": rates[kind][rate],
             "pass": rates[kind][rate] >= at_least} for kind, rate, at_least in TARGETS]


def run(args) -> dict:
    model = choose_model(args.url, args.model)
    nasa = model["nasa"]
    scales = sorted({0.0, float(nasa["default_scale"]), *args.scales})
    too_high = [scale for scale in scales if scale > nasa["max_scale"]]
    if too_high:
        raise BadArgument(f"scales {too_high} are above {model['id']}'s nasa.max_scale {nasa['max_scale']}")
    pairs = eval_sets.negative_pairs()
    repeated = [pair for pair in pairs for _ in range(args.images_per_pair)]
    jobs = [(pair, NEGATIVE_SEED + i) for i, pair in enumerate(repeated)]
    generate_all(args.url, model["id"], jobs[::args.images_per_pair], 0.0, args.concurrency)  # warm-up
    by_scale = {str(scale): measure_scale(args.url, model["id"], jobs, scale, args.concurrency, args.save_images)
                for scale in scales}
    for rates in by_scale.values():
        rates["throughput_vs_off"] = rates["images_per_s"] / by_scale["0.0"]["images_per_s"]
    default = str(float(nasa["default_scale"]))
    return {
        "model": model["id"], "backbone": model["backbone"], "method": model["method"], "url": args.url,
        "execution_provider": model.get("execution_provider"), "nasa": nasa,
        "pairs": {kind: sum(pair["kind"] == kind for pair in pairs) for kind in KINDS},
        "images_per_pair": args.images_per_pair, "first_seed": NEGATIVE_SEED, "concurrency": args.concurrency,
        "by_nasa_scale": by_scale,
        "targets": {"nasa_scale": default, "rows": target_rows(by_scale[default])},
        "notes": [THROUGHPUT_NOTE, NOISE_NOTE],
    }


def table(result: dict) -> str:
    lines = [f"negative prompts: {result['model']} ({result['backbone']}, {result['method']}) at {result['url']}; "
             f"{sum(result['pairs'].values())} pairs x {result['images_per_pair']} images, seeds from "
             f"{result['first_seed']}, {result['concurrency']} requests in flight",
             f"{'scale':<6} {'kind':<16} {'success':>8} {'kept':>6} {'both':>6} {'images':>7} {'wall_s':>7} "
             f"{'img/s':>7} {'vs off':>6} {'batch':>6}"]
    for scale, rates in result["by_nasa_scale"].items():
        for kind in (*KINDS, "overall"):
            row = rates[kind]
            line = (f"{scale if kind == KINDS[0] else '':<6} {kind:<16} {row['success']:>8.1%} {row['kept']:>6.1%} "
                    f"{row['success_and_kept']:>6.1%}")
            if kind == "overall":
                line += (f" {rates['images']:>7} {rates['wall_s']:>7.2f} {rates['images_per_s']:>7.1f} "
                         f"{rates['throughput_vs_off']:>6.2f} {rates['mean_batch_size']:>6.2f}")
            lines.append(line)
    lines.append(f"targets of issue #4 at the default scale {result['targets']['nasa_scale']}:")
    for row in result["targets"]["rows"]:
        lines.append(f"  {row['kind']} {row['rate']} >= {row['at_least']:.0%}: {row['value']:.1%}  "
                     f"{'PASS' if row['pass'] else 'MISS'}")
    lines += [f"note: {note}" for note in result["notes"]]
    return "\n".join(lines)


def scale_list(text: str) -> list:
    try:
        scales = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") from None
    if any(not np.isfinite(scale) or scale < 0 for scale in scales):
        raise argparse.ArgumentTypeError(f"NASA scales must be finite and >= 0: {text!r}")
    return scales


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Negative-prompt success rates and NASA's cost through the HTTP API.")
    parser.add_argument("--url", required=True, help="the service, e.g. http://127.0.0.1:8080")
    parser.add_argument("--model", help="a model id from GET /models (default: the active model)")
    parser.add_argument("--images-per-pair", type=int, default=DEFAULT_IMAGES_PER_PAIR)
    parser.add_argument("--scales", type=scale_list, default=scale_list(DEFAULT_SCALES),
                        help="comma-separated NASA scales; 0 and the model's default are always measured")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="requests in flight")
    parser.add_argument("--out", help="the JSON (default bench/results/negative/<model>.json)")
    parser.add_argument("--save-images", metavar="DIR", help="keep every image as DIR/<scale>/<seed>.png")
    args = parser.parse_args(argv)
    if args.images_per_pair < 1 or args.concurrency < 1:
        parser.error("--images-per-pair and --concurrency must be >= 1")
    url = urllib.parse.urlsplit(args.url)
    if url.scheme not in ("http", "https") or not url.netloc:
        parser.error(f"--url must be an http(s) URL such as http://127.0.0.1:8080, got {args.url!r}")
    args.url = args.url.rstrip("/")
    return args


def main(argv) -> int:
    args = parse_args(argv)
    try:
        result = run(args)
    except BadArgument as error:
        print(f"negative_prompts: {error}", file=sys.stderr)
        return BAD_ARGUMENTS_EXIT
    except ServerError as error:
        print(f"negative_prompts: {error}", file=sys.stderr)
        return SERVER_FAILED_EXIT
    print(table(result))
    out = args.out or os.path.join(REPO, "bench", "results", "negative", f"{result['model']}.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
