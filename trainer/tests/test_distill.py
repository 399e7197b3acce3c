"""trainer.distill on tiny random models: the VSD step, the guidance regimes, config validation, exit codes, resume and
the exported package."""
import json
import os
import signal
import subprocess
import sys
import time

import onnx
import pytest
import torch

from trainer import diffusion, distill, distributed, judge, package, shapes, warm_start
from trainer.checkpoint import load_checkpoint
from trainer.sample import TextEncoder, load_teacher
from tiny_models import write_tiny_checkpoints  # trainer/tests is on sys.path under pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return write_tiny_checkpoints(tmp_path_factory.mktemp("checkpoints"))


@pytest.fixture(autouse=True)
def restore_signal_handlers():
    """In-process runs install SIGTERM/SIGINT handlers; give pytest its own back."""
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    yield
    for signum, handler in handlers.items():
        signal.signal(signum, handler)


def job(checkpoints, directory, **values):
    """A job file for a tiny run; returns its path."""
    config = {"backbone": str(checkpoints / "teacher-unet-eps.pt"), "clip_path": str(checkpoints / "clip.pt"),
              "vae_path": str(checkpoints / "vae.pt"), "run_dir": str(directory / "run"), "steps": 4,
              "batch_size": 2, "eval_every": 0, "eval_n": 8, "log_every": 1, "threads": 1, **values}
    path = directory / "job.json"
    path.write_text(json.dumps(config))
    return path


