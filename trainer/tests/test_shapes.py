import hashlib

import numpy as np
import pytest

from trainer import judge, shapes
from trainer.shapes import Scene, SceneObject

N = 1000


@pytest.fixture(scope="module")
def samples():
    return [shapes.sample(7, i) for i in range(N)]


def test_same_seed_and_index_give_the_same_sample():
    image, caption, scene = shapes.sample(3, 17)
    again = shapes.sample(3, 17)
    assert np.array_equal(image, again[0]) and caption == again[1] and scene == again[2]
    assert shapes.sample(4, 17)[2] != scene and shapes.sample(3, 18)[2] != scene


def test_samples_are_pinned_across_machines_and_versions():
    images, captions = shapes.batch(0, 0, 64)
    digest = hashlib.sha256(images.tobytes() + "\n".join(captions).encode()).hexdigest()
    assert digest == "9a42fa61f608674de7ee7ea00a6a2176fbf4e5dc0bd06499dbe784bcfa0c2ac1"
    assert shapes.sample(0, 0)[1] == "a small green shape to the left of a small green triangle on a white background"


def test_batch_is_the_samples_stacked():
    images, captions = shapes.batch(5, 100, 8)
    assert images.shape == (8, 64, 64, 3) and images.dtype == np.uint8
    for i in range(8):
        image, caption, _ = shapes.sample(5, 100 + i)
        assert np.array_equal(images[i], image) and captions[i] == caption


def test_pixels_are_palette_colors_and_objects_follow_the_rules(samples):
    def packed(pixels):
        return np.asarray(pixels, dtype=np.int64).reshape(-1, 3) @ np.array([65536, 256, 1])

    palette = packed(list(shapes.BACKGROUNDS.values()) + list(shapes.COLORS.values()))
    for image, _, scene in samples:
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        assert np.isin(packed(image), palette).all()
        assert scene.background in shapes.BACKGROUNDS and 1 <= len(scene.objects) <= 2
        for obj in scene.objects:
            low, high = shapes.SIZES[obj.size]
            assert low <= obj.extent <= high
            assert obj.color in shapes.COLORS and obj.shape in shapes.SHAPES
            assert shapes.MARGIN <= obj.x and obj.x_end <= 64 - shapes.MARGIN
            assert shapes.MARGIN <= obj.y and obj.y_end <= 64 - shapes.MARGIN
        if len(scene.objects) == 2:
            a, b = scene.objects
            assert (a.x_end + shapes.GAP <= b.x or b.x_end + shapes.GAP <= a.x or
                    a.y_end + shapes.GAP <= b.y or b.y_end + shapes.GAP <= a.y)


def test_render_is_crisp_and_fills_exactly_the_bounding_box():
    obj = SceneObject("triangle", "red", "large", x=10, y=20, extent=25)
    image = shapes.render(Scene("gray", (obj,)))
    red = np.all(image == shapes.COLORS["red"], axis=-1)
    rows, cols = np.nonzero(red)
    assert (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1) == (10, 20, 35, 45)
    assert np.array_equal(red[20:45, 10:35], shapes.shape_mask("triangle", 25))
    assert np.all(image[~red] == shapes.BACKGROUNDS["gray"])


@pytest.mark.parametrize("extent", [12, 17, 24, 32])
def test_shape_masks_touch_every_side_and_fill_the_right_corners(extent):
    for shape in shapes.SHAPES:
        mask = shapes.shape_mask(shape, extent)
        assert mask.shape == (extent, extent)
        assert mask[0].any() and mask[-1].any() and mask[:, 0].any() and mask[:, -1].any()
        assert np.array_equal(mask, mask[:, ::-1])  # symmetric left-right
    square, circle, triangle = (shapes.shape_mask(s, extent) for s in ("square", "circle", "triangle"))
    assert square.all()
    assert not circle[0, 0] and not circle[-1, -1] and np.array_equal(circle, circle[::-1])
    assert triangle[-1].all() and not triangle[0, 0] and triangle[0, extent // 2]
    assert (triangle.sum(1)[1:] >= triangle.sum(1)[:-1]).all()  # widens downwards


def test_captions_name_only_what_is_there_and_cover_every_form(samples):
    forms = set()
    for _, caption, scene in samples:
        requirements = judge.parse_caption(caption)
        assert requirements.count == len(scene.objects)
        if requirements.background:
            assert requirements.background == scene.background
        if requirements.left_of:
            a, b = scene.objects
            assert shapes.side_by_side(a, b) or shapes.side_by_side(b, a)
        forms.add("background" if " background" in caption else "no background")
        forms.update(f for f in ("two shapes", " to the left of ", " and ", " shape", "large", "small", "an ")
                     if f in caption)
    assert forms == {"background", "no background", "two shapes", " to the left of ", " and ", " shape", "large",
                     "small", "an "}


def test_left_of_captions_name_the_left_object_first():
    seen = 0
    for i in range(400):
        _, caption, scene = shapes.sample(11, i)
        requirements = judge.parse_caption(caption)
        if requirements.left_of:
            seen += 1
            left, right = sorted(scene.objects, key=lambda o: o.x)
            assert shapes.side_by_side(left, right)
            assert judge.matches(left, requirements.objects[0]) and judge.matches(right, requirements.objects[1])
    assert seen > 20
