"""trainer.spread: prompts that leave one attribute free, the judge's reading of it, and the comparison."""
import numpy as np
import pytest

from trainer import judge, shapes, spread


def test_each_kind_names_everything_but_its_free_attribute():
    for kind in spread.KINDS:
        for prompt in spread.prompts(kind):
            named = judge.parse_caption(prompt)
            spec = named.objects[0]
            assert (named.count, spec.shape in shapes.SHAPES) == (1, True), prompt
            assert (named.background is None, spec.color is None, spec.size is None) == {
                "background": (True, False, True), "color": (False, True, True), "size": (False, False, True)}[kind]
    assert [len(spread.prompts(kind)) for kind in spread.KINDS] == [18, 9, 54]
    with pytest.raises(ValueError):
        spread.prompts("shape")


class CyclingSampler:
    """Draws what each prompt names, exactly, with the attribute it leaves free taken in turn from `choices` (one
    value: a collapsed model; every value: a uniformly spread one); sizes left free otherwise are large."""

    def __init__(self, **choices):
        self.choices = choices

    def images(self, prompts, seeds):
        images = []
        for i, prompt in enumerate(prompts):
            named = judge.parse_caption(prompt)
            spec = named.objects[0]
            free = "background" if named.background is None else "color" if spec.color is None else "size"
            pick = lambda attribute, given: given or (  # noqa: E731
                self.choices[attribute][i % len(self.choices[attribute])] if attribute == free else "large")
            size = pick("size", spec.size)
            obj = shapes.SceneObject(spec.shape, pick("color", spec.color), size, 10, 10, shapes.SIZES[size][1])
            images.append(shapes.render(shapes.Scene(pick("background", named.background), (obj,))))
        return np.stack(images)


def test_spread_reads_what_was_drawn_and_compare_gives_the_gap_and_the_distance():
    collapsed = spread.measure(CyclingSampler(background=["black"], color=["red"], size=["small"]),
                               seeds_per_prompt=2)
    assert collapsed == {
        "background": {"counts": {"black": 36}, "read": 36, "n": 36, "mode_share": 1.0, "seeds_per_prompt": 2},
        "color": {"counts": {"red": 18}, "read": 18, "n": 18, "mode_share": 1.0, "seeds_per_prompt": 2},
        "size": {"counts": {"small": 108}, "read": 108, "n": 108, "mode_share": 1.0, "seeds_per_prompt": 2}}
    spread_out = spread.measure(CyclingSampler(background=list(shapes.BACKGROUNDS), color=list(shapes.COLORS),
                                               size=list(shapes.SIZES)), seeds_per_prompt=6)
    assert spread_out["background"]["counts"] == {"black": 36, "gray": 36, "white": 36}
    assert spread_out["color"]["counts"] == {color: 9 for color in shapes.COLORS}
    assert spread_out["size"]["counts"] == {"large": 162, "small": 162}
    gaps = spread.compare(collapsed, spread_out)
    assert gaps["background"]["mode_share_gap_points"] == pytest.approx(100 * (1 - 1 / 3))
    assert gaps["background"]["total_variation"] == pytest.approx(2 / 3)
    assert gaps["color"]["total_variation"] == pytest.approx(5 / 6)
    assert gaps["size"]["mode_share_gap_points"] == pytest.approx(50.0)


def test_an_image_without_objects_has_no_color_or_size():
    empty = judge.read_image(shapes.render(shapes.Scene("gray", ())))
    assert [spread.free_value(empty, kind) for kind in spread.KINDS] == ["gray", None, None]
    assert spread.summarize([None, None]) == {"counts": {}, "read": 0, "n": 2, "mode_share": None}
