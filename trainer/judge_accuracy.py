"""How often the pixel judge reads a sample's exact scene back: on clean renders, or through any image transform.

    /usr/bin/python3 -m trainer.judge_accuracy [--n=2000] [--seed=9001] [--blur=0]

prints one JSON object. A sample counts as correct when the reading reproduces the scene exactly: background, object
count, and each object's color, shape and size. The caption check (judge.satisfies on the sample's own caption) is
reported beside it. To measure on VAE reconstructions, call accuracy(transform=reconstruct) with a function mapping
uint8 images (N, 64, 64, 3) to uint8 images of the same shape.
"""
import json
import sys
from collections import Counter

import numpy as np

from trainer import judge, shapes
from trainer.configurator import configure_or_exit

n = 2000  # samples to judge
seed = 9001  # shapes-world seed of the samples (kept apart from training seeds)
blur = 0  # 0: clean renders; k > 0: a (2k+1) x (2k+1) box blur first, a quick robustness check
batch_size = 250  # samples per transform call


def exact_match(reading: judge.Reading, scene: shapes.Scene) -> bool:
    truth = Counter((o.color, o.shape, o.size) for o in scene.objects)
    read = Counter((o.color, o.shape, o.size) for o in reading.objects)
    return reading.background == scene.background and read == truth


def box_blur(radius: int):
    """A transform that box-blurs uint8 images (N, H, W, 3) with a (2r+1)^2 window (edges replicated)."""
    def transform(images: np.ndarray) -> np.ndarray:
        padded = np.pad(images.astype(np.float32), ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="edge")
        height, width = images.shape[1:3]
        total = sum(padded[:, dy:dy + height, dx:dx + width]
                    for dy in range(2 * radius + 1) for dx in range(2 * radius + 1))
        return np.round(total / (2 * radius + 1) ** 2).astype(np.uint8)
    return transform


def accuracy(transform=None, n: int = n, seed: int = seed, batch_size: int = batch_size) -> dict:
    """Judge accuracy on samples 0..n-1 of `seed`, each image passed through `transform` (uint8 batch -> uint8 batch)
    when given. Returns {"n", "seed", "scene_accuracy", "caption_accuracy", "scene_errors"} where scene_errors lists
    the first few misread samples."""
    scene_correct = caption_correct = 0
    errors = []
    for start in range(0, n, batch_size):
        count = min(batch_size, n - start)
        samples = [shapes.sample(seed, start + i) for i in range(count)]
        images = np.stack([image for image, _, _ in samples])
        if transform is not None:
            images = transform(images)
            if images.shape != (count, shapes.IMAGE_SIZE, shapes.IMAGE_SIZE, 3) or images.dtype != np.uint8:
                raise ValueError(f"transform must return uint8 {(count, 64, 64, 3)}, got {images.dtype} {images.shape}")
        for i, (image, (_, caption, scene)) in enumerate(zip(images, samples)):
            reading = judge.read_image(image)
            if exact_match(reading, scene):
                scene_correct += 1
            elif len(errors) < 10:
                errors.append({"index": start + i, "caption": caption,
                               "truth": [scene.background] + [f"{o.size} {o.color} {o.shape}" for o in scene.objects],
                               "read": [reading.background] + [f"{o.size} {o.color} {o.shape}" for o in reading.objects]})
            caption_correct += judge.satisfies(reading, judge.parse_caption(caption))
    return {"n": n, "seed": seed, "scene_accuracy": scene_correct / n, "caption_accuracy": caption_correct / n,
            "scene_errors": errors}


def main(argv):
    config = configure_or_exit({"n": n, "seed": seed, "blur": blur, "batch_size": batch_size}, argv)
    transform = box_blur(config["blur"]) if config["blur"] > 0 else None
    result = accuracy(transform, config["n"], config["seed"], config["batch_size"])
    print(json.dumps({"transform": f"box_blur({config['blur']})" if transform else "none", **result}, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
