"""trainer.export: the model package and the optimum layout of a tiny random-init student, as contracts.md says.

onnxruntime is not available to Python here; test/export-parity.test.ts runs the same graphs under onnxruntime-node
against the PyTorch outputs that --parity-out writes.
"""
import json
import os
import shutil

import numpy as np
import onnx
import onnx.numpy_helper
import pytest
import torch

from trainer import diffusion, export, package
from trainer.checkpoint import save_checkpoint
from trainer.generator import Generator
from trainer.models.attention import set_nasa
from trainer.models.clip import Clip

FLOAT, INT32, INT64, UINT8 = (onnx.TensorProto.FLOAT, onnx.TensorProto.INT32, onnx.TensorProto.INT64,
                              onnx.TensorProto.UINT8)
B = export.BATCH


@pytest.fixture(scope="module")
def models():
    return export.random_models("unet-eps", tiny=True, seed=3)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    out, optimum = root / "tiny-unet", root / "optimum"
    export.main(["--random-init", "unet-eps", "--tiny", "--seed", "3", "--id", "tiny-unet", "--out", str(out),
                 "--optimum-out", str(optimum), "--threads", "1"])
    return out, optimum


def signature(path):
    """{name: (elem_type, dims)} of a graph's inputs and outputs, symbolic dims as their names."""
    graph = onnx.load(str(path)).graph

    def describe(values):
        return {v.name: (v.type.tensor_type.elem_type,
                         [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]) for v in values}

    return describe(graph.input), describe(graph.output)


def matmuls_reading(path, input_name):
    """Names of the MatMul nodes that take a graph input directly (a projection of that input)."""
    return [node.name for node in onnx.load(str(path)).graph.node
            if node.op_type == "MatMul" and input_name in node.input]


def attn2_count(model):
    return sum(1 for name, _ in model.named_modules() if name.endswith("attn2"))


def test_package_graphs_pass_the_checker_and_have_the_contracted_signatures(exported):
    out, _ = exported
    for name in ("text_encoder.onnx", "generator.onnx"):
        model = onnx.load(str(out / name))
        onnx.checker.check_model(model, full_check=True)
        assert model.opset_import[0].version == 17
    assert signature(out / "text_encoder.onnx") == (
        {"input_ids": (INT64, [B, 32])}, {"last_hidden_state": (FLOAT, [B, 32, 128])})
    assert signature(out / "generator.onnx") == (
        {"noise": (FLOAT, [B, 4, 16, 16]), "encoder_hidden_states": (FLOAT, [B, 32, 128]),
         "negative_encoder_hidden_states": (FLOAT, [B, 32, 128]), "nasa_scale": (FLOAT, [B])},
        {"image": (UINT8, [B, 64, 64, 3])})


def test_model_json_lists_every_file_with_its_sha256_and_size(exported, tmp_path):
    out, _ = exported
    manifest = json.loads((out / "model.json").read_text())
    assert sorted(manifest["files"]) == sorted(package.PACKAGE_FILES)
    assert package.verify_files(str(out)) == []
    for name, entry in manifest["files"].items():
        assert entry == package.file_entry(str(out / name))
    tampered = tmp_path / "tampered"
    shutil.copytree(out, tampered)
    (tampered / "tokenizer" / "merges.txt").write_text((out / "tokenizer" / "merges.txt").read_text() + "\n")
    assert package.verify_files(str(tampered)) == ["tokenizer/merges.txt"]


def test_model_json_has_every_contracted_field(exported):
    out, _ = exported
    manifest = json.loads((out / "model.json").read_text())
    training = manifest.pop("training")
    manifest.pop("files")
    assert manifest == {
        "format_version": 1, "id": "tiny-unet",
        "display_name": "Shapes unet-eps, teacher-initialised one-step student (random weights)",
        "backbone": "unet-eps", "parameterization": "eps", "method": "teacher-init",
        "teacher": "shapes-unet-eps-teacher", "timestep": 999, "image": {"width": 64, "height": 64},
        "latent": {"channels": 4, "height": 16, "width": 16},
        "text": {"max_length": 32, "hidden_size": 128, "pad_token_id": 641, "bos_token_id": 640, "eos_token_id": 641},
        "nasa": {"default_scale": 0.0, "max_scale": 1.0}}
    assert {k: training[k] for k in ("recipe", "steps", "seed", "metrics")} == {
        "recipe": {"random_init": "unet-eps", "tiny": True, "seed": 3}, "steps": 0, "seed": 3, "metrics": {}}
    assert isinstance(training["git_commit"], str) and training["git_commit"]


