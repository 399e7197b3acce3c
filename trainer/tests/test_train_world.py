"""trainer/train_world.sh end to end with tiny models (SMOKE=1) on one backbone: every stage runs on the real trainer
and leaves its artifacts, and BUNDLE holds them as tar parts (what a lent GPU machine sends back)."""
import json
import os
import subprocess
import tarfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def bundled_names(bundle, name):
    parts = sorted(bundle.glob(f"{name}.tar.part-*"))
    assert parts, f"no {name} parts in {bundle}"
    joined = bundle / f"{name}.tar"
    joined.write_bytes(b"".join(part.read_bytes() for part in parts))
    with tarfile.open(joined) as archive:
        return archive.getnames()


def test_smoke_run_trains_distils_evaluates_and_bundles(tmp_path):
    runs, bundle = tmp_path / "runs", tmp_path / "bundle"
    bundle.mkdir()
    env = dict(os.environ, SMOKE="1", BACKBONES="dit", RUNS=str(runs), BUNDLE=str(bundle), TEACHER_S="5",
               DISTILL_S="5")
    result = subprocess.run(["bash", "trainer/train_world.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "done, 0 failed" in result.stdout

    record = json.loads((runs / "base" / "teacher-dit.json").read_text())
    # the budget (5 s) is spent by the calibration steps, so each run stops at 50 (or runs to its 60 on a fast machine)
    assert record["backbone"] == "dit" and 50 <= record["steps"] <= 60
    assert record["metrics"]["alignment"]["n"] == 4 and record["metrics"]["alignment"]["ddim_steps"] == 2
    for method, name in (("pg-sb", "shapes-dit-pgsb"), ("sb", "shapes-dit-sb")):
        student = json.loads((runs / "distill" / name / "student.json").read_text())
        assert student["method"] == method and 50 <= student["steps"] <= 60
        row = json.loads((runs / "results" / f"{name}.json").read_text())
        assert (row["method"], row["backbone"], row["sampler"]) == (method, "dit", "one-step")
        assert row["alignment"]["n"] == 4 and set(row["negative"]["by_nasa_scale"]) == {"0.0", "0.5"}
    teacher_row = json.loads((runs / "results" / "teacher-dit.json").read_text())
    assert teacher_row["method"] == "teacher" and "cfg_negative" in teacher_row["negative"]
    assert not (runs / "distill" / "shapes-unet-eps-pgsb-lora-only").exists()  # no unet-eps teacher in this run

    teachers = bundled_names(bundle, "teachers")
    assert any(name.endswith("base/teacher-dit.pt") for name in teachers)
    students = bundled_names(bundle, "students")
    assert any(name.endswith("distill/shapes-dit-pgsb/student.pt") for name in students)
    assert not any(name.endswith("distill/shapes-dit-sb/student.pt") for name in students)  # only *pgsb by default
    assert any(name.endswith("results/shapes-dit-sb.json") for name in students)

    # TEACHER_INIT: a second world continues the first one's teacher (init_from) instead of training from scratch,
    # here regressing onto the first world's teacher (DIT_REGRESS_ONTO), then distils PG-SB once per seed with the
    # regression beside VSD (SEEDS, REGRESSION_WEIGHT)
    runs2 = tmp_path / "runs2"
    env2 = dict(env, RUNS=str(runs2), STAGES="1 2 3 4", TEACHER_INIT=str(runs / "base"), SEEDS="3 4",
                STUDENTS="shapes-dit-pgsb", DIT_REGRESS_ONTO=str(runs / "base" / "teacher-dit.pt"),
                REGRESSION_WEIGHT="0.5")
    del env2["BUNDLE"]
    result = subprocess.run(["bash", "trainer/train_world.sh"], cwd=REPO, env=env2, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    continued = json.loads((runs2 / "base" / "teacher-dit.json").read_text())
    assert continued["init"]["path"] == str(runs / "base" / "teacher-dit.pt")
    assert continued["init"]["steps"] == record["steps"]
    assert continued["total_steps"] == record["steps"] + continued["steps"]
    assert continued["recipe"]["learning_rate"] == 3e-4
    assert continued["recipe"]["regress_onto"] == str(runs / "base" / "teacher-dit.pt")
    for seed in (3, 4):
        recipe = json.loads((runs2 / "distill" / f"shapes-dit-pgsb-s{seed}" / "student.json").read_text())["recipe"]
        assert (recipe["seed"], recipe["regression_weight"], recipe["method"]) == (seed, 0.5, "pg-sb")
    assert sorted(os.listdir(runs2 / "distill")) == ["shapes-dit-pgsb-s3", "shapes-dit-pgsb-s4"]
