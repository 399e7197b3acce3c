"""trainer.evaluate on tiny random models: a distilled package and a teacher give one JSON row each."""
import json
import shutil
import signal

import numpy as np
import pytest

from trainer import distill, evaluate
from trainer.models.vae import load_vae
from trainer.sample import TextEncoder, load_teacher

from test_distill import job  # trainer/tests is on sys.path under pytest
from tiny_models import write_tiny_checkpoints

SMALL = ["--n", "4", "--fid-n", "8", "--images-per-pair", "1", "--spread-seeds", "1", "--threads", "1"]


@pytest.fixture(scope="module")
def distilled(tmp_path_factory):
    directory = tmp_path_factory.mktemp("evaluate")
    checkpoints = write_tiny_checkpoints(directory)
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    code = distill.main(["--config", str(job(checkpoints, directory, steps=2)), "--out", str(directory / "tiny-pgsb")])
    for signum, handler in handlers.items():
        signal.signal(signum, handler)
    assert code == 0
    return directory


def row_of(capsys, argv):
    evaluate.main(argv)
    return json.loads(capsys.readouterr().out)


def test_a_package_row_has_every_metric(distilled, capsys, tmp_path):
    out = tmp_path / "row.json"
    row = row_of(capsys, ["--package", str(distilled / "tiny-pgsb"), *SMALL, "--nasa-scales=0,0.5", "--out",
                          str(out)])
    assert json.loads(out.read_text()) == row
    assert (row["model"], row["method"], row["backbone"], row["sampler"], row["steps"]) == (
        "tiny-pgsb", "pg-sb", "unet-eps", "one-step", 2)
    assert row["alignment"]["n"] == 4 and row["alignment"]["n_single"] == row["alignment"]["n_two"] == 2
    assert isinstance(row["clip_score"], float) and -100 <= row["clip_score"] <= 100
    manifest = json.loads((distilled / "tiny-pgsb" / "model.json").read_text())
    # the same student, prompts and seeds as distill's final FID: the same number
    assert row["fid"] == manifest["training"]["metrics"]["fid"]
    negative = row["negative"]
    assert negative["images_per_pair"] == 1 and negative["pairs"] == 36
    assert sorted(negative["by_nasa_scale"]) == ["0.0", "0.5"] and negative["chosen_nasa_scale"] in (0.0, 0.5)
    for rates in negative["by_nasa_scale"].values():
        assert set(rates) == {"success", "kept", "success_and_kept", "by_kind"} and 0 <= rates["success"] <= 1
        kinds = rates["by_kind"]
        assert sorted(kinds) == ["removal", "under-specified"] and sum(k["n"] for k in kinds.values()) == 36
        for key in ("success", "kept", "success_and_kept"):  # the kinds' rates make up the overall one
            assert sum(k[key] * k["n"] for k in kinds.values()) / 36 == pytest.approx(rates[key])
    assert row["ms_per_image"]["value"] > 0 and row["ms_per_image"]["batch_1"] > 0
    assert {kind: (row["spread"][kind]["n"], row["spread"][kind]["seeds_per_prompt"]) for kind in row["spread"]} == {
        "background": (18, 1), "color": (9, 1), "size": (54, 1)}


def test_only_measures_the_metrics_asked_for(distilled, capsys):
    row = row_of(capsys, ["--package", str(distilled / "tiny-pgsb"), *SMALL, "--only", "spread,alignment"])
    assert set(row) == {"model", "backbone", "method", "sampler", "student_checkpoint", "steps", "alignment",
                        "clip_score", "ms_per_image", "spread", "threads", "device"}
    with pytest.raises(SystemExit):
        evaluate.main(["--package", str(distilled / "tiny-pgsb"), "--only", "speed"])