def test_generator_graph_has_a_negative_branch_in_every_cross_attention(exported, models):
    out, _ = exported
    layers = attn2_count(models.student)
    positive = matmuls_reading(out / "generator.onnx", "encoder_hidden_states")
    negative = matmuls_reading(out / "generator.onnx", "negative_encoder_hidden_states")
    assert len(positive) == len(negative) == 2 * layers  # to_k and to_v of each attn2, for each branch
    assert all("attn2/to_k" in name or "attn2/to_v" in name for name in positive + negative)


def test_optimum_layout_names_dtypes_and_configs(exported, models):
    _, optimum = exported
    assert signature(optimum / "text_encoder" / "model.onnx") == (
        {"input_ids": (INT32, [B, 32])},
        {"last_hidden_state": (FLOAT, [B, 32, 128]), "pooler_output": (FLOAT, [B, 128])})
    assert signature(optimum / "unet" / "model.onnx") == (
        {"sample": (FLOAT, [B, 4, 16, 16]), "timestep": (INT64, ["steps"]),
         "encoder_hidden_states": (FLOAT, [B, 32, 128])},
        {"out_sample": (FLOAT, [B, 4, 16, 16])})
    assert signature(optimum / "vae_decoder" / "model.onnx") == (
        {"latent_sample": (FLOAT, [B, 4, 16, 16])}, {"sample": (FLOAT, [B, 3, 64, 64])})
    for name in ("model_index.json", "tokenizer/vocab.json", "tokenizer/merges.txt", "tokenizer/tokenizer_config.json",
                 "tokenizer/special_tokens_map.json", "text_encoder/config.json"):
        assert (optimum / name).is_file(), name
    scheduler = json.loads((optimum / "scheduler" / "scheduler_config.json").read_text())
    assert {k: scheduler[k] for k in ("beta_start", "beta_end", "beta_schedule", "num_train_timesteps",
                                      "prediction_type")} == {
        "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
        "prediction_type": "epsilon"}
    assert json.loads((optimum / "vae_decoder" / "config.json").read_text())["scaling_factor"] == 1.0
    assert json.loads((optimum / "unet" / "config.json").read_text())["cross_attention_layers"] == \
        attn2_count(models.student)


def test_optimum_unet_has_plain_cross_attention_reading_encoder_hidden_states(exported, models):
    _, optimum = exported
    path = optimum / "unet" / "model.onnx"
    names = matmuls_reading(path, "encoder_hidden_states")
    layers = attn2_count(models.student)
    assert layers == 4  # tiny UNet: one at the 8x8 down level, one in the mid block, two at the 8x8 up level
    assert len([n for n in names if "attn2/to_k" in n]) == len([n for n in names if "attn2/to_v" in n]) == layers
    assert len(names) == 2 * layers
    graph_inputs = [i.name for i in onnx.load(str(path)).graph.input]
    assert "negative_encoder_hidden_states" not in graph_inputs and "nasa_scale" not in graph_inputs


def generator_inputs(models, nasa_scale, seed=0):
    batch = len(nasa_scale)
    noise = diffusion.seeded_noise(range(seed, seed + batch), models.latent_shape)
    generator = torch.Generator().manual_seed(seed)
    states = torch.randn(batch, 32, 128, generator=generator)
    negative = torch.randn(batch, 32, 128, generator=generator)
    return noise, states, negative, torch.tensor(nasa_scale)


def plain_student_latents(models, noise, states):
    student = export.plain_unet(models)
    with torch.no_grad():
        return diffusion.one_step_generate(student, noise, states)


def test_exact_float16_initializers_are_stored_as_halves_with_a_cast():
    big = np.arange(2048, dtype=np.float32) / 8  # exact float16 values
    inexact = np.full(2048, 0.1, dtype=np.float32)  # 0.1 is not a float16 number
    small = np.ones(1, dtype=np.float32)  # exact, but below the size limit
    initializers = [onnx.numpy_helper.from_array(a, n) for a, n in ((big, "big"), (inexact, "inexact"), (small, "small"))]
    nodes = [onnx.helper.make_node("Sum", ["big", "inexact", "x"], ["s"]), onnx.helper.make_node("Mul", ["s", "small"], ["y"])]
    value = lambda name, n: onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [n])
    graph = onnx.helper.make_graph(nodes, "g", [value("x", 2048)], [value("y", 2048)], initializers)
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    assert export.store_exact_halves(model.graph) == big.nbytes // 2
    onnx.checker.check_model(model, full_check=True)
    stored = {i.name: i for i in model.graph.initializer}
    assert sorted(stored) == ["big__float16", "inexact", "small"]
    assert stored["big__float16"].data_type == onnx.TensorProto.FLOAT16 and len(stored["big__float16"].raw_data) == 4096
    assert np.array_equal(onnx.numpy_helper.to_array(stored["big__float16"]).astype(np.float32), big)
    cast = model.graph.node[0]
    assert (cast.op_type, list(cast.input), list(cast.output)) == ("Cast", ["big__float16"], ["big"])
    assert [n.op_type for n in model.graph.node] == ["Cast", "Sum", "Mul"]


