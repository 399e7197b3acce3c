"""Train the tiny CLIP (trainer/models/clip.py) contrastively on shapes-world (image, caption) pairs.

    /usr/bin/python3 -m trainer.train_clip trainer/configs/clip.json [--key=value ...]
    torchrun --nproc_per_node=2 -m trainer.train_clip ...      (DDP; batch_size is per process)

Resumes from <out_dir>/ckpt.pt when it exists; saves it every checkpoint_every_s seconds, at the end and on SIGTERM.
Step s trains on samples [s * world_size * batch_size, ...) of the shapes stream `seed`. trainer/eval_clip.py
measures the result and writes models/base/clip.pt.

Every image also gets a hard negative caption: its own caption with one word changed (a color, shape, size or
background) or with left and right swapped, checked against the scene to be false. The text encoder's
last_hidden_state conditions every diffusion teacher, so it has to separate captions that differ in one word; in-batch
negatives alone rarely differ that little.
"""
import os
import random
import sys

import numpy as np

import torch

from trainer import cpu_threads, distributed, judge, shapes
from trainer.checkpoint import TrainingCheckpoints
from trainer.clip_tokenizer import ClipTokenizer
from trainer.configurator import configure_or_exit
from trainer.models.clip import Clip, ClipArgs
from trainer.models.vae import images_to_tensor
from trainer.progress import ProgressLog, cosine_lr

# -----------------------------------------------------------------------------
# defaults (trainer/configs/clip.json holds what differs; --key=value overrides)
out_dir = "runs/clip"  # ckpt.pt and progress.jsonl go here
seed = 11  # shapes-world seed of the training stream (evaluation uses other seeds)
torch_seed = 1337  # parameter init
device = "auto"  # auto | cpu | cuda
threads = 1  # cpu_threads.use: torch and OpenBLAS
tokenizer_dir = "trainer/assets/tokenizer"  # vocab.json + merges.txt, relative to the repo root
# model
max_length = 32  # L, tokens per caption
width = 128  # D, hidden size of the text transformer
layers = 4
heads = 4
embed_dim = 128  # joint embedding
image_channels = [32, 64, 128, 128]  # image encoder stages, at 32, 16, 8 and 4 px
# loss
hard_negatives = True  # one edited, false caption per image
# optimisation
batch_size = 128  # per process
max_steps = 1200
learning_rate = 1e-3
min_lr_ratio = 0.05
warmup_steps = 100
lr_decay_steps = 0  # 0: max_steps
weight_decay = 0.1
grad_clip = 1.0  # 0: off
# logging and checkpoints
log_every = 20  # steps
checkpoint_every_s = 120  # seconds between checkpoints
DEFAULTS = {k: v for k, v in dict(globals()).items()
            if not k.startswith("_") and not k.isupper() and isinstance(v, (int, float, str, list))}
# -----------------------------------------------------------------------------

ATTRIBUTE_WORDS = {"color": tuple(shapes.COLORS), "shape": shapes.SHAPES, "size": tuple(shapes.SIZES),
                   "background": tuple(shapes.BACKGROUNDS)}
WORD_KIND = {word: kind for kind, words in ATTRIBUTE_WORDS.items() for word in words}
LEFT_OF = " to the left of "
BACKGROUND_SUFFIX = " on a "


def scene_reading(scene):
    """What the judge would read from the scene's clean render, without rendering: objects left to right."""
    objects = sorted(scene.objects, key=lambda o: (o.x + o.extent / 2, o.y))  # judge.read_image's order
    return judge.Reading(scene.background, tuple(
        judge.ObjectReading(o.color, o.shape, o.size, (o.x, o.y, o.x_end, o.y_end), o.extent * o.extent)
        for o in objects))


def fix_articles(text):
    words = text.split()
    for i, word in enumerate(words[:-1]):
        if word in ("a", "an"):
            words[i] = shapes.article(words[i + 1])
    return " ".join(words)


def edits_of(caption):
    """Every caption one edit away, as (kind, text): one color, shape, size or background word replaced, or
    ("left_right") the two sides of "to the left of" swapped."""
    words = caption.split()
    edited = [(WORD_KIND[word], fix_articles(" ".join(words[:i] + [other] + words[i + 1:])))
              for i, word in enumerate(words) if word in WORD_KIND
              for other in ATTRIBUTE_WORDS[WORD_KIND[word]] if other != word]
    if LEFT_OF in caption:
        objects, sep, background = caption.partition(BACKGROUND_SUFFIX)
        left, right = objects.split(LEFT_OF)
        edited.append(("left_right", f"{right}{LEFT_OF}{left}{sep}{background}"))
    return edited


