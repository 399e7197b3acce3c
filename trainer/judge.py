"""The pixel judge: reads a shapes-world image back into a scene and checks captions against it.

    read_image(image) -> Reading            background + objects (color, shape, size, bbox)
    parse_caption(caption) -> Requirements  what a caption names
    satisfies(reading, requirements)        every named attribute present, object count and relation right
    failure(reading, requirements)          the first requirement it fails (FAILURES), or None
    has_attribute(reading, phrase)          "red", "square", "blue square", "white" ... present in the image?

Reading an image: every pixel goes to its nearest palette color (or to none when it is far from every palette color,
as blurred edges of generated images are); the background is the majority background color; the objects are the
8-connected components of each object color, specks below MIN_AREA pixels dropped. A component's shape comes from
which corners of its bounding box it fills, measured over a small window (a fifth of the box) rather than a single
pixel, so slightly blurry images read the same: a square fills all four, a circle none, a triangle the bottom two.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

import numpy as np

from trainer.shapes import BACKGROUNDS, COLORS, SHAPES, SIZES

PALETTE_NAMES = tuple(BACKGROUNDS) + tuple(COLORS)
PALETTE = np.array([BACKGROUNDS[n] for n in BACKGROUNDS] + [COLORS[n] for n in COLORS], dtype=np.float32)  # (P, 3)
MAX_COLOR_DISTANCE = 60.0  # a pixel farther than this (RGB Euclidean) from every palette color belongs to none
MIN_AREA = 20  # smaller components are specks, not objects (the smallest object, a 12 px triangle, has 84 px)
CORNER_FRACTION = 0.2  # corner window side as a fraction of the bbox side
FILLED = 0.5  # a corner window is filled when at least this fraction of it belongs to the component
SIZE_THRESHOLD = (SIZES["small"][1] + SIZES["large"][0]) / 2  # bbox side: small below, large above
CORNER_PATTERNS = {  # (top-left, top-right, bottom-left, bottom-right) filled
    (True, True, True, True): "square",
    (False, False, False, False): "circle",
    (False, False, True, True): "triangle",
}
UNKNOWN = "unknown"


@dataclass(frozen=True)
class ObjectReading:
    color: str
    shape: str  # circle | square | triangle | unknown
    size: str  # small | large
    bbox: tuple  # (x0, y0, x1, y1), x1/y1 exclusive
    area: int

    @property
    def center_x(self) -> float:
        return (self.bbox[0] + self.bbox[2]) / 2


@dataclass(frozen=True)
class Reading:
    background: str
    objects: tuple  # tuple[ObjectReading, ...], ordered left to right


@dataclass(frozen=True)
class ObjectSpec:
    """What a caption says about one object; None where it says nothing."""
    color: Optional[str] = None
    shape: Optional[str] = None
    size: Optional[str] = None


@dataclass(frozen=True)
class Requirements:
    count: int  # number of objects the caption implies
    objects: tuple = ()  # tuple[ObjectSpec, ...]: described objects ("two shapes" describes none)
    background: Optional[str] = None
    left_of: bool = False  # objects[0] lies to the left of objects[1]


def palette_indices(image: np.ndarray) -> np.ndarray:
    """(H, W) int index into PALETTE_NAMES of each pixel's nearest palette color, -1 where none is near."""
    pixels = image.reshape(-1, 3).astype(np.float32)  # (H*W, 3)
    squared = (PALETTE ** 2).sum(1)[None] - 2 * pixels @ PALETTE.T  # distance^2 minus |pixel|^2, (H*W, P)
    nearest = squared.argmin(1)
    too_far = squared.min(1) + (pixels ** 2).sum(1) > MAX_COLOR_DISTANCE ** 2
    nearest[too_far] = -1
    return nearest.reshape(image.shape[:2])


