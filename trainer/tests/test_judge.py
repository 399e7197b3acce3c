import pytest

from trainer import eval_sets, judge, shapes
from trainer.judge import ObjectSpec, Requirements
from trainer.judge_accuracy import accuracy, box_blur
from trainer.shapes import Scene, SceneObject

RED_CIRCLE = SceneObject("circle", "red", "small", x=4, y=20, extent=14)
BLUE_SQUARE = SceneObject("square", "blue", "large", x=30, y=10, extent=28)
TWO = shapes.render(Scene("white", (BLUE_SQUARE, RED_CIRCLE)))  # red circle on the left


def test_judge_reads_clean_samples_exactly():
    result = accuracy(n=600)
    assert result["scene_accuracy"] >= 0.995, result["scene_errors"]
    assert result["caption_accuracy"] == 1.0, result["scene_errors"]


def test_judge_reads_slightly_blurred_samples():
    assert accuracy(box_blur(1), n=200)["scene_accuracy"] >= 0.98


def test_read_image_gives_background_and_objects_left_to_right():
    reading = judge.read_image(TWO)
    assert reading.background == "white"
    assert [(o.color, o.shape, o.size, o.bbox) for o in reading.objects] == [
        ("red", "circle", "small", (4, 20, 18, 34)), ("blue", "square", "large", (30, 10, 58, 38))]


@pytest.mark.parametrize("shape", shapes.SHAPES)
@pytest.mark.parametrize("extent", [12, 18, 24, 32])
def test_every_shape_and_size_reads_back(shape, extent):
    size = "small" if extent <= 18 else "large"
    image = shapes.render(Scene("black", (SceneObject(shape, "yellow", size, 9, 9, extent),)))
    [obj] = judge.read_image(image).objects
    assert (obj.shape, obj.size, obj.color) == (shape, size, "yellow")


def test_specks_and_off_palette_pixels_are_ignored():
    image = TWO.copy()
    image[50:53, 5:8] = shapes.COLORS["green"]  # 9 px speck
    image[55:64, 30:40] = (180, 180, 60)  # far from every palette color
    assert [o.color for o in judge.read_image(image).objects] == ["red", "blue"]


def test_parse_caption():
    assert judge.parse_caption("a large red circle on a white background") == Requirements(
        1, (ObjectSpec("red", "circle", "large"),), "white")
    assert judge.parse_caption("A blue  square") == Requirements(1, (ObjectSpec("blue", "square"),))
    assert judge.parse_caption("an orange shape") == Requirements(1, (ObjectSpec("orange"),))
    assert judge.parse_caption("two shapes on a black background") == Requirements(2, (), "black")
    assert judge.parse_caption("a yellow square to the left of a purple circle") == Requirements(
        2, (ObjectSpec("yellow", "square"), ObjectSpec("purple", "circle")), left_of=True)
    assert judge.parse_caption("a green triangle and an orange circle on a black background") == Requirements(
        2, (ObjectSpec("green", "triangle"), ObjectSpec("orange", "circle")), "black")
    for bad in ("a dog", "a red red circle", "a circle on a pink background", "three shapes", ""):
        with pytest.raises(ValueError):
            judge.parse_caption(bad)


@pytest.mark.parametrize("caption, truth", [
    ("a red circle and a blue square on a white background", True),
    ("a blue square and a red circle", True),
    ("two shapes", True),
    ("a red circle to the left of a blue square", True),
    ("a blue square to the left of a red circle", False),
    ("a small red circle and a large blue shape", True),
    ("a large red circle and a blue square", False),
    ("a red circle and a green square", False),
    ("a red circle and a blue square on a black background", False),
    ("a red circle", False),  # one object named, two present
    ("a red shape and a red circle", False),
])
def test_satisfies(caption, truth):
    assert judge.judge(TWO, caption) is truth


UPSIDE_DOWN = shapes.render(Scene("white", (SceneObject("triangle", "red", "large", 20, 20, 24),)))[::-1].copy()


@pytest.mark.parametrize("image, caption, reason", [
    (TWO, "a blue square and a red circle on a white background", None),
    (TWO, "a red circle and a blue square on a black background", "background"),
    (shapes.render(Scene("white", ())), "a red circle", "empty"),
    (TWO, "a red circle", "extra object"),
    (shapes.render(Scene("white", (RED_CIRCLE,))), "a red circle and a blue square", "missing object"),
    (UPSIDE_DOWN, "a red triangle", "unknown shape"),
    (UPSIDE_DOWN, "a blue shape", "color"),  # no shape named: an unreadable one is not the failure
    (TWO, "a red circle and a green square", "color"),
    (shapes.render(Scene("white", (RED_CIRCLE,))), "a large red circle", "size"),
    (TWO, "a red triangle and a blue square", "shape"),
    (TWO, "a blue circle and a red square", "binding"),  # each attribute present, on the wrong objects
    (TWO, "a large red circle and a blue square", "binding"),  # "large" is the square's
    (TWO, "a blue square to the left of a red circle", "left of"),
])
def test_failure_names_the_first_unmet_requirement(image, caption, reason):
    requirements = judge.parse_caption(caption)
    assert judge.failure(judge.read_image(image), requirements) == reason
    assert reason is None or reason in judge.FAILURES
    assert judge.satisfies(judge.read_image(image), requirements) is (reason is None)


def test_has_attribute():
    reading = judge.read_image(TWO)
    for present in ("red", "blue", "circle", "square", "white", "red circle", "large blue square", "small"):
        assert judge.has_attribute(reading, present), present
    for absent in ("green", "triangle", "black", "blue circle", "large red circle"):
        assert not judge.has_attribute(reading, absent), absent


def test_eval_sets_parse_and_follow_the_rule():
    prompts = eval_sets.alignment_prompts()
    assert len(prompts) == 200 and prompts == eval_sets.alignment_prompts()
    assert [judge.parse_caption(p).count for p in prompts] == [1] * 100 + [2] * 100
    pairs = eval_sets.negative_pairs()
    assert {p["kind"] for p in pairs} == {"under-specified", "removal"}
    for pair in pairs:
        judge.parse_caption(pair["prompt"])
        assert pair["negated"] == pair["negative"] and pair["kept"]
    removal = {"prompt": "a red circle and a blue square", "negative": "blue square", "kind": "removal",
               "negated": "blue square", "kept": ["red circle"]}
    assert eval_sets.negative_outcome(judge.read_image(TWO), removal) == {
        "removed": False, "kept": True, "success": False}
    alone = shapes.render(Scene("white", (RED_CIRCLE,)))
    assert eval_sets.negative_outcome(judge.read_image(alone), removal) == {
        "removed": True, "kept": True, "success": True}
