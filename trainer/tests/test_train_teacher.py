import glob
import json
import os

import pytest
import torch

from trainer import judge, package, sample, train_teacher
from tiny_models import TINY_TEACHERS, write_tiny_encoders  # trainer/tests is on sys.path under pytest


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    """Randomly initialised CLIP and VAE checkpoints in the formats of models/base/clip.pt and vae.pt."""
    return write_tiny_encoders(tmp_path_factory.mktemp("encoders"))


def run(encoders, out_dir, backbone, model=None, **overrides):
    settings = {"out_dir": str(out_dir), "backbone": backbone, "clip_path": str(encoders / "clip.pt"),
                "vae_path": str(encoders / "vae.pt"), "cache_dir": str(encoders / "cache"), "dataset_size": 40,
                "batch_size": 4, "max_steps": 4, "warmup_steps": 1, "log_every": 2, "eval_every": 4,
                "eval_prompts": 2, "threads": 1, "checkpoint_every_s": 3600, **overrides}
    argv = [f"--{key}={value if isinstance(value, str) else json.dumps(value)}" for key, value in settings.items()]
    train_teacher.main(argv + [f"--model={json.dumps(model or TINY_TEACHERS[backbone])}"])
    return torch.load(out_dir / "ckpt.pt")


@pytest.mark.parametrize("backbone", ["unet-eps", "unet-v", "dit"])
def test_trains_logs_and_loads_as_teacher(encoders, tmp_path, backbone):
    checkpoint = run(encoders, tmp_path, backbone)
    assert checkpoint["step"] == 4 and checkpoint["config"]["backbone"] == backbone
    assert any(k.startswith("ema.") for k in checkpoint["model"])
    records = [json.loads(line) for line in (tmp_path / "progress.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4] and "align_single" in records[-1]
    teacher = sample.load_teacher(str(tmp_path / "ckpt.pt"))
    assert sample.backbone_of(teacher) == backbone and not teacher.training
    assert teacher.args.parameterization == sample.BACKBONES[backbone][2]


def test_resume_is_exact(encoders, tmp_path):
    straight = run(encoders, tmp_path / "straight", "unet-eps")
    run(encoders, tmp_path / "resumed", "unet-eps", max_steps=2)
    resumed = run(encoders, tmp_path / "resumed", "unet-eps")
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key


def test_export_writes_ema_weights_and_record(encoders, tmp_path):
    run(encoders, tmp_path, "unet-v", max_steps=2)
    out = tmp_path / "teacher-unet-v.pt"
    sample.export_teacher(str(tmp_path / "ckpt.pt"), str(out), {"alignment": {"single": 0.5}})
    exported = torch.load(out)
    assert exported["backbone"] == "unet-v" and not any(k.startswith("ema.") for k in exported["model"])
    record = json.loads((tmp_path / "teacher-unet-v.json").read_text())
    assert record["parameterization"] == "v" and record["steps"] == 2 and record["metrics"]["alignment"]["single"] == 0.5
    assert record["encoders"]["vae"]["sha256"] == package.file_entry(str(encoders / "vae.pt"))["sha256"]
    teacher = sample.load_teacher(str(out))
    ema = sample.load_teacher(str(tmp_path / "ckpt.pt"))
    for (name, a), (_, b) in zip(teacher.state_dict().items(), ema.state_dict().items()):
        assert torch.equal(a, b.half().float()), name  # stored in float16


def test_init_from_continues_an_exported_teacher_and_records_the_chain(encoders, tmp_path):
    run(encoders, tmp_path / "first", "unet-eps")
    first = tmp_path / "teacher-first.pt"
    sample.export_teacher(str(tmp_path / "first" / "ckpt.pt"), str(first), {})
    # learning rate 0: AdamW (decay included) leaves the weights as loaded, so the EMA is the exported teacher's
    continued = run(encoders, tmp_path / "second", "unet-eps", init_from=str(first), max_steps=2, learning_rate=0)
    for name, value in torch.load(first)["model"].items():
        assert torch.equal(continued["model"][f"ema.{name}"], value.float()), name
    assert continued["init"]["sha256"] == package.file_entry(str(first))["sha256"]
    assert (continued["init"]["steps"], continued["init"]["init"]) == (4, None)
    second = tmp_path / "teacher-second.pt"
    sample.export_teacher(str(tmp_path / "second" / "ckpt.pt"), str(second), {})
    record = json.loads((tmp_path / "teacher-second.json").read_text())
    assert (record["steps"], record["total_steps"], record["init"]["path"]) == (2, 6, str(first))
    # a third stage chains: 2 + 2 + 4 steps
    run(encoders, tmp_path / "third", "unet-eps", init_from=str(second), max_steps=2)
    sample.export_teacher(str(tmp_path / "third" / "ckpt.pt"), str(tmp_path / "teacher-third.pt"), {})
    assert json.loads((tmp_path / "teacher-third.json").read_text())["total_steps"] == 8


def test_init_from_another_backbone_exits_2(encoders, tmp_path, capsys):
    run(encoders, tmp_path / "eps", "unet-eps", max_steps=2)
    with pytest.raises(SystemExit) as exit_info:
        run(encoders, tmp_path / "v", "unet-v", init_from=str(tmp_path / "eps" / "ckpt.pt"))
    assert exit_info.value.code == 2 and "init_from" in capsys.readouterr().err


def test_init_from_adds_long_skips_to_a_dit_and_cannot_drop_them(encoders, tmp_path, capsys):
    deeper = {**TINY_TEACHERS["dit"], "depth": 2}
    older = run(encoders, tmp_path / "plain", "dit", model=deeper, max_steps=2)
    del older["model_args"]["long_skips"]  # as models/base/teacher-dit.pt, saved before long skips existed
    torch.save(older, tmp_path / "plain" / "ckpt.pt")
    plain = sample.load_teacher(str(tmp_path / "plain" / "ckpt.pt"))
    # learning rate 0 leaves the loaded weights, and the zero skip layers, as they are: the same teacher
    skipped = run(encoders, tmp_path / "skips", "dit", model={**deeper, "long_skips": True}, max_steps=2,
                  learning_rate=0, init_from=str(tmp_path / "plain" / "ckpt.pt"))
    assert skipped["model_args"]["long_skips"] and not skipped["model"]["ema.skip_linears.0.weight"].any()
    continued = sample.load_teacher(str(tmp_path / "skips" / "ckpt.pt"))
    latent, text = torch.randn(2, 4, 16, 16), torch.randn(2, 32, 128)
    with torch.no_grad():
        assert torch.equal(continued(latent, 500, text), plain(latent, 500, text))
    with pytest.raises(SystemExit) as exit_info:
        run(encoders, tmp_path / "dropped", "dit", model=deeper, init_from=str(tmp_path / "skips" / "ckpt.pt"))
    assert exit_info.value.code == 2 and "init_from" in capsys.readouterr().err


def test_bad_model_config_exits_2(encoders, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        train_teacher.main([f"--out_dir={tmp_path}", "--model={\"channels\": 3}"])
    assert exit_info.value.code == 2


def test_configs_parse():
    from trainer.configurator import configure
    paths = sorted(glob.glob("trainer/configs/teacher-*.json"))
    assert [os.path.basename(path) for path in paths] == [
        "teacher-dit-continue.json", "teacher-dit-regress.json", "teacher-dit-skips-continue.json",
        "teacher-dit-skips.json", "teacher-dit.json",
        "teacher-unet-eps-continue.json", "teacher-unet-eps.json", "teacher-unet-v-continue.json",
        "teacher-unet-v.json"]
    for path in paths:
        config = configure(train_teacher.DEFAULTS, [path])
        assert os.path.basename(path).startswith(f"teacher-{config['backbone']}")
        sample.build_backbone(config["backbone"], config["model"])
        if config["init_from"]:  # a continuation starts from the committed teacher of its own backbone
            assert config["init_from"] == f"models/base/teacher-{config['backbone']}.pt"
            assert os.path.isfile(config["init_from"])
        if config["regress_onto"]:  # a committed teacher
            assert os.path.isfile(config["regress_onto"]) and config["regress_onto"].startswith("models/base/teacher-")


def test_alignment_of_real_images_is_perfect_and_split_by_object_count():
    from trainer import shapes
    images, captions = shapes.batch(5, 0, 40)
    chosen = [i for i, c in enumerate(captions) if c != "two shapes"][:30]
    result = sample.alignment(images[chosen], [captions[i] for i in chosen])
    assert result["n_single"] + result["n_two"] == 30
    assert result["all"] == 1.0 and result["failures"] == {"single": {}, "two": {}}
    shuffled = sample.alignment(images[chosen][::-1], [captions[i] for i in chosen])
    assert shuffled["all"] < 0.5
    failed = {kind: sum(shuffled["failures"][kind].values()) for kind in ("single", "two")}
    assert failed == {"single": round((1 - shuffled["single"]) * shuffled["n_single"]),
                      "two": round((1 - shuffled["two"]) * shuffled["n_two"])}
    assert set(shuffled["failures"]["single"]) | set(shuffled["failures"]["two"]) <= set(judge.FAILURES)


def test_grid_and_generate(encoders, tmp_path):
    from PIL import Image
    from trainer.models.vae import load_vae
    run(encoders, tmp_path, "dit", max_steps=1, eval_every=0)
    teacher = sample.load_teacher(str(tmp_path / "ckpt.pt"))
    text_encoder = sample.TextEncoder(str(encoders / "clip.pt"))
    vae, scaling_factor = load_vae(str(encoders / "vae.pt"))
    prompts = ["a red circle"] * 3 + ["two shapes"] * 3
    images = sample.generate(teacher, text_encoder, vae, scaling_factor, prompts, 4.0, list(range(6)), steps=2,
                             batch_size=4)
    assert images.shape == (6, 64, 64, 3) and images.dtype.name == "uint8"
    again = sample.generate(teacher, text_encoder, vae, scaling_factor, prompts[3:], 4.0, [3, 4, 5], steps=2)
    assert (again == images[3:]).all()  # an image depends on its prompt and seed, not on its batch
    sample.save_grid(images, prompts, 3, str(tmp_path / "grid.png"))
    assert Image.open(tmp_path / "grid.png").size == (3 * 128, 2 * (128 + 14))


def test_regress_onto_a_teacher_takes_its_predictions_as_targets(encoders, tmp_path):
    run(encoders, tmp_path / "eps", "unet-eps", max_steps=2)
    target = tmp_path / "teacher-eps.pt"
    sample.export_teacher(str(tmp_path / "eps" / "ckpt.pt"), str(target), {})
    # a model that starts as the teacher it regresses onto has nothing to learn: zero loss, where the data's is not
    same = run(encoders, tmp_path / "same", "unet-eps", init_from=str(target), regress_onto=str(target),
               max_steps=2, log_every=1, eval_every=0)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "same" / "progress.jsonl").read_text().splitlines()]
    assert losses[0] == 0.0 and same["config"]["regress_onto"] == str(target)
    run(encoders, tmp_path / "data", "unet-eps", init_from=str(target), max_steps=1, log_every=1, eval_every=0)
    data_loss = json.loads((tmp_path / "data" / "progress.jsonl").read_text().splitlines()[0])["loss"]
    assert data_loss > 0.01