def spawn(*args):
    return subprocess.Popen([sys.executable, "-m", "trainer.distill", *map(str, args)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def settings_for(checkpoints, tmp_path, **values):
    config = distill.configure(distill.DEFAULTS, [str(job(checkpoints, tmp_path, **values))])
    return distill.validate(config, str(tmp_path / "student"))


def distillation(checkpoints, tmp_path, backbone="unet-eps", **values):
    settings = settings_for(checkpoints, tmp_path, backbone=str(checkpoints / f"teacher-{backbone}.pt"), **values)
    teacher = load_teacher(str(checkpoints / f"teacher-{backbone}.pt"))
    torch.manual_seed(0)
    return distill.Distillation(teacher, settings, distributed.setup("cpu")), settings


def prompt_states(checkpoints, n=2):
    text_encoder = TextEncoder(str(checkpoints / "clip.pt"))
    return text_encoder(distill.step_prompts(0, 0, 0, 1, n)), text_encoder.empty()


@pytest.mark.parametrize("backbone", ["unet-eps", "unet-v", "dit"])
def test_a_step_changes_the_student_and_the_lora_not_the_teacher(checkpoints, tmp_path, backbone):
    vsd, _ = distillation(checkpoints, tmp_path, backbone)
    teacher = {k: v.clone() for k, v in vsd.teacher.state_dict().items()}
    student, lora = ({k: v.clone() for k, v in m.state_dict().items()} for m in (vsd.student, vsd.adapters))
    base = {k: v.clone() for k, v in vsd.lora_teacher.state_dict().items() if ".adapter." not in k}
    states, empty = prompt_states(checkpoints)
    first = vsd.step(states, empty, 3.0, 3.0)
    # the LoRA teacher starts equal to the teacher: at the same kappa the first VSD gradient is exactly zero
    assert first["loss_student"] == 0.0 and first["loss_lora"] > 0
    second = vsd.step(states, empty, 3.0, 3.0)
    assert second["loss_student"] > 0 and second["student_grad_norm"] > 0
    assert all(torch.equal(v, vsd.teacher.state_dict()[k]) for k, v in teacher.items())
    assert all(torch.equal(v, vsd.lora_teacher.state_dict()[k]) for k, v in base.items())  # frozen base weights
    assert any(not torch.equal(v, vsd.student.state_dict()[k]) for k, v in student.items())
    assert any(not torch.equal(v, vsd.adapters.state_dict()[k]) for k, v in lora.items())
    assert vsd.lora_teacher.args.parameterization == vsd.student.args.parameterization == (
        "v" if backbone == "unet-v" else "eps")


def test_vsd_gradient_is_sigma_squared_times_the_difference_with_non_finite_values_zeroed():
    t = torch.tensor([20, 980])
    eps_teacher = torch.ones(2, 1, 1, 2)
    eps_lora = torch.tensor([[[[0.0, float("nan")]]], [[[float("inf"), -1.0]]]])
    grad = distill.vsd_gradient(eps_teacher, eps_lora, t)
    sigma_squared = 1.0 - distill.diffusion.ALPHAS_CUMPROD[t].float()
    assert torch.allclose(grad[:, 0, 0, 0], torch.tensor([sigma_squared[0], 0.0]))
    assert torch.allclose(grad[:, 0, 0, 1], torch.tensor([0.0, 2 * sigma_squared[1]]))


def test_v_teacher_eps_is_converted_consistently():
    # a v-model whose CFG output is the v of (x0, eps) gives back exactly that eps
    class VModel(torch.nn.Module):
        args = type("Args", (), {"parameterization": "v"})

        def forward(self, x, t, states):
            return self.v.repeat(2, 1, 1, 1)

    x0, eps, t = torch.randn(2, 4, 16, 16), torch.randn(2, 4, 16, 16), torch.tensor([100, 900])
    model = VModel()
    model.v = distill.diffusion.velocity(x0, eps, t)
    x_t = distill.diffusion.q_sample(x0, t, eps)
    states = torch.zeros(2, 32, 128)
    assert torch.allclose(distill.guided_eps(model, x_t, t, states, states, 2.5), eps, atol=1e-5)


def test_guidance_regimes():
    fixed = {"mode": "fixed", "fixed": 4.5}
    assert {distill.guidance_scales(fixed, 0, step) for step in range(5)} == {(4.5, 4.5)}
    random_both = {"mode": "random", "min": 0.5, "max": 4.0}
    draws = [distill.guidance_scales(random_both, 0, step) for step in range(50)]
    assert all(teacher == lora and 0.5 <= teacher <= 4.0 for teacher, lora in draws)
    assert len({teacher for teacher, _ in draws}) == 50  # a new kappa every step
    assert draws == [distill.guidance_scales(random_both, 0, step) for step in range(50)]  # a function of the step
    assert draws != [distill.guidance_scales(random_both, 1, step) for step in range(50)]  # and of the seed
    ablation = {"min": 0.5, "max": 4.0, "fixed": 4.5}
    teacher_only = [distill.guidance_scales({"mode": "random-teacher-only", **ablation}, 0, s) for s in range(50)]
    lora_only = [distill.guidance_scales({"mode": "random-lora-only", **ablation}, 0, s) for s in range(50)]
    assert [t for t, _ in teacher_only] == [t for t, _ in draws] and {k for _, k in teacher_only} == {4.5}
    assert [k for _, k in lora_only] == [t for t, _ in draws] and {t for t, _ in lora_only} == {4.5}


@pytest.mark.parametrize("method, mode, backbone, expected", [
    ("sb", "", "unet-eps", {"mode": "fixed", "fixed": 4.5}),
    ("pg-sb", "", "unet-v", {"mode": "random", "min": 0.5, "max": 4.0}),
    ("pg-sb", "", "dit", {"mode": "random", "min": 0.5, "max": 3.0}),
    ("pg-sb", "random-lora-only", "dit", {"mode": "random-lora-only", "min": 0.5, "max": 3.0, "fixed": 4.5}),
])
def test_guidance_defaults(checkpoints, tmp_path, method, mode, backbone, expected):
    settings = settings_for(checkpoints, tmp_path, method=method, guidance_mode=mode,
                            backbone=str(checkpoints / f"teacher-{backbone}.pt"))
    assert settings["guidance"] == expected and settings["guidance_mode"] == expected["mode"]


@pytest.mark.parametrize("mode", ["fixed", "random", "random-teacher-only", "random-lora-only"])
def test_each_step_gives_both_teachers_the_kappas_of_its_mode(checkpoints, tmp_path, monkeypatch, mode):
    method = "sb" if mode == "fixed" else "pg-sb"
    guidance = {"fixed": 4.5} if mode == "fixed" else {"min": 0.5, "max": 4.0, **({} if mode == "random" else
                                                                                     {"fixed": 4.5})}
    calls = []
    real_guided_eps = distill.guided_eps

    def spy(model, x_t, t, states, uncond, kappa):
        calls.append(("teacher" if model is vsd.teacher else "lora" if model is vsd.lora_teacher else "?", kappa))
        return real_guided_eps(model, x_t, t, states, uncond, kappa)

    monkeypatch.setattr(distill, "guided_eps", spy)
    vsd, settings = distillation(checkpoints, tmp_path, method=method, guidance_mode=mode, guidance=guidance)
    states, empty = prompt_states(checkpoints)
    for step in range(3):
        kappa_teacher, kappa_lora = distill.guidance_scales(settings["guidance"], settings["seed"], step)
        vsd.step(states, empty, kappa_teacher, kappa_lora)
        assert calls[-2:] == [("teacher", kappa_teacher), ("lora", kappa_lora)]
    teacher_kappas = [k for who, k in calls if who == "teacher"]
    lora_kappas = [k for who, k in calls if who == "lora"]
    assert (len(set(teacher_kappas)) == 3) == (mode in ("random", "random-teacher-only"))
    assert (len(set(lora_kappas)) == 3) == (mode in ("random", "random-lora-only"))
    assert (teacher_kappas == lora_kappas) == (mode in ("fixed", "random"))
    if mode == "fixed":
        assert set(teacher_kappas) == {4.5}


def test_lora_steps_update_the_lora_teacher_that_often_after_the_same_student_step(checkpoints, tmp_path):
    states, empty = prompt_states(checkpoints)
    runs = {}
    for lora_steps in (1, 3):
        (tmp_path / str(lora_steps)).mkdir()
        vsd, _ = distillation(checkpoints, tmp_path / str(lora_steps), lora_steps=lora_steps)
        torch.manual_seed(1)
        vsd.step(states, empty, 3.0, 3.0)
        lora_state = vsd.lora_optimizer.state_dict()["state"]
        assert {int(state["step"]) for state in lora_state.values()} == {lora_steps}
        runs[lora_steps] = vsd
    # the student step comes first and draws the same noise: the extra LoRA steps change nothing of it
    one, three = (runs[k].student.state_dict() for k in (1, 3))
    assert all(torch.equal(value, three[name]) for name, value in one.items())
    assert any(not torch.equal(value, runs[3].adapters.state_dict()[name])
               for name, value in runs[1].adapters.state_dict().items())


def test_training_negatives_name_what_the_caption_leaves_free_or_one_of_two_distinct_objects():
    prompts = distill.step_prompts(0, 0, 0, 1, 2000)
    negatives = distill.step_negatives(0, 0, 0, 1, prompts)
    assert 0.3 < sum(map(bool, negatives)) / len(negatives) < distill.NEGATIVE_SHARE
    kinds = set()
    for caption, negative in zip(prompts, negatives):
        if not negative:
            continue
        named = judge.parse_caption(caption)
        if negative in shapes.BACKGROUNDS:
            assert named.background is None, caption
            kinds.add("background")
        elif named.count == 2 and named.objects:  # removal: the phrase describes one object and cannot the other
            negated = judge.parse_object(negative)
            described = [spec for spec in named.objects if (spec.color, spec.shape) == (negated.color, negated.shape)]
            assert len(described) == 1 and len(negative.split()) <= 2, caption
            kept = named.objects[1] if described[0] is named.objects[0] else named.objects[0]
            pairs = [(getattr(kept, key), getattr(negated, key)) for key in ("color", "shape")]
            assert any(a and b and a != b for a, b in pairs), caption  # named in both, differently
            kinds.add("removal")
        else:  # under-specified: a color or shape word the caption does not fix
            spec = named.objects[0] if named.objects else judge.ObjectSpec()
            assert (negative in shapes.COLORS and spec.color is None) or (negative in shapes.SHAPES and
                                                                          spec.shape is None), caption
            kinds.add("color" if negative in shapes.COLORS else "shape")
    assert kinds == {"background", "removal", "color", "shape"}
    assert negatives == distill.step_negatives(0, 0, 0, 1, prompts)  # a function of the seed and the stream index
    second_rank = distill.step_negatives(0, 0, 1, 2, distill.step_prompts(0, 0, 1, 2, 1000))
    assert second_rank == negatives[1000:2000] and negatives != distill.step_negatives(1, 0, 0, 1, prompts)


def test_nasa_training_steers_the_student_and_makes_the_negative_both_teachers_unconditional_branch(
        checkpoints, tmp_path, monkeypatch):
    states, empty = prompt_states(checkpoints)
    text_encoder = TextEncoder(str(checkpoints / "clip.pt"))
    unconds = []
    real_guided_eps = distill.guided_eps

    def spy(model, x_t, t, text_states, uncond, kappa):
        unconds.append(uncond)
        return real_guided_eps(model, x_t, t, text_states, uncond, kappa)

    monkeypatch.setattr(distill, "guided_eps", spy)
    students = {}
    for name, scale, negatives in (("off", 0.0, None), ("none", 1.0, ["", ""]), ("on", 1.0, ["red", ""])):
        (tmp_path / name).mkdir()
        vsd, _ = distillation(checkpoints, tmp_path / name, nasa_training_scale=scale)
        nasa = {} if negatives is None else distill.nasa_inputs(text_encoder, negatives, empty, 0.7)
        for _ in range(2):  # the first step's VSD gradient is 0 (the LoRA teacher starts as the teacher)
            torch.manual_seed(1)
            vsd.step(states, empty, 3.0, 3.0, **nasa)
        students[name] = vsd.student.state_dict()
        if negatives:  # the last step's teacher and LoRA teacher calls: uncond = the negative rows
            assert all(torch.equal(uncond, nasa["negative_states"]) for uncond in unconds[-2:])
            assert torch.equal(nasa["nasa_scale"], torch.tensor([0.7 if negative else 0.0 for negative in negatives]))
            assert torch.equal(nasa["negative_states"][1], empty[0])
    # "" at scale 0 is exactly the plain student and the plain CFG; a negative changes the update
    assert all(torch.equal(value, students["none"][name]) for name, value in students["off"].items())
    assert any(not torch.equal(value, students["on"][name]) for name, value in students["off"].items())


BAD_CONFIGS = [
    ("not json", "is not valid JSON"),
    ({"stepz": 10}, "unknown config key 'stepz'"),
    ({"steps": "10"}, "'steps' (from"),
    ({"steps": 0}, "steps must be in"),
    ({"batch_size": 1.5}, "'batch_size' (from"),
    ({"method": "dmd"}, "method must be pg-sb or sb"),
    ({"backbone": "sdxl"}, "backbone must be one of"),
    ({"backbone": "/nonexistent/teacher.pt"}, "no teacher checkpoint at"),
    ({"guidance": {"min": 3, "max": 1}}, "is above guidance.max"),
    ({"guidance": {"fixed": 4.5}}, "do not apply to guidance_mode random"),
    ({"method": "sb", "guidance": {"min": 1, "max": 2}}, "do not apply to guidance_mode fixed"),
    ({"guidance": {"min": -1}}, "guidance.min must be a number"),
    ({"guidance": {"min": True}}, "guidance.min must be a number"),
    ({"method": "sb", "guidance_mode": "random"}, "does not belong to method sb"),
    ({"guidance_mode": "sometimes"}, "guidance_mode must be one of"),
    ({"student_lr": 0}, "student_lr must be positive"),
    ({"lora_rank": 0}, "lora_rank must be in"),
    ({"lora_steps": 0}, "lora_steps must be in"),
    ({"seed": 1001}, "seed must be in"),
    ({"name": "other-name"}, "--out must be a folder named after the model id"),
    ({"keep": "first"}, "keep must be last or best"),
    ({"student_lr_schedule": "linear"}, "student_lr_schedule must be constant or cosine"),
    ({"nasa_training_scale": -0.5}, "nasa_training_scale must be in"),
    ({"warm_start_steps": 4}, "warm_start_steps must be in [0, 3]"),
    ({"warm_start_steps": 1, "warm_start_pairs": 0}, "warm_start_pairs must be in"),
    ({"warm_start_lr": 0}, "warm_start_lr must be positive"),
    ({"warm_start_steps": 1, "init_from": "runs/earlier/ckpt.pt"}, "init_from continues a distilled one: not both"),
    ({"lora_warmup_steps": 4}, "lora_warmup_steps must be in [0, 3]"),
    ({"lora_warmup_steps": 1, "warm_start_steps": 1}, "lora_warmup_steps: not both"),
]


@pytest.mark.parametrize("config, message", BAD_CONFIGS[3:])
def test_bad_configs_exit_2_with_a_message(checkpoints, tmp_path, capsys, config, message):
    path = job(checkpoints, tmp_path)
    path.write_text(json.dumps({**json.loads(path.read_text()), **config}))
    assert distill.main(["--config", str(path), "--out", str(tmp_path / "student")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists() and not (tmp_path / "student").exists()


def test_the_module_exits_2_on_bad_jobs(checkpoints, tmp_path):
    processes = []
    for i, (config, message) in enumerate(BAD_CONFIGS[:3]):
        directory = tmp_path / str(i)
        directory.mkdir()
        path = job(checkpoints, directory)
        path.write_text(config if isinstance(config, str) else json.dumps({**json.loads(path.read_text()), **config}))
        processes.append((spawn("--config", path, "--out", directory / "student"), message))
    for process, message in processes:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 2 and message in stderr, stderr
    missing_out = spawn("--config", tmp_path / "0" / "job.json")
    assert missing_out.wait(timeout=120) == 2


def test_a_non_finite_loss_exits_1_with_a_message(checkpoints, tmp_path, monkeypatch, capsys):
    def diverged(self, *args, **kwargs):
        return {"loss_student": float("nan"), "loss_lora": 1.0, "student_grad_norm": 0.0}

    monkeypatch.setattr(distill.Distillation, "step", diverged)
    assert distill.main(["--config", str(job(checkpoints, tmp_path)), "--out", str(tmp_path / "student")]) == 1
    assert "loss_student is nan at step 1" in capsys.readouterr().err


def run_in_process(checkpoints, directory, **values):
    path = job(checkpoints, directory, **values)
    return distill.main(["--config", str(path), "--out", str(directory / "student")])


def wait_for_progress(process, run_dir, steps, timeout=120):
    progress = run_dir / "progress.jsonl"
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        if progress.exists() and progress.read_text().count("\n") >= steps:
            return
        time.sleep(0.05)


@pytest.fixture(scope="module")
def uninterrupted(checkpoints, tmp_path_factory):
    directory = tmp_path_factory.mktemp("uninterrupted")
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    assert run_in_process(checkpoints, directory, steps=30, eval_every=15) == 0
    for signum, handler in handlers.items():
        signal.signal(signum, handler)
    return directory


def test_sigterm_saves_a_checkpoint_and_the_rerun_resumes_to_the_same_weights(checkpoints, tmp_path, uninterrupted):
    path = job(checkpoints, tmp_path, steps=30, eval_every=15)
    process = spawn("--config", path, "--out", tmp_path / "student")
    wait_for_progress(process, tmp_path / "run", 3)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    stopped_at = load_checkpoint(str(tmp_path / "run" / "ckpt.pt"))["step"]
    assert 3 <= stopped_at < 30 and not (tmp_path / "student").exists()
    assert json.loads(stdout.splitlines()[0])["total"] == 30  # stdout: progress JSON lines

    assert distill.main(["--config", str(path), "--out", str(tmp_path / "student")]) == 0
    resumed, straight = (load_checkpoint(str(d / "run" / "student.pt")) for d in (tmp_path, uninterrupted))
    assert resumed["step"] == straight["step"] == 30
    for name, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][name]), name
    lora_resumed, lora_straight = (load_checkpoint(str(d / "run" / "ckpt.pt"))["model"] for d in (tmp_path,
                                                                                                uninterrupted))
    assert all(torch.equal(v, lora_resumed[k]) for k, v in lora_straight.items() if k.startswith("lora."))
    records = [json.loads(line) for line in (tmp_path / "run" / "progress.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records][-1] == 30 and "fid" in records[-1]
    # a rerun of the finished job evaluates the stored student again (nothing to train) and writes the same package
    manifest = (tmp_path / "student" / "model.json").read_text()
    assert distill.main(["--config", str(path), "--out", str(tmp_path / "student")]) == 0
    assert (tmp_path / "student" / "model.json").read_text() == manifest


def test_sigint_saves_a_checkpoint_and_exits_130(checkpoints, tmp_path):
    process = spawn("--config", job(checkpoints, tmp_path, steps=1000), "--out", tmp_path / "student")
    wait_for_progress(process, tmp_path / "run", 2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert load_checkpoint(str(tmp_path / "run" / "ckpt.pt"))["step"] >= 2


def test_a_checkpoint_older_than_a_config_key_resumes_when_the_key_keeps_its_default(checkpoints, tmp_path):
    assert run_in_process(checkpoints, tmp_path, steps=2) == 0
    path = tmp_path / "run" / "ckpt.pt"
    checkpoint = torch.load(path)
    del checkpoint["config"]["nasa_training_scale"]  # as saved before NASA-T existed
    torch.save(checkpoint, path)
    assert run_in_process(checkpoints, tmp_path, steps=3) == 0
    assert load_checkpoint(str(tmp_path / "run" / "student.pt"))["step"] == 3
    # the recipe's history records the real change (steps), not the key the old checkpoint lacked
    assert [entry["changes"] for entry in load_checkpoint(str(path))["history"]] == [{"steps": 3}]


def test_rerun_with_another_recipe_is_refused(checkpoints, tmp_path, uninterrupted, capsys):
    path = job(checkpoints, uninterrupted, steps=30, eval_every=15, student_lr=1e-3)
    assert distill.main(["--config", str(path), "--out", str(uninterrupted / "student")]) == 2
    assert "holds a run with a different recipe (student_lr differ)" in capsys.readouterr().err


def test_the_output_is_a_valid_package_with_the_training_record(uninterrupted):
    out = uninterrupted / "student"
    manifest = json.loads((out / "model.json").read_text())
    for name in ("text_encoder.onnx", "generator.onnx"):
        onnx.checker.check_model(onnx.load(str(out / name)), full_check=True)
    assert package.verify_files(str(out)) == []
    assert (manifest["id"], manifest["method"], manifest["backbone"], manifest["parameterization"]) == (
        "student", "pg-sb", "unet-eps", "eps")
    training = manifest["training"]
    assert training["steps"] == 30 and training["seed"] == 0
    assert training["recipe"]["guidance"] == {"mode": "random", "min": 0.5, "max": 4.0}
    assert training["recipe"]["teacher_checkpoint"]["backbone"] == "unet-eps"
    assert training["metrics"]["fid"]["n"] == 8 and training["metrics"]["fid"]["value"] > 0
    assert training["inputs"]["student"]["sha256"] == package.file_entry(
        str(uninterrupted / "run" / "student.pt"))["sha256"]
    records = [json.loads(line) for line in (uninterrupted / "run" / "progress.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 31))
    assert ["fid" in r for r in records].count(True) == 2
    # the last evaluation is of the student as stored (float16), and it is the one the record carries
    assert training["metrics"]["fid"]["value"] == records[-1]["fid"]
    assert {"loss_student", "loss_lora", "kappa", "kappa_lora", "eta_s", "total"} <= set(records[0])


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")
def test_two_processes_train_one_student_and_only_the_master_logs_and_exports(checkpoints, tmp_path):
    # --redirects/--tee: see test_ddp.py; lora_steps 2: the second LoRA step's samples come from the DDP-wrapped
    # student; NASA-T: its negative states and scales go through the DDP wrapper too
    config = job(checkpoints, tmp_path, steps=2, lora_steps=2, nasa_training_scale=1.0)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "--redirects=2",
               "--tee=2", "-m", "trainer.distill", "--config", str(config), "--out", str(tmp_path / "student")]
    result = subprocess.run(command, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                            text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [line.get("step") for line in lines] == [1, 2, None] and lines[-1]["event"] == "exported"
    assert [line["nasa_alpha"] for line in lines[:2]] == [distill.nasa_training_alpha(1.0, 0, step) for step in (0, 1)]
    checkpoint = load_checkpoint(str(tmp_path / "run" / "ckpt.pt"))
    assert checkpoint["step"] == 2 and len(checkpoint["rng"]) == 2  # one noise stream per rank
    assert json.loads((tmp_path / "student" / "model.json").read_text())["training"]["steps"] == 2


def test_keep_best_exports_the_student_of_the_lowest_fid_probe(checkpoints, tmp_path):
    run = dict(steps=12, eval_every=3, keep="best", student_lr=1e-2)  # a large lr: the student drifts away
    assert run_in_process(checkpoints, tmp_path, **run) == 0
    records = [json.loads(line) for line in (tmp_path / "run" / "progress.jsonl").read_text().splitlines()]
    probes = {r["step"]: r["fid"] for r in records if "fid" in r}
    best_step = min(probes, key=probes.get)
    assert sorted(probes) == [3, 6, 9, 12] and best_step != 12  # this seeded run's best is an earlier student
    student, kept = (load_checkpoint(str(tmp_path / "run" / name)) for name in ("student.pt", "best-student.pt"))
    assert student["step"] == kept["step"] == best_step and kept["metrics"]["fid"] == probes[best_step]
    assert all(torch.equal(value, kept["model"][name]) for name, value in student["model"].items())
    manifest = (tmp_path / "student" / "model.json").read_text()
    training = json.loads(manifest)["training"]
    assert training["steps"] == best_step and training["recipe"]["steps"] == 12
    # its metrics: evaluated again as stored (float16), within rounding of the probe's (float32 weights)
    assert abs(training["metrics"]["fid"]["value"] - probes[best_step]) < 1e-3
    # a rerun of the finished job exports the same student again
    assert run_in_process(checkpoints, tmp_path, **run) == 0
    assert (tmp_path / "student" / "model.json").read_text() == manifest


def test_the_cosine_schedule_decays_the_student_lr_to_zero_over_the_run_and_leaves_the_lora_lr(checkpoints,
                                                                                               tmp_path):
    config = {"student_lr": 4e-5, "student_lr_schedule": "cosine", "warm_start_steps": 0, "lora_warmup_steps": 0}
    rates = [distill.student_learning_rate(config, step, 4) for step in range(5)]
    assert rates == pytest.approx([4e-5, 2e-5 * (1 + 2 ** -0.5), 2e-5, 2e-5 * (1 - 2 ** -0.5), 0.0])
    assert distill.student_learning_rate(dict(config, student_lr_schedule="constant"), 3, 4) == 4e-5
    assert run_in_process(checkpoints, tmp_path, steps=4, **config) == 0
    groups = load_checkpoint(str(tmp_path / "run" / "ckpt.pt"))["optimizer"]
    # the last step ran at the rate of step 3 of 4; the LoRA teacher kept its constant rate
    assert [group["lr"] for group in groups["student"]["param_groups"]] == [pytest.approx(rates[3])]
    assert [group["lr"] for group in groups["lora"]["param_groups"]] == [distill.DEFAULTS["lora_lr"]]


def test_init_from_continues_an_earlier_run_with_another_recipe_and_records_its_lineage(checkpoints, tmp_path,
                                                                                        uninterrupted):
    earlier = uninterrupted / "run" / "ckpt.pt"
    continued, settings = distillation(checkpoints, tmp_path, init_from=str(earlier))
    lineage = distill.start_from_distillation(str(earlier), continued.weights)
    saved = load_checkpoint(str(earlier))
    assert all(torch.equal(value, saved["model"][name]) for name, value in continued.weights.state_dict().items())
    assert (lineage["steps"], lineage["sha256"]) == (30, package.file_entry(str(earlier))["sha256"])

    assert run_in_process(checkpoints, tmp_path, steps=2, init_from=str(earlier), nasa_training_scale=1.0) == 0
    training = json.loads((tmp_path / "student" / "model.json").read_text())["training"]
    assert (training["steps"], training["total_steps"]) == (2, 32)
    assert training["init"]["path"] == str(earlier) and training["init"]["recipe"]["nasa_training_scale"] == 0.0
    assert training["recipe"]["init_from"] == str(earlier)


def test_init_from_a_student_starts_that_student_with_a_fresh_lora_teacher(checkpoints, tmp_path, uninterrupted):
    earlier = uninterrupted / "run" / "student.pt"
    continued, _ = distillation(checkpoints, tmp_path, init_from=str(earlier))
    fresh = {name: value.clone() for name, value in continued.weights.lora.state_dict().items()}
    lineage = distill.start_from_distillation(str(earlier), continued.weights)
    saved = load_checkpoint(str(earlier))["model"]
    assert all(torch.equal(value, saved[name].float()) for name, value in continued.student.state_dict().items())
    assert all(torch.equal(value, fresh[name]) for name, value in continued.weights.lora.state_dict().items())
    assert (lineage["steps"], lineage["init"]) == (30, None)

    assert run_in_process(checkpoints, tmp_path, steps=2, init_from=str(earlier), lora_rank=8) == 0  # any rank
    training = json.loads((tmp_path / "student" / "model.json").read_text())["training"]
    assert (training["steps"], training["total_steps"], training["init"]["path"]) == (2, 32, str(earlier))


def test_a_lora_warmup_trains_the_lora_teacher_alone_on_the_resting_student_then_distils(checkpoints, tmp_path,
                                                                                         uninterrupted):
    earlier = str(uninterrupted / "run" / "student.pt")
    run, _ = distillation(checkpoints, tmp_path, init_from=earlier, lora_warmup_steps=1)
    distill.start_from_distillation(earlier, run.weights)
    student, lora = ({k: v.clone() for k, v in m.state_dict().items()} for m in (run.student, run.adapters))
    states, empty = prompt_states(checkpoints)
    losses = run.lora_warmup_step(states, empty)
    assert set(losses) == {"loss_lora"} and losses["loss_lora"] > 0
    assert all(torch.equal(v, run.student.state_dict()[k]) for k, v in student.items())
    assert any(not torch.equal(v, run.adapters.state_dict()[k]) for k, v in lora.items())

    config = {"student_lr": 4e-5, "student_lr_schedule": "cosine", "warm_start_steps": 0, "lora_warmup_steps": 2}
    rates = [distill.student_learning_rate(config, step, 4) for step in range(4)]
    assert rates == pytest.approx([4e-5, 4e-5, 4e-5, 2e-5])  # the cosine runs over the VSD steps
    assert run_in_process(checkpoints, tmp_path, steps=4, init_from=earlier, log_every=1, **config) == 0
    records = [json.loads(line) for line in (tmp_path / "run" / "progress.jsonl").read_text().splitlines()]
    assert [("loss_lora" in r, "loss_student" in r, "kappa" in r) for r in records] == \
        [(True, False, False)] * 2 + [(True, True, True)] * 2
    assert json.loads((tmp_path / "student" / "model.json").read_text())["training"]["recipe"]["lora_warmup_steps"] == 2


def test_init_from_must_be_a_distillation_of_the_same_teacher_head_and_lora_rank(checkpoints, tmp_path,
                                                                                  uninterrupted, capsys):
    earlier = str(uninterrupted / "run" / "ckpt.pt")
    for values, message in (({"init_from": str(tmp_path / "missing.pt")}, "init_from: no checkpoint at"),
                            ({"init_from": str(checkpoints / "teacher-unet-eps.pt")}, "is not a distillation"),
                            ({"init_from": earlier, "lora_rank": 8}, "has LoRA rank 16, this run 8"),
                            ({"init_from": earlier, "student_head": "v"}, "has student_head '', this run 'v'"),
                            ({"init_from": earlier, "backbone": str(checkpoints / "teacher-unet-v.pt")},
                             "distilled another teacher than")):
        assert run_in_process(checkpoints, tmp_path, **values) == 2
        assert message in capsys.readouterr().err


def test_a_v_head_makes_an_eps_teachers_student_a_unet_v_student(checkpoints, tmp_path):
    run, _ = distillation(checkpoints, tmp_path, student_head="v")
    assert (run.student.args.parameterization, run.teacher.args.parameterization) == ("v", "eps")
    noise = torch.randn(2, 4, 8, 8)
    states, _ = prompt_states(checkpoints)
    teacher_output = run.teacher(noise, torch.full((2,), diffusion.STUDENT_TIMESTEP), states)
    expected = diffusion.one_step_x0("v", teacher_output, noise)  # the teacher's own output, read as v
    assert torch.allclose(diffusion.one_step_generate(run.student, noise, states), expected, atol=1e-6)

    assert run_in_process(checkpoints, tmp_path, steps=2, student_head="v") == 0
    manifest = json.loads((tmp_path / "student" / "model.json").read_text())
    assert (manifest["backbone"], manifest["parameterization"], manifest["teacher"]) == (
        "unet-v", "v", "shapes-unet-eps-teacher")
    assert "v head on the unet-eps teacher" in manifest["display_name"]
    assert load_teacher(str(tmp_path / "run" / "student.pt")).args.parameterization == "v"


def test_a_v_head_needs_an_eps_teacher(checkpoints, tmp_path, capsys):
    assert run_in_process(checkpoints, tmp_path, backbone=str(checkpoints / "teacher-dit.pt"), student_head="v") == 2
    assert "student_head v needs a unet-eps teacher" in capsys.readouterr().err


def test_a_warm_step_regresses_the_one_step_student_onto_the_teacher_samples(checkpoints, tmp_path):
    run, settings = distillation(checkpoints, tmp_path, warm_start_steps=1, warm_start_lr=1e-3)
    for group in run.student_optimizer.param_groups:  # as run() sets it
        group["lr"] = distill.student_learning_rate(settings, 0, settings["steps"])
    states, empty = prompt_states(checkpoints)
    torch.manual_seed(1)
    noise, latents = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    teacher_before = {name: value.clone() for name, value in run.teacher.state_dict().items()}
    adapters_before = {name: value.clone() for name, value in run.adapters.state_dict().items()}
    with torch.no_grad():  # the student starts as the teacher
        expected = torch.nn.functional.mse_loss(diffusion.one_step_generate(run.teacher, noise, states), latents)
    losses = [run.warm_step(noise, states, latents, empty)["loss_regression"] for _ in range(20)]
    assert losses[0] == pytest.approx(expected.item(), rel=1e-5)
    assert losses[-1] < 0.5 * losses[0]  # the same batch 20 times: the student fits it
    assert all(torch.equal(value, teacher_before[name]) for name, value in run.teacher.state_dict().items())
    assert not all(torch.equal(value, adapters_before[name]) for name, value in run.adapters.state_dict().items())


def test_warm_start_pairs_are_the_teachers_ddim_samples_cached_per_teacher_seed_and_size(checkpoints, tmp_path,
                                                                                         monkeypatch):
    teacher = load_teacher(str(checkpoints / "teacher-unet-eps.pt"))
    text_encoder = TextEncoder(str(checkpoints / "clip.pt"))
    path = str(tmp_path / "pairs.pt")
    pairs = warm_start.load_or_draw_pairs(path, teacher, text_encoder, 3, 5, "sha", save=True)
    assert pairs.prompts == [shapes.sample_scene(3, i)[1] for i in range(5)]
    expected = diffusion.ddim_sample(teacher, text_encoder(pairs.prompts[:2]), text_encoder.empty(),
                                     warm_start.GUIDANCE, warm_start.DDIM_STEPS, noise=pairs.noise[:2])
    assert torch.allclose(pairs.latents[:2], expected, rtol=1e-4, atol=1e-4)  # batch 5 vs 2: other GEMM blocking
    prompts, noise, latents = pairs.batch(3, 7, 0, 1, 4, "cpu")
    again = pairs.batch(3, 7, 0, 1, 4, "cpu")
    assert prompts == again[0] and torch.equal(noise, again[1]) and torch.equal(latents, again[2])
    assert prompts != pairs.batch(3, 7, 1, 2, 4, "cpu")[0]  # another rank, another draw

    def no_drawing(*args, **kwargs):
        raise AssertionError("the cached pairs should have been used")

    with monkeypatch.context() as patch:
        patch.setattr(warm_start, "draw_pairs", no_drawing)
        cached = warm_start.load_or_draw_pairs(path, teacher, text_encoder, 3, 5, "sha", save=True)
    assert torch.equal(cached.latents, pairs.latents) and cached.prompts == pairs.prompts
    redrawn = warm_start.load_or_draw_pairs(path, teacher, text_encoder, 4, 5, "sha", save=False)
    assert redrawn.prompts == [shapes.sample_scene(4, i)[1] for i in range(5)]


def test_a_run_with_a_warm_start_regresses_first_then_distils_and_records_it(checkpoints, tmp_path):
    config = {"student_lr": 4e-5, "warm_start_lr": 1e-4, "student_lr_schedule": "cosine", "lora_warmup_steps": 0}
    rates = [distill.student_learning_rate(dict(config, warm_start_steps=2), step, 4) for step in range(4)]
    assert rates == pytest.approx([1e-4, 1e-4, 4e-5, 2e-5])  # the cosine runs over the VSD steps
    assert run_in_process(checkpoints, tmp_path, steps=4, warm_start_steps=2, warm_start_pairs=6, **config) == 0
    records = [json.loads(line) for line in (tmp_path / "run" / "progress.jsonl").read_text().splitlines()]
    assert [("loss_regression" in r, "loss_student" in r, "kappa" in r) for r in records] == \
        [(True, False, False)] * 2 + [(False, True, True)] * 2
    pairs = load_checkpoint(str(tmp_path / "run" / "warm-start-pairs.pt"))
    assert pairs["source"]["n"] == 6 and pairs["latents"].shape == pairs["noise"].shape == (6, 4, 16, 16)
    groups = load_checkpoint(str(tmp_path / "run" / "ckpt.pt"))["optimizer"]["student"]["param_groups"]
    assert [group["lr"] for group in groups] == [pytest.approx(rates[3])]
    recipe = json.loads((tmp_path / "student" / "model.json").read_text())["training"]["recipe"]
    assert (recipe["warm_start_steps"], recipe["warm_start_pairs"], recipe["warm_start_lr"]) == (2, 6, 1e-4)


def test_regression_weight_adds_the_teachers_samples_to_every_vsd_step(checkpoints, tmp_path):
    assert run_in_process(checkpoints, tmp_path, steps=3, regression_weight=0.5, warm_start_pairs=6) == 0
    records = [json.loads(line) for line in (tmp_path / "run" / "progress.jsonl").read_text().splitlines()]
    assert [("loss_regression" in r, "loss_student" in r) for r in records] == [(True, True)] * 3
    assert load_checkpoint(str(tmp_path / "run" / "warm-start-pairs.pt"))["source"]["n"] == 6


def test_the_regression_term_is_weighted_into_the_students_gradient(checkpoints, tmp_path):
    """With VSD's gradient at zero (the LoRA teacher is the teacher and both at the same kappa), the student's update
    is the regression's alone: its gradient is regression_weight times the plain regression loss's."""
    teacher = load_teacher(str(checkpoints / "teacher-unet-eps.pt"))
    text_encoder = TextEncoder(str(checkpoints / "clip.pt"))
    prompts = ["a red circle", "a blue square"]
    noise, latents = torch.randn(2, 4, 16, 16), torch.randn(2, 4, 16, 16)
    gradients = {}
    for weight in (0.5, 2.0):
        (tmp_path / str(weight)).mkdir()
        model, settings = distillation(checkpoints, tmp_path / str(weight), regression_weight=weight,
                                       student_grad_clip=1e6, lora_steps=1, lora_lr=1e-12)
        captured = {}
        model.student_update = lambda loss, captured=captured, model=model: captured.update(
            grad=torch.autograd.grad(loss, next(model.student.parameters()))[0]) or 0.0
        states = text_encoder(prompts)
        model.step(states, text_encoder.empty(), 4.5, 4.5, regression=(noise, states, latents))
        gradients[weight] = captured["grad"]
    assert torch.allclose(gradients[2.0], 4 * gradients[0.5], rtol=1e-4, atol=1e-9)
    assert gradients[0.5].abs().sum() > 0