def test_the_generator_stores_the_student_in_float16_and_the_vae_in_float32(exported, models):
    graph = onnx.load(str(exported[0] / "generator.onnx")).graph
    halves = [i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT16]
    student_weights = sum(p.numel() for p in models.student.parameters() if p.numel() >= export.HALF_MIN_ELEMENTS)
    assert sum(np.prod(i.dims) for i in graph.initializer if i.name in halves) == student_weights
    assert len([n for n in graph.node if n.op_type == "Cast" and n.input[0] in halves]) == len(halves)
    # the random VAE's float32 weights are not float16 numbers: they stay as they are
    assert any(i.data_type == onnx.TensorProto.FLOAT and "decoder" in i.name and np.prod(i.dims) >= 1024
               for i in graph.initializer)


def test_nasa_scale_zero_is_exactly_the_plain_student(models):
    noise, states, negative, scale = generator_inputs(models, [0.0, 0.0, 0.0])
    generator = Generator(export.plain_unet(models), models.vae, models.scaling_factor, with_latents=True).eval()
    with torch.no_grad():
        image, latents = generator(noise, states, negative, scale)
    plain = plain_student_latents(models, noise, states)
    assert torch.equal(latents, plain)
    with torch.no_grad():
        expected_image = ((models.vae.decode(plain / models.scaling_factor).clamp(-1, 1) + 1) * 127.5).round()
    assert torch.equal(image, expected_image.to(torch.uint8).permute(0, 2, 3, 1))


def test_nasa_scale_changes_only_its_own_rows_in_a_mixed_batch(models):
    noise, states, negative, scale = generator_inputs(models, [0.0, 0.7, 0.0])
    generator = Generator(export.plain_unet(models), models.vae, models.scaling_factor, with_latents=True).eval()
    with torch.no_grad():
        _, latents = generator(noise, states, negative, scale)
    plain = plain_student_latents(models, noise, states)
    assert torch.allclose(latents[[0, 2]], plain[[0, 2]], atol=1e-5)
    assert (latents[1] - plain[1]).abs().max() > 1e-3  # NASA does something at 0.7


def test_generator_switches_every_cross_attention_to_nasa(models):
    student = export.plain_unet(models)
    generator = Generator(student, models.vae, models.scaling_factor)
    assert generator.cross_attention_layers == attn2_count(student) == 4
    assert set_nasa(student, False) == 4


def test_export_from_checkpoints_records_the_training(tmp_path, models):
    clip_path, vae_path, teacher_path = tmp_path / "clip.pt", tmp_path / "vae.pt", tmp_path / "teacher-unet-eps.pt"
    clip = Clip(models.text_model.args)
    clip.text_model.load_state_dict(models.text_model.state_dict())
    save_checkpoint(str(clip_path), model_args=vars(models.text_model.args), model=clip.state_dict())
    save_checkpoint(str(vae_path), model_args=vars(models.vae.args), model=models.vae.state_dict(),
                    scaling_factor=0.5)
    config = {"backbone": "unet-eps", "seed": 21, "torch_seed": 1337, "max_steps": 10}
    save_checkpoint(str(teacher_path), backbone="unet-eps", model_args=models.student.model_args(),
                    model=models.student.state_dict(), step=10, config=config)
    (tmp_path / "teacher-unet-eps.json").write_text(json.dumps({"metrics": {"alignment": {"single": 0.5}}}))
    out = tmp_path / "shapes-unet-eps-teacher-init"
    export.main(["--student", str(teacher_path), "--clip", str(clip_path), "--vae", str(vae_path),
                 "--id", out.name, "--out", str(out), "--threads", "1"])
    manifest = json.loads((out / "model.json").read_text())
    training = manifest["training"]
    assert (training["recipe"], training["steps"], training["seed"], training["metrics"]) == (
        config, 10, 1337, {"alignment": {"single": 0.5}})
    assert training["inputs"]["student"]["sha256"] == package.file_entry(str(teacher_path))["sha256"]
    assert manifest["method"] == "teacher-init" and manifest["backbone"] == "unet-eps"
    assert package.verify_files(str(out)) == []


def test_out_folder_must_be_named_after_the_id(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        export.main(["--random-init", "unet-eps", "--tiny", "--id", "a", "--out", str(tmp_path / "b")])
    assert exit_info.value.code == 2
    assert not os.path.exists(tmp_path / "b")
