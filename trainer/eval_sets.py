"""Fixed evaluation sets of the shapes world, and the success rule of the negative-prompt evaluation.

Everything here is a pure function of the constants below, so every evaluation script sees the same prompts:
    alignment_prompts(n=200) -> list[str]          prompts in the caption grammar, half one object, half two
    negative_pairs() -> list[dict]                 {prompt, negative, kind, negated, kept}
    negative_outcome(reading, pair) -> dict        {removed, kept, success}: the rule every eval script uses
    reference_images(n) -> (images, captions)      real samples for FID statistics
"""
import random

from trainer import judge, shapes

ALIGNMENT_SEED = 1001  # draws the alignment prompts
REFERENCE_SEED = 1002  # shapes-world seed of the real images FID compares against
P_ALIGNMENT_SIZE = 0.5  # how often an alignment prompt names an object's size
P_ALIGNMENT_BACKGROUND = 0.6  # ... and the background
P_ALIGNMENT_LEFT_OF = 0.5  # how often a two-object prompt uses "to the left of" rather than "and"


def _object_phrase(rng: random.Random) -> str:
    words = [rng.choice(tuple(shapes.SIZES))] if rng.random() < P_ALIGNMENT_SIZE else []
    words += [rng.choice(tuple(shapes.COLORS)), rng.choice(shapes.SHAPES)]
    return f"{shapes.article(words[0])} {' '.join(words)}"


def alignment_prompts(n: int = 200) -> list:
    """n fixed prompts (first half one object, second half two objects), each naming every object's color and shape,
    sometimes its size and the background. Every prompt parses with judge.parse_caption."""
    rng = random.Random(ALIGNMENT_SEED)
    prompts = []
    for i in range(n):
        if i < n // 2:
            text = _object_phrase(rng)
        else:
            relation = " to the left of " if rng.random() < P_ALIGNMENT_LEFT_OF else " and "
            text = _object_phrase(rng) + relation + _object_phrase(rng)
        if rng.random() < P_ALIGNMENT_BACKGROUND:
            text += f" on a {rng.choice(tuple(shapes.BACKGROUNDS))} background"
        prompts.append(text)
    return prompts


def _pair(prompt: str, negative: str, kind: str, kept: list) -> dict:
    return {"prompt": prompt, "negative": negative, "kind": kind, "negated": negative, "kept": kept}


def negative_pairs() -> list:
    """The negative-prompt evaluation pairs, two kinds:

    under-specified: the prompt leaves an attribute free and the negative names one value of it ("a circle on a white
        background", negative "red"); kept = the attributes the prompt names.
    removal: the prompt names two objects and the negative one of them ("a red circle and a blue square", negative
        "blue square"; "two shapes on a black background", negative "square"); kept = what must remain.
    "negated" is the phrase that must be absent (the negative itself); "kept" lists phrases judge.has_attribute
    must find present.
    """
    colors, backgrounds = tuple(shapes.COLORS), tuple(shapes.BACKGROUNDS)
    pairs = []
    for i, (shape, background) in enumerate((s, b) for s in shapes.SHAPES for b in backgrounds):
        pairs.append(_pair(f"{shapes.article(shape)} {shape} on a {background} background", colors[i % len(colors)],
                           "under-specified", [shape, background]))
    for i, color in enumerate(colors):
        background, shape = backgrounds[i % len(backgrounds)], shapes.SHAPES[i % len(shapes.SHAPES)]
        pairs.append(_pair(f"{shapes.article(color)} {color} shape on a {background} background", shape,
                           "under-specified", [color, background]))
    for i, shape in enumerate(shapes.SHAPES):
        color, background = colors[i], backgrounds[i]
        pairs.append(_pair(f"{shapes.article(color)} {color} {shape}", background, "under-specified",
                           [f"{color} {shape}"]))
    for background in backgrounds:
        for shape in shapes.SHAPES:
            pairs.append(_pair(f"two shapes on a {background} background", shape, "removal", [background]))
    for i in range(9):
        kept_color, removed_color = colors[i % 6], colors[(i + 1 + i // 6) % 6]
        kept_shape, removed_shape = shapes.SHAPES[i % 3], shapes.SHAPES[(i // 3) % 3]
        kept, removed = f"{kept_color} {kept_shape}", f"{removed_color} {removed_shape}"
        prompt = f"{shapes.article(kept)} {kept} and {shapes.article(removed)} {removed}"
        if i % 2:
            background = backgrounds[i % 3]
            pairs.append(_pair(f"{prompt} on a {background} background", removed, "removal", [kept, background]))
        else:
            pairs.append(_pair(prompt, removed, "removal", [kept]))
    return pairs


def negative_outcome(reading: judge.Reading, pair: dict) -> dict:
    """The negative-prompt rule, for both kinds: removed = the negated attribute is absent (the paper's success);
    kept = every kept phrase is present; success = removed (the paper's rate; report kept beside it)."""
    removed = not judge.has_attribute(reading, pair["negated"])
    kept = all(judge.has_attribute(reading, phrase) for phrase in pair["kept"])
    return {"removed": removed, "kept": kept, "success": removed}


def reference_images(n: int):
    """(images uint8 (n, 64, 64, 3), captions): the real samples FID statistics are computed on."""
    return shapes.batch(REFERENCE_SEED, 0, n)