def _components(indices: np.ndarray, first_object_index: int):
    """8-connected components of equal palette index >= first_object_index, as (index, [(row, start, end)]).

    Works on horizontal runs with a union-find, a few hundred Python steps per image instead of one per pixel.
    """
    height, width = indices.shape
    padded = np.full((height, width + 2), -1, dtype=np.int64)
    padded[:, 1:-1] = np.where(indices >= first_object_index, indices, -1)
    boundaries = padded[:, 1:] != padded[:, :-1]  # (H, W+1): a run starts or ends before padded column j+1
    runs, runs_by_row = [], []  # runs: (row, start, end exclusive, palette index)
    for row in range(height):
        edges = np.flatnonzero(boundaries[row])
        row_runs = []
        for start, end in zip(edges[:-1], edges[1:]):
            index = padded[row, start + 1]
            if index >= 0:
                row_runs.append(len(runs))
                runs.append((row, int(start), int(end), int(index)))
        runs_by_row.append(row_runs)
    parent = list(range(len(runs)))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for row in range(1, height):
        for i in runs_by_row[row]:
            _, start, end, index = runs[i]
            for j in runs_by_row[row - 1]:
                _, above_start, above_end, above_index = runs[j]
                if index == above_index and above_start <= end and start <= above_end:  # overlap or diagonal touch
                    parent[root(i)] = root(j)
    groups = {}
    for i, (row, start, end, index) in enumerate(runs):
        groups.setdefault(root(i), (index, []))[1].append((row, start, end))
    return list(groups.values())


def classify_shape(component: np.ndarray) -> str:
    """Shape of a component from its (h, w) bool mask cropped to its bbox, by which corners it fills."""
    height, width = component.shape
    k = max(2, round(CORNER_FRACTION * min(height, width)))
    corners = (component[:k, :k], component[:k, -k:], component[-k:, :k], component[-k:, -k:])
    filled = tuple(bool(corner.mean() >= FILLED) for corner in corners)
    return CORNER_PATTERNS.get(filled, UNKNOWN)


def read_image(image: np.ndarray) -> Reading:
    """Read a uint8 (H, W, 3) image back into background and objects."""
    indices = palette_indices(image)
    background_counts = [(indices == i).sum() for i in range(len(BACKGROUNDS))]
    background = PALETTE_NAMES[int(np.argmax(background_counts))]
    objects = []
    for index, runs in _components(indices, len(BACKGROUNDS)):
        area = sum(end - start for _, start, end in runs)
        if area < MIN_AREA:
            continue
        y0, y1 = min(r[0] for r in runs), max(r[0] for r in runs) + 1
        x0, x1 = min(r[1] for r in runs), max(r[2] for r in runs)
        crop = np.zeros((y1 - y0, x1 - x0), dtype=bool)
        for row, start, end in runs:
            crop[row - y0, start - x0:end - x0] = True
        objects.append(ObjectReading(
            color=PALETTE_NAMES[index], shape=classify_shape(crop),
            size="small" if max(x1 - x0, y1 - y0) < SIZE_THRESHOLD else "large",
            bbox=(x0, y0, x1, y1), area=area))
    objects.sort(key=lambda o: (o.center_x, o.bbox[1]))
    return Reading(background, tuple(objects))


_OBJECT_WORDS = {**{c: "color" for c in COLORS}, **{s: "shape" for s in SHAPES}, **{s: "size" for s in SIZES}}


def parse_object(phrase: str) -> ObjectSpec:
    """ "a large red circle", "blue square", "red", "an orange shape" -> ObjectSpec. Raises ValueError."""
    words = phrase.lower().split()
    if words and words[0] in ("a", "an"):
        words = words[1:]
    if words and words[-1] == "shape":
        words = words[:-1]
    spec = {}
    for word in words:
        kind = _OBJECT_WORDS.get(word)
        if kind is None or kind in spec:
            raise ValueError(f"cannot parse object phrase {phrase!r}")
        spec[kind] = word
    if not spec and phrase.lower().split()[-1:] != ["shape"]:
        raise ValueError(f"cannot parse object phrase {phrase!r}")
    return ObjectSpec(**spec)


