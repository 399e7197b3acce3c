import os
import signal
import subprocess
import sys
import time

import torch

from trainer import train_vae
from trainer.checkpoint import load_checkpoint, reproduce_commands, save_checkpoint

TINY_VAE = ["--block_out_channels=[8,16,32]", "--batch_size=2", "--log_every=1", "--eval_every=1000",
            "--warmup_steps=2", "--lr_decay_steps=6", "--checkpoint_every_s=100000"]


def test_save_is_atomic_and_round_trips(tmp_path):
    path = tmp_path / "deep" / "ckpt.pt"
    save_checkpoint(str(path), step=3, model={"w": torch.arange(4.0)}, config={"a": 1})
    save_checkpoint(str(path), step=4, model={"w": torch.ones(2)}, config={"a": 2})
    loaded = load_checkpoint(str(path))
    assert loaded["step"] == 4 and torch.equal(loaded["model"]["w"], torch.ones(2)) and loaded["config"] == {"a": 2}
    assert os.listdir(path.parent) == ["ckpt.pt"]  # no temporary file left behind


def test_a_failed_save_leaves_the_previous_checkpoint(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(str(path), step=1)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    try:
        save_checkpoint(str(path), step=2, bad=Unpicklable())
    except RuntimeError:
        pass
    assert load_checkpoint(str(path))["step"] == 1 and os.listdir(tmp_path) == ["ckpt.pt"]


def run_vae(out_dir, steps):
    train_vae.main([f"--out_dir={out_dir}", f"--max_steps={steps}", *TINY_VAE])
    return load_checkpoint(os.path.join(out_dir, "ckpt.pt"))


def test_resume_is_exact(tmp_path):
    """6 steps straight == 3 steps, save, resume, 3 more: same weights and optimizer state, bit for bit. The VAE
    step draws posterior and latent noise, so this also checks the saved rng state."""
    straight = run_vae(str(tmp_path / "straight"), 6)
    run_vae(str(tmp_path / "split"), 3)
    resumed = run_vae(str(tmp_path / "split"), 6)
    assert straight["step"] == resumed["step"] == 6
    for name, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][name]), name
    for index, state in straight["optimizer"]["state"].items():
        assert torch.equal(state["exp_avg"], resumed["optimizer"]["state"][index]["exp_avg"])
    records = (tmp_path / "split" / "progress.jsonl").read_text().strip().split("\n")
    assert len(records) == 6  # the resumed run appends to the same log


def test_sigterm_saves_a_checkpoint_and_exits_143(tmp_path):
    out_dir = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "trainer.train_vae", f"--out_dir={out_dir}",
                                "--max_steps=100000", *TINY_VAE], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    progress = out_dir / "progress.jsonl"
    deadline = time.time() + 120
    while not (progress.exists() and progress.read_text().count("\n") >= 2) and time.time() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 143, output
    assert "stopped by SIGTERM" in output
    assert load_checkpoint(str(out_dir / "ckpt.pt"))["step"] >= 2


def test_config_changes_on_resume_are_recorded_and_give_phase_commands(tmp_path):
    out_dir = str(tmp_path / "run")
    run_vae(out_dir, 2)
    train_vae.main([f"--out_dir={out_dir}", "--max_steps=3", *TINY_VAE, "--edge_weight=8.0"])
    history = load_checkpoint(f"{out_dir}/ckpt.pt")["history"]
    assert history == [{"step": 2, "changes": {"max_steps": 3, "edge_weight": 8.0}}]
    config = {"max_steps": 3, "lr_decay_steps": 6}
    assert reproduce_commands("trainer.train_vae", "vae.json", config, history) == [
        "/usr/bin/python3 -m trainer.train_vae vae.json --max_steps=2 --lr_decay_steps=6",
        "/usr/bin/python3 -m trainer.train_vae vae.json --edge_weight=8.0"]
