"""Spread where the prompt leaves room: does a model vary what the caption leaves free, as its teacher does, or
collapse onto one value (a one-step student that draws every free background black)?

Three kinds of prompts, each naming everything but one attribute, in the shapes world's own phrasing:
  background: "a red circle"                       -> the background the judge reads
  color:      "a circle on a white background"     -> the color of the largest object read
  size:       "a red circle on a white background" -> the size of the largest object read
Each prompt is drawn with SEEDS_PER_PROMPT noise seeds (SPREAD_SEED + i), the same for every model. Per kind the row
holds the counts of each value read, `mode_share`, the share of the most common value among the images where the
attribute could be read (an image without objects has no color or size), and `read`, that number of images. The
training data draws each free attribute uniformly: a mode share of 1/3 (backgrounds, sizes: 1/2) is no collapse at
all, 1.0 is total collapse. compare() sets a student's row beside its teacher's: the gap in mode share (issue 28's
"within 15 points") and the total variation distance between the two distributions.

    spread = measure(sampler)                        (trainer.evaluate puts it in every row)
    compare(student_row["spread"], teacher_row["spread"])
"""
from collections import Counter

from trainer import judge, shapes

SPREAD_SEED = 9000  # noise seed of spread image i: SPREAD_SEED + i (no other evaluation set uses 9000-9999)
SEEDS_PER_PROMPT = {"background": 8, "color": 16, "size": 3}  # ~150 images per kind
KINDS = tuple(SEEDS_PER_PROMPT)


def prompts(kind: str) -> list:
    """The prompts of one kind, each named attribute in every combination."""
    if kind == "background":
        return [f"{shapes.article(color)} {color} {shape}" for color in shapes.COLORS for shape in shapes.SHAPES]
    if kind == "color":
        return [f"a {shape} on a {background} background"
                for shape in shapes.SHAPES for background in shapes.BACKGROUNDS]
    if kind == "size":
        return [f"{shapes.article(color)} {color} {shape} on a {background} background"
                for color in shapes.COLORS for shape in shapes.SHAPES for background in shapes.BACKGROUNDS]
    raise ValueError(f"unknown spread kind {kind!r}; known: {', '.join(KINDS)}")


def free_value(reading: judge.Reading, kind: str):
    """The value of the attribute the prompt left free, or None where the image has no object to read it from."""
    if kind == "background":
        return reading.background
    if not reading.objects:
        return None
    largest = max(reading.objects, key=lambda obj: obj.area)
    return largest.color if kind == "color" else largest.size


def summarize(values) -> dict:
    """counts, mode_share and read of the values read (None: unreadable, left out)."""
    counts = Counter(value for value in values if value is not None)
    read = sum(counts.values())
    return {"counts": dict(sorted(counts.items())), "read": read, "n": len(values),
            "mode_share": max(counts.values()) / read if read else None}


def measure(sampler, seeds_per_prompt: int = 0) -> dict:
    """{kind: summarize(...)} for a sampler with images(prompts, seeds) -> uint8 (N, 64, 64, 3); seeds_per_prompt > 0
    replaces SEEDS_PER_PROMPT for every kind (quick checks)."""
    result = {}
    for kind in KINDS:
        seeds = seeds_per_prompt or SEEDS_PER_PROMPT[kind]
        repeated = [prompt for prompt in prompts(kind) for _ in range(seeds)]
        images = sampler.images(repeated, [SPREAD_SEED + i for i in range(len(repeated))])
        result[kind] = dict(summarize([free_value(judge.read_image(image), kind) for image in images]),
                            seeds_per_prompt=seeds)
    return result


def compare(student: dict, teacher: dict) -> dict:
    """Per kind: the mode-share gap in points (student minus teacher) and the total variation distance."""
    result = {}
    for kind in KINDS:
        a, b = student[kind], teacher[kind]
        values = set(a["counts"]) | set(b["counts"])
        share = lambda row, value: row["counts"].get(value, 0) / row["read"] if row["read"] else 0.0  # noqa: E731
        result[kind] = {"mode_share_gap_points": 100.0 * (a["mode_share"] - b["mode_share"])
                        if a["read"] and b["read"] else None,
                        "total_variation": 0.5 * sum(abs(share(a, value) - share(b, value)) for value in values)}
    return result