_BACKGROUND_RE = re.compile(r"^(.*) on a (\w+) background$")


def parse_caption(caption: str) -> Requirements:
    """What a shapes-world caption names. Raises ValueError on text outside the caption grammar."""
    text = " ".join(caption.lower().split())
    background = None
    match = _BACKGROUND_RE.match(text)
    if match:
        text, background = match.groups()
        if background not in BACKGROUNDS:
            raise ValueError(f"unknown background {background!r} in {caption!r}")
    if text == "two shapes":
        return Requirements(count=2, background=background)
    if " to the left of " in text:
        first, second = text.split(" to the left of ")
        return Requirements(2, (parse_object(first), parse_object(second)), background, left_of=True)
    if " and " in text:
        first, second = text.split(" and ")
        return Requirements(2, (parse_object(first), parse_object(second)), background)
    return Requirements(1, (parse_object(text),), background)


OBJECT_ATTRIBUTES = ("color", "size", "shape")  # what a caption may say of an object (ObjectSpec), in failure()'s order
FAILURES = ("background", "empty", "extra object", "missing object", "unknown shape", *OBJECT_ATTRIBUTES, "binding",
            "left of")  # failure()'s answers, in the order it checks them


def failure(reading: Reading, requirements: Requirements) -> Optional[str]:
    """The first requirement the reading fails, in FAILURES order, or None when it satisfies the caption.

    background; the object count (none, more or fewer than named); then the named objects' attributes: a shape the
    judge cannot read, a color, size or shape no pairing of objects and specs gets right, "binding" when each
    attribute fits some pairing but no pairing fits them all (a red square and a blue circle for "a red circle and a
    blue square"); last a named left-of relation."""
    if requirements.background is not None and reading.background != requirements.background:
        return "background"
    found, wanted = len(reading.objects), requirements.count
    if found != wanted:
        return "empty" if found == 0 else "extra object" if found > wanted else "missing object"
    if not requirements.objects:
        return None
    orders = [reading.objects] if wanted == 1 else [reading.objects, reading.objects[::-1]]
    pairings = [list(zip(order, requirements.objects)) for order in orders]
    matched = [order for order, pairing in zip(orders, pairings) if all(matches(o, spec) for o, spec in pairing)]
    if not matched:
        if any(spec.shape for spec in requirements.objects) and any(obj.shape == UNKNOWN for obj in reading.objects):
            return "unknown shape"
        for attribute in OBJECT_ATTRIBUTES:
            if not any(all(_fits(obj, spec, attribute) for obj, spec in pairing) for pairing in pairings):
                return attribute
        return "binding"
    if requirements.left_of and not any(order[0].center_x < order[1].center_x for order in matched):
        return "left of"
    return None


def _fits(obj: ObjectReading, spec: ObjectSpec, attribute: str) -> bool:
    want = getattr(spec, attribute)
    return want is None or want == getattr(obj, attribute)


def matches(obj: ObjectReading, spec: ObjectSpec) -> bool:
    return all(_fits(obj, spec, attribute) for attribute in OBJECT_ATTRIBUTES)


def satisfies(reading: Reading, requirements: Requirements) -> bool:
    """Every attribute the caption names is present, the object count is right, and so is a named left-of."""
    return failure(reading, requirements) is None


def has_attribute(reading: Reading, phrase: str) -> bool:
    """Is a background word ("white") or an object phrase ("red", "square", "blue square") present in the image?"""
    phrase = phrase.strip().lower()
    if phrase in BACKGROUNDS:
        return reading.background == phrase
    spec = parse_object(phrase)
    return any(matches(obj, spec) for obj in reading.objects)


def judge(image: np.ndarray, caption: str) -> bool:
    """Is the caption true of the image?"""
    return satisfies(read_image(image), parse_caption(caption))
