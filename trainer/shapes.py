"""The shapes world: a seeded, deterministic generator of 64x64 images and captions that are true of them.

A scene is a flat background and one or two flat-colored shapes whose bounding boxes do not touch (they are at least
GAP pixels apart along x or y, so the pixel judge can tell them apart). Rendering is exact and crisp, with no
anti-aliasing: a shape of extent s fills an s x s bounding box exactly, which is what lets trainer/judge.py read the
scene back without error.

    sample(seed, index) -> (image uint8 (64, 64, 3), caption, scene)
    batch(seed, start, n) -> (images uint8 (n, 64, 64, 3), captions)

(seed, index) alone decides a sample, on any machine: every sample draws from its own random.Random, seeded with a
SHA-256 of the pair, never from global state.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

IMAGE_SIZE = 64
BACKGROUNDS = {"white": (240, 240, 240), "gray": (128, 128, 128), "black": (20, 20, 20)}
COLORS = {
    "red": (220, 40, 40), "green": (40, 170, 70), "blue": (40, 80, 220),
    "yellow": (235, 200, 40), "purple": (150, 60, 190), "orange": (240, 130, 30),
}
SHAPES = ("circle", "square", "triangle")
SIZES = {"small": (12, 18), "large": (24, 32)}  # inclusive range of the bounding box side, px
GAP = 4  # minimum distance between the bounding boxes of two objects, px
MARGIN = 1  # minimum distance from a bounding box to the image border, px

# How often each part of a caption is left out, so the models also learn under-specified prompts.
P_OMIT_SIZE = 0.5
P_OMIT_COLOR = 0.25
P_OMIT_SHAPE = 0.2  # the shape word becomes "shape"
P_OMIT_BACKGROUND = 0.4
P_TWO_OBJECTS = 0.5
P_TWO_SHAPES = 0.25  # a two-object scene captioned just "two shapes"
P_LEFT_OF = 0.5  # of the remaining two-object captions, when the objects are side by side


@dataclass(frozen=True)
class SceneObject:
    shape: str  # circle | square | triangle
    color: str  # a key of COLORS
    size: str  # small | large
    x: int  # left column of the bounding box
    y: int  # top row of the bounding box
    extent: int  # side of the (square) bounding box, px

    @property
    def x_end(self) -> int:
        return self.x + self.extent

    @property
    def y_end(self) -> int:
        return self.y + self.extent


@dataclass(frozen=True)
class Scene:
    background: str  # a key of BACKGROUNDS
    objects: tuple  # tuple[SceneObject, ...], one or two


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


@lru_cache(maxsize=None)
def shape_mask(shape: str, extent: int) -> np.ndarray:
    """(extent, extent) bool mask of a shape that touches all four sides of its bounding box."""
    centers = np.arange(extent) + 0.5  # pixel centers
    rows, cols = np.meshgrid(centers, centers, indexing="ij")
    half = extent / 2
    if shape == "square":
        mask = np.ones((extent, extent), dtype=bool)
    elif shape == "circle":
        mask = (rows - half) ** 2 + (cols - half) ** 2 <= half ** 2
    elif shape == "triangle":
        # Apex at the top middle, base along the bottom row; a row's half-width is taken at its lower edge so that
        # the top row holds the apex pixels and the bottom row is full.
        half_width = (rows + 0.5) / extent * half
        mask = np.abs(cols - half) <= half_width
    else:
        raise ValueError(f"unknown shape {shape!r}")
    mask.setflags(write=False)
    return mask


def render(scene: Scene) -> np.ndarray:
    """The scene's pixels, uint8 (64, 64, 3)."""
    image = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    image[:] = BACKGROUNDS[scene.background]
    for obj in scene.objects:
        region = image[obj.y:obj.y_end, obj.x:obj.x_end]
        region[shape_mask(obj.shape, obj.extent)] = COLORS[obj.color]
    return image


def _rng(seed: int, index: int) -> random.Random:
    digest = hashlib.sha256(f"shapes-world:{seed}:{index}".encode()).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


def _apart(a: SceneObject, b: SceneObject) -> bool:
    return (a.x_end + GAP <= b.x or b.x_end + GAP <= a.x or
            a.y_end + GAP <= b.y or b.y_end + GAP <= a.y)


def side_by_side(left: SceneObject, right: SceneObject) -> bool:
    """True when `left` lies entirely to the left of `right` (what "to the left of" means in a caption)."""
    return left.x_end + GAP <= right.x


def _random_object(rng: random.Random) -> SceneObject:
    size = rng.choice(("small", "large"))
    low, high = SIZES[size]
    extent = rng.randint(low, high)
    return SceneObject(
        shape=rng.choice(SHAPES), color=rng.choice(tuple(COLORS)), size=size,
        x=rng.randint(MARGIN, IMAGE_SIZE - MARGIN - extent), y=rng.randint(MARGIN, IMAGE_SIZE - MARGIN - extent),
        extent=extent)


def random_scene(rng: random.Random) -> Scene:
    background = rng.choice(tuple(BACKGROUNDS))
    if rng.random() >= P_TWO_OBJECTS:
        return Scene(background, (_random_object(rng),))
    while True:  # rejection sampling; two large objects often do not fit and are redrawn
        first, second = _random_object(rng), _random_object(rng)
        if _apart(first, second):
            return Scene(background, (first, second))


def describe(obj: SceneObject, rng: random.Random) -> str:
    """A noun phrase true of obj, with size, color and shape each sometimes left out: "a large red circle"."""
    words = []
    if rng.random() >= P_OMIT_SIZE:
        words.append(obj.size)
    if rng.random() >= P_OMIT_COLOR:
        words.append(obj.color)
    words.append(obj.shape if rng.random() >= P_OMIT_SHAPE else "shape")
    return f"{article(words[0])} {' '.join(words)}"


def caption(scene: Scene, rng: random.Random) -> str:
    """A caption true of the scene; what it names is present, what it leaves out is free."""
    if len(scene.objects) == 1:
        text = describe(scene.objects[0], rng)
    elif rng.random() < P_TWO_SHAPES:
        text = "two shapes"
    else:
        a, b = scene.objects
        if side_by_side(b, a):
            a, b = b, a
        if side_by_side(a, b) and rng.random() < P_LEFT_OF:
            text = f"{describe(a, rng)} to the left of {describe(b, rng)}"
        else:
            if rng.random() < 0.5:
                a, b = b, a
            text = f"{describe(a, rng)} and {describe(b, rng)}"
    if rng.random() >= P_OMIT_BACKGROUND:
        text += f" on a {scene.background} background"
    return text


def sample_scene(seed: int, index: int):
    """(scene, caption) of sample (seed, index), without rendering it."""
    rng = _rng(seed, index)
    scene = random_scene(rng)
    return scene, caption(scene, rng)


def sample(seed: int, index: int):
    """(image uint8 (64, 64, 3), caption, scene) for one (seed, index)."""
    scene, text = sample_scene(seed, index)
    return render(scene), text, scene


def batch(seed: int, start: int, n: int):
    """Samples start .. start+n-1 of a seed: (images uint8 (n, 64, 64, 3), captions list[str])."""
    images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    captions = []
    for i in range(n):
        images[i], text, _ = sample(seed, start + i)
        captions.append(text)
    return images, captions
