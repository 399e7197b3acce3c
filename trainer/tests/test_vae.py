import json
import os
from dataclasses import asdict

import numpy as np
import onnx
import pytest
import torch

from trainer import eval_vae, shapes, train_vae
from trainer.checkpoint import load_checkpoint, save_checkpoint
from trainer.models.vae import (AutoencoderKL, VaeArgs, decode_latents, encode_images, images_to_tensor, load_vae,
                                tensor_to_images)

TINY = VaeArgs(block_out_channels=[8, 16, 32], layers_per_block=1, decoder_layers_per_block=1)


def test_factor_4_gives_4x16x16_latents_and_64x64_images():
    torch.manual_seed(0)
    vae = AutoencoderKL(TINY).eval()
    x = images_to_tensor(shapes.batch(0, 0, 2)[0])
    posterior = vae.encode(x)
    assert TINY.downsample_factor == 4
    assert posterior.mean.shape == posterior.std.shape == (2, 4, 16, 16)
    assert posterior.sample().shape == (2, 4, 16, 16) and posterior.kl().shape == (2,)
    assert vae.decode(posterior.mean).shape == (2, 3, 64, 64)


def test_factor_8_gives_8x8_latents():
    vae = AutoencoderKL(VaeArgs(block_out_channels=[8, 8, 16, 16]))
    assert vae.args.downsample_factor == 8
    assert vae.encode(torch.zeros(1, 3, 64, 64)).mean.shape == (1, 4, 8, 8)


def test_pixel_conversions_round_trip():
    images = shapes.batch(0, 0, 3)[0]
    x = images_to_tensor(images)
    assert x.shape == (3, 3, 64, 64) and x.min() >= -1 and x.max() <= 1
    assert np.array_equal(tensor_to_images(x), images)


def test_load_vae_returns_the_model_in_eval_mode_and_the_scaling_factor(tmp_path):
    torch.manual_seed(0)
    vae = AutoencoderKL(TINY)
    path = str(tmp_path / "vae.pt")
    save_checkpoint(path, model_args=asdict(TINY), model=vae.state_dict(), scaling_factor=0.5)
    loaded, scaling_factor = load_vae(path)
    assert scaling_factor == 0.5 and not loaded.training
    images = shapes.batch(0, 0, 2)[0]
    latents = encode_images(loaded, images, scaling_factor)
    assert torch.allclose(latents, vae.encode(images_to_tensor(images)).mean * 0.5)
    assert decode_latents(loaded, latents, scaling_factor).shape == (2, 64, 64, 3)


class Decode(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, latent):
        return self.vae.decode(latent)


def test_decode_exports_to_onnx_opset_17(tmp_path):
    vae = AutoencoderKL(TINY).eval()
    path = str(tmp_path / "decoder.onnx")
    torch.onnx.export(Decode(vae), torch.zeros(1, 4, 16, 16), path, opset_version=17, input_names=["latent"],
                      output_names=["sample"], dynamic_axes={"latent": {0: "batch"}, "sample": {0: "batch"}})
    model = onnx.load(path)
    onnx.checker.check_model(model)
    ops = {node.op_type for node in model.graph.node}
    assert {"Conv", "Resize"} <= ops and not ops & {"Loop", "If"}


def test_tiny_training_run_then_eval_writes_the_slim_artifact(tmp_path, capsys):
    out_dir = tmp_path / "run"
    train_vae.main([f"--out_dir={out_dir}", "--max_steps=3", "--batch_size=2", "--block_out_channels=[8,16,32]",
                    "--log_every=1", "--eval_every=3"])
    records = [json.loads(line) for line in (out_dir / "progress.jsonl").read_text().strip().split("\n")]
    assert [r["step"] for r in records] == [1, 2, 3] and "eval_psnr" in records[-1]
    artifact = tmp_path / "base" / "vae.pt"
    capsys.readouterr()
    eval_vae.main([f"--checkpoint={out_dir / 'ckpt.pt'}", "--n=8", "--batch_size=4", "--scale_samples=8",
                   f"--out={artifact}"])
    printed = capsys.readouterr().out
    metrics = json.loads(printed[:printed.rindex("}") + 1])
    assert set(metrics) >= {"psnr_db", "judge_accuracy_clean", "judge_accuracy_noised", "scaling_factor"}
    slim = load_checkpoint(str(artifact))
    assert set(slim) == {"model_args", "model", "scaling_factor", "step", "config"}
    assert all(v.dtype == torch.float32 for v in slim["model"].values())
    summary = json.loads((tmp_path / "base" / "vae.json").read_text())
    assert summary["steps"] == 3 and summary["scaling_factor"] == pytest.approx(metrics["scaling_factor"])
    vae, scaling_factor = load_vae(str(artifact))
    assert scaling_factor == pytest.approx(metrics["scaling_factor"]) and os.path.getsize(artifact) < 1_000_000


def test_downsample_factor_must_match_the_channels(capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_vae.main(["--downsample_factor=8", "--block_out_channels=[8,16,32]"])
    assert exit_info.value.code == 2 and "downsample_factor 8" in capsys.readouterr().err


def test_standardize_vae_folds_the_per_channel_affine_into_the_1x1_convs(tmp_path):
    from trainer import standardize_vae
    torch.manual_seed(3)
    source, out = str(tmp_path / "vae.pt"), str(tmp_path / "vae-std.pt")
    save_checkpoint(source, model_args=asdict(TINY), model=AutoencoderKL(TINY).state_dict(), scaling_factor=0.25)
    assert standardize_vae.main(["--vae", source, "--out", out, "--seed", "5", "--n", "64"]) == 0
    old, old_factor = load_vae(source)
    new, new_factor = load_vae(out)
    assert new_factor == 1.0 and load_checkpoint(out)["latent_standardization"]["source_scaling_factor"] == 0.25
    images = shapes.batch(5, 0, 64)[0]
    latents = encode_images(new, images, new_factor).double()
    assert torch.allclose(latents.mean(dim=(0, 2, 3)), torch.zeros(4, dtype=torch.float64), atol=1e-4)
    assert torch.allclose(latents.std(dim=(0, 2, 3)), torch.ones(4, dtype=torch.float64), atol=1e-4)
    x = images_to_tensor(images)
    assert torch.allclose(new.encode(x).std / new.encode(x).std.mean(dim=(0, 2, 3), keepdim=True),
                          old.encode(x).std / old.encode(x).std.mean(dim=(0, 2, 3), keepdim=True), atol=1e-4)
    assert np.abs(decode_latents(new, latents.float(), new_factor).astype(int)
                  - decode_latents(old, encode_images(old, images, old_factor), old_factor).astype(int)).max() <= 1
    assert standardize_vae.main(["--vae", out, "--out", str(tmp_path / "again.pt")]) == 2
