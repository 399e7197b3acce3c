"""Measure a trained tiny CLIP and (optionally) write the committed artifact models/base/clip.pt + clip.json.

    /usr/bin/python3 -m trainer.eval_clip [--checkpoint=runs/clip/ckpt.pt] [--n=1000] [--out=models/base/clip.pt]

On samples 0..n-1 of a held-out shapes seed:
- retrieval: for each caption, its own image among `candidates` (itself + others drawn at random from the n);
  top1_exact counts the caption's own image ranked first. Captions are often under-specified ("two shapes", "a
  circle"), so several candidates can be equally right: top1_satisfied counts a first-ranked image of which the
  caption is true (by the scene), the number that says whether the model reads captions correctly.
- one-word discrimination, per kind of edit (color, shape, size, background, left_right): how often the image scores
  its true caption above the same caption with that one attribute changed (and false of the image). Chance is 50%.
  This is what the diffusion teachers need from the text encoder.
Prints one JSON object. With --out, writes the slim checkpoint (model_args + fp32 weights, no optimizer) and a JSON
of recipe and metrics beside it.
"""
import json
import random
import sys
from collections import defaultdict

import numpy as np
import torch

from trainer import cpu_threads, judge, shapes, train_clip
from trainer.checkpoint import load_checkpoint, write_artifact
from trainer.clip_tokenizer import ClipTokenizer
from trainer.configurator import configure_or_exit
from trainer.models.clip import Clip, ClipArgs
from trainer.models.vae import images_to_tensor

checkpoint = "runs/clip/ckpt.pt"  # a training checkpoint (or a slim one written by --out)
n = 1000  # evaluation samples (queries and the candidate pool)
seed = 9002  # held-out shapes seed
candidates = 100  # images per retrieval query, the caption's own included
batch_size = 250
threads = 1
tokenizer_dir = "trainer/assets/tokenizer"  # vocab.json + merges.txt, relative to the repo root
out = ""  # when set: write the slim checkpoint here and <out without .pt>.json beside it
DEFAULTS = {k: v for k, v in dict(globals()).items()
            if not k.startswith("_") and not k.isupper() and isinstance(v, (int, float, str))}


@torch.no_grad()
def embed_images(clip, images, batch_size):
    """uint8 images (N, 64, 64, 3) -> L2-normalised embeddings (N, E)."""
    return torch.cat([clip.encode_image(images_to_tensor(images[i:i + batch_size]))
                      for i in range(0, len(images), batch_size)])


@torch.no_grad()
def embed_texts(clip, tokenizer, texts, batch_size):
    """list of M texts -> L2-normalised embeddings (M, E)."""
    return torch.cat([clip.encode_text(torch.from_numpy(tokenizer(texts[i:i + batch_size], clip.args.max_length)))
                      for i in range(0, len(texts), batch_size)])


def evaluate(clip, tokenizer, config):
    samples = [shapes.sample(config["seed"], i) for i in range(config["n"])]
    images = np.stack([image for image, _, _ in samples])
    captions = [caption for _, caption, _ in samples]
    readings = [train_clip.scene_reading(scene) for _, _, scene in samples]

    image_embeds = embed_images(clip, images, config["batch_size"])
    text_embeds = embed_texts(clip, tokenizer, captions, config["batch_size"])
    similarity = text_embeds @ image_embeds.t()  # (captions, images)
    rng = random.Random(f"retrieval:{config['seed']}")
    exact = satisfied = 0
    for i, caption in enumerate(captions):
        others = rng.sample([j for j in range(config["n"]) if j != i], config["candidates"] - 1)
        pool = [i] + others
        best = pool[int(similarity[i, pool].argmax())]
        exact += best == i
        satisfied += judge.satisfies(readings[best], judge.parse_caption(caption))

    edit_rng = random.Random(f"edits:{config['seed']}")
    negatives, owners, kinds = [], [], []
    for i, (caption, reading) in enumerate(zip(captions, readings)):
        by_kind = defaultdict(list)
        for kind, text in train_clip.edits_of(caption):
            if not judge.satisfies(reading, judge.parse_caption(text)):
                by_kind[kind].append(text)
        for kind, texts in sorted(by_kind.items()):
            negatives.append(edit_rng.choice(texts))
            owners.append(i)
            kinds.append(kind)
    negative_embeds = embed_texts(clip, tokenizer, negatives, config["batch_size"])
    owners_tensor = torch.tensor(owners)
    true_scores = (image_embeds[owners_tensor] * text_embeds[owners_tensor]).sum(-1)
    false_scores = (image_embeds[owners_tensor] * negative_embeds).sum(-1)
    wins, totals = defaultdict(int), defaultdict(int)
    for kind, win in zip(kinds, (true_scores > false_scores).tolist()):
        wins[kind] += win
        totals[kind] += 1
    return {"n": config["n"], "seed": config["seed"], "candidates": config["candidates"],
            "retrieval_top1_exact": exact / config["n"], "retrieval_top1_satisfied": satisfied / config["n"],
            "retrieval_chance": 1 / config["candidates"],
            "one_word_discrimination": {kind: round(wins[kind] / totals[kind], 4) for kind in sorted(totals)},
            "one_word_counts": {kind: totals[kind] for kind in sorted(totals)}}


def main(argv):
    config = configure_or_exit(DEFAULTS, argv)
    cpu_threads.use(config["threads"])
    tokenizer = ClipTokenizer.from_dir(config["tokenizer_dir"])
    state = load_checkpoint(config["checkpoint"])
    clip = Clip(ClipArgs(**state["model_args"]))
    clip.load_state_dict(state["model"])
    clip.eval()
    metrics = evaluate(clip, tokenizer, config)
    print(json.dumps(metrics, indent=1))
    if config["out"]:
        train_config = {k: v for k, v in state.get("config", {}).items() if k in train_clip.DEFAULTS}
        write_artifact(config["out"], "clip", state, clip, train_config, metrics, "trainer.train_clip",
                       f"/usr/bin/python3 -m trainer.eval_clip --checkpoint=runs/clip/ckpt.pt --n={config['n']} "
                       f"--out={config['out']}",
                       extra={"tokenizer": {"vocab_size": tokenizer.vocab_size, "bos_token_id": tokenizer.bos_token_id,
                                            "eos_token_id": tokenizer.eos_token_id,
                                            "pad_token_id": tokenizer.pad_token_id}})


if __name__ == "__main__":
    main(sys.argv[1:])