def hard_negative(caption, scene, rng, fallback_captions):
    """A caption false of `scene`: one edit of `caption` when one is false, else a false caption of another sample."""
    reading = scene_reading(scene)
    edited = [text for _, text in edits_of(caption)]
    rng.shuffle(edited)
    for text in edited + list(fallback_captions):
        if not judge.satisfies(reading, judge.parse_caption(text)):
            return text
    raise RuntimeError(f"no false caption found for {caption!r}")


def training_batch(config, step, dist_info, tokenizer):
    """(images (B, 3, 64, 64), input_ids (B, L), negative_input_ids (B, L) or None) of one step on one rank."""
    start = distributed.batch_start(step, dist_info.rank, dist_info.world_size, config["batch_size"])
    samples = [shapes.sample(config["seed"], start + i) for i in range(config["batch_size"])]
    images = images_to_tensor(np.stack([image for image, _, _ in samples]))
    captions = [caption for _, caption, _ in samples]
    input_ids = torch.from_numpy(tokenizer(captions, max_length=config["max_length"]))
    if not config["hard_negatives"]:
        return images, input_ids, None
    rng = random.Random(f"hard-negatives:{config['seed']}:{start}")
    negatives = [hard_negative(caption, scene, rng, rng.sample(captions, len(captions)))
                 for _, caption, scene in samples]
    return images, input_ids, torch.from_numpy(tokenizer(negatives, max_length=config["max_length"]))


def trim_padding(input_ids, eos_token_id):
    """Drop the columns after the last first-EOS of the batch. Exact for training: with the causal mask no position
    before a row's EOS sees later ones, and the loss reads only the EOS state."""
    length = int((input_ids == eos_token_id).int().argmax(dim=1).max()) + 1
    return input_ids[:, :length]


def model_args_from(config, tokenizer):
    return ClipArgs(vocab_size=tokenizer.vocab_size, eos_token_id=tokenizer.eos_token_id,
                    max_length=config["max_length"], width=config["width"], layers=config["layers"],
                    heads=config["heads"], embed_dim=config["embed_dim"],
                    image_channels=list(config["image_channels"]))


def main(argv):
    config = configure_or_exit(DEFAULTS, argv)
    tokenizer = ClipTokenizer.from_dir(config["tokenizer_dir"])
    model_args = model_args_from(config, tokenizer)
    cpu_threads.use(config["threads"])
    dist_info = distributed.setup(config["device"])
    torch.manual_seed(config["torch_seed"])

    clip = Clip(model_args).to(dist_info.device)
    decay = [p for p in clip.parameters() if p.dim() >= 2]  # weight matrices and embeddings; not norms, biases, scale
    no_decay = [p for p in clip.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config["weight_decay"]},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=config["learning_rate"])
    checkpoints = TrainingCheckpoints(config["out_dir"], clip, optimizer, model_args, config, dist_info,
                                      every_s=config["checkpoint_every_s"], defaults=DEFAULTS)
    step = checkpoints.resume()
    training_model = distributed.wrap(clip, dist_info)

    log = ProgressLog(os.path.join(config["out_dir"], "progress.jsonl"), config["max_steps"], dist_info.is_master,
                      start_step=step)
    if dist_info.is_master:
        print(f"clip: {sum(p.numel() for p in clip.text_model.parameters()) / 1e6:.2f}M text parameters, "
              f"{sum(p.numel() for p in clip.vision_model.parameters()) / 1e6:.2f}M image parameters, "
              f"world size {dist_info.world_size}, device {dist_info.device}")
    while step < config["max_steps"]:
        images, input_ids, negative_input_ids = training_batch(config, step, dist_info, tokenizer)
        input_ids = trim_padding(input_ids, tokenizer.eos_token_id).to(dist_info.device)
        if negative_input_ids is not None:
            negative_input_ids = trim_padding(negative_input_ids, tokenizer.eos_token_id).to(dist_info.device)
        lr = cosine_lr(step, config["learning_rate"], config["warmup_steps"],
                       config["lr_decay_steps"] or config["max_steps"], config["min_lr_ratio"])
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = training_model(images.to(dist_info.device), input_ids, negative_input_ids)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(clip.parameters(), config["grad_clip"])
        optimizer.step()
        step += 1

        if step % config["log_every"] == 0 or step == config["max_steps"]:
            log.log(step, loss=distributed.all_reduce_mean(loss.item(), dist_info), lr=lr,
                    temperature=1.0 / clip.logit_scale.exp().item())
        if checkpoints.after_step(step, final=step == config["max_steps"]):
            sys.exit(143)
    distributed.finish(dist_info)


if __name__ == "__main__":
    main(sys.argv[1:])