def test_a_teacher_row_samples_with_ddim_and_cfg(distilled, capsys):
    row = row_of(capsys, ["--teacher", str(distilled / "teacher-unet-v.pt"), "--clip", str(distilled / "clip.pt"),
                          "--vae", str(distilled / "vae.pt"), "--cfg", "3", "--steps", "2", "--nasa-scale", "0.5",
                          *SMALL])
    assert (row["method"], row["backbone"], row["sampler"], row["cfg"]) == ("teacher", "unet-v", "ddim-2", 3.0)
    assert sorted(row["negative"]["by_nasa_scale"]) == ["0.0", "0.5"] and "cfg_negative" in row["negative"]
    assert row["fid"]["n"] == 8 and row["fid"]["value"] > 0


def test_a_teacher_called_once_is_the_student_before_distillation(distilled, capsys):
    paths = ["--clip", str(distilled / "clip.pt"), "--vae", str(distilled / "vae.pt")]
    row = row_of(capsys, ["--student", str(distilled / "teacher-unet-eps.pt"), *paths, *SMALL, "--nasa-scale", "0.5"])
    assert (row["method"], row["backbone"], row["sampler"]) == ("teacher-init", "unet-eps", "one-step")
    assert "guidance" not in row and row["fid"]["n"] == 8
    student = row_of(capsys, ["--student", str(distilled / "run" / "student.pt"), *paths, *SMALL,
                              "--nasa-scale", "0.5"])
    assert (student["method"], student["guidance"]["mode"], student["steps"]) == ("pg-sb", "random", 2)
    assert student["fid"] != row["fid"]  # two distillation steps moved it


def samplers(directory):
    text_encoder = TextEncoder(str(directory / "clip.pt"))
    vae, scaling_factor = load_vae(str(directory / "vae.pt"))
    student = load_teacher(str(directory / "run" / "student.pt"))
    teacher = load_teacher(str(directory / "teacher-unet-eps.pt"))
    return (evaluate.StudentSampler(student, text_encoder, vae, scaling_factor),
            evaluate.TeacherSampler(teacher, text_encoder, vae, scaling_factor, guidance=4.5, steps=2))


def test_nasa_scale_zero_ignores_the_negative_prompt_and_a_positive_scale_uses_it(distilled):
    prompts, negatives, seeds = ["a red circle", "two shapes"], ["red", "square"], [3, 4]
    for sampler in samplers(distilled):
        plain = sampler.images(prompts, seeds)
        assert np.array_equal(sampler.images(prompts, seeds, negatives, 0.0), plain)
        assert not np.array_equal(sampler.images(prompts, seeds, negatives, 1.0), plain)
        alone = sampler.images(prompts[1:], seeds[1:])  # an image does not depend on its batch, up to one grey
        assert np.abs(alone.astype(int) - plain[1:]).max() <= 1  # level of batch-size-dependent float rounding


def test_choose_nasa_scale_takes_the_best_success_that_keeps_the_prompt():
    by_scale = {0.0: {"success": 0.3, "kept": 0.9}, 0.25: {"success": 0.6, "kept": 0.88},
                0.5: {"success": 0.6, "kept": 0.86}, 1.0: {"success": 0.9, "kept": 0.5}}
    assert evaluate.choose_nasa_scale(by_scale) == 0.25
    assert evaluate.choose_nasa_scale({0.0: {"success": 0.3, "kept": 0.9}}) == 0.0


def test_a_package_whose_student_changed_is_refused(distilled, tmp_path):
    package_dir = tmp_path / "tiny-pgsb"
    shutil.copytree(distilled / "tiny-pgsb", package_dir)
    manifest = json.loads((package_dir / "model.json").read_text())
    manifest["training"]["inputs"]["student"]["sha256"] = "0" * 64
    (package_dir / "model.json").write_text(json.dumps(manifest))
    with pytest.raises(evaluate.EvaluationError, match="changed since"):
        evaluate.package_inputs(str(package_dir))
    del manifest["training"]["inputs"]
    (package_dir / "model.json").write_text(json.dumps(manifest))
    with pytest.raises(evaluate.EvaluationError, match="records no checkpoints"):
        evaluate.package_inputs(str(package_dir))
