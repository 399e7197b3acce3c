"""Export a one-step student as a model package (docs/contracts.md), optionally also in the optimum/diffusers layout.

    /usr/bin/python3 -m trainer.export --student models/base/teacher-unet-eps.pt --method teacher-init \\
        --id shapes-unet-eps-teacher-init --out models/shapes-unet-eps-teacher-init
    /usr/bin/python3 -m trainer.export --random-init unet-eps --tiny --id tiny --out /tmp/tiny \\
        --optimum-out /tmp/tiny-optimum --parity-out /tmp/tiny-parity

Package (--out): text_encoder.onnx (input_ids int64 [B, L] -> last_hidden_state float32 [B, L, D]), generator.onnx
(trainer/generator.py: noise, encoder_hidden_states, negative_encoder_hidden_states, nasa_scale -> image uint8
[B, H, W, 3]), tokenizer/ (vocab.json, merges.txt), model.json (trainer/package.py). Opset 17, constant folding,
batch axis dynamic everywhere, onnx.checker on every graph.

Optimum/diffusers layout (--optimum-out), what a Stable-Diffusion-family student looks like on the Hub, so that the
service's importer (NASA graph rewrite + UNet/VAE fusion) has a small real graph to work on:
    text_encoder/model.onnx   input_ids int32 [B, L] -> last_hidden_state float32 [B, L, D], pooler_output [B, D]
    unet/model.onnx           sample float32 [B, C, h, w], timestep int64 [steps], encoder_hidden_states [B, L, D]
                              -> out_sample float32 [B, C, h, w]       (plain attention: no NASA inputs)
    vae_decoder/model.onnx    latent_sample float32 [B, C, h, w] -> sample float32 [B, 3, H, W] (about [-1, 1];
                              unscaled latents: divide by vae_decoder/config.json's scaling_factor first)
    tokenizer/ (vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json), model_index.json,
    scheduler/scheduler_config.json, text_encoder/config.json, unet/config.json, vae_decoder/config.json
The names and dtypes follow optimum 1.x's exporter (CLIPTextOnnxConfig casts input_ids to int32; UNetOnnxConfig's
timestep is int64 with its own "steps" axis). diffusers' own conversion script gives timestep float32 [B] and
optimum-onnx 2.x a float32 scalar: an importer must accept all three. UNet backbones only: a DiT is a "transformer"
in diffusers' layout, with other inputs.

--parity-out DIR: inputs and PyTorch outputs for every exported graph (raw little-endian .bin files + parity.json), so
test/export-parity.test.ts can check onnxruntime against PyTorch; onnxruntime exists here only for Node.
"""
import argparse
import copy
import inspect
import json
import os
import shutil
import sys

import numpy as np
import onnx
import onnx.numpy_helper
import torch
from torch import nn

from trainer import cpu_threads, diffusion, package
from trainer.checkpoint import half_weights, load_checkpoint
from trainer.clip_tokenizer import DEFAULT_DIR as TOKENIZER_DIR, ClipTokenizer, BOS, EOS
from trainer.generator import Generator
from trainer.models.attention import set_nasa
from trainer.models.clip import Clip, ClipArgs, eos_positions, load_clip
from trainer.models.vae import AutoencoderKL, VaeArgs, load_vae
from trainer.sample import BACKBONES, backbone_of, build_backbone, load_teacher

OPSET = 17
BATCH = "batch_size"  # the symbolic name of every batch axis
IMAGE_SIZE = 64  # contracts.md: shapes-world images are 64 x 64
# --tiny: the smallest models of each family that still have every kind of layer (tests, parity fixtures)
TINY_CLIP = {"layers": 1, "heads": 2}
TINY_VAE = {"block_out_channels": [8, 16, 16], "decoder_layers_per_block": 1, "norm_groups": 8}
TINY_BACKBONE = {
    "unet-eps": {"block_channels": [32, 32], "attention_levels": [False, True], "time_embed_dim": 64},
    "unet-v": {"block_channels": [32, 32], "attention_levels": [False, True], "time_embed_dim": 64},
    "dit": {"hidden_size": 64, "depth": 2, "heads": 2, "frequency_embedding_size": 64},
}
PARITY_PROMPTS = ["a red circle on a white background", "a large blue square", "a purple circle and an orange triangle"]
PARITY_NEGATIVES = ["", "blue", "a circle"]
PARITY_NASA_SCALES = [0.0, 0.5, 1.0]  # one plain row: scale 0 must give the plain student inside a NASA batch
PARITY_UNET_TIMESTEPS = [999, 500, 20]
HALF_MIN_ELEMENTS = 1024  # smaller float16-exact initializers stay float32: not worth a Cast node
HALF_SUFFIX = "__float16"  # the float16 initializer of a float32 value named X is X__float16
FLOAT_TOLERANCE = 1e-4  # max |onnxruntime - PyTorch| for float outputs (latents, hidden states, decoder output)
PIXEL_TOLERANCE = 1  # grey levels: a value on a rounding boundary may round either way
# torch >= 2.5 also has the dynamo exporter (the default from 2.9); the graphs here are made by the TorchScript one
TORCHSCRIPT_EXPORTER = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}


class ExportError(RuntimeError):
    """Inputs that cannot make a valid package (sizes that do not fit together, a missing file)."""


class Models:
    """Everything a package is made of, in eval mode, plus where it came from."""

    def __init__(self, text_model, student, backbone, vae, scaling_factor, tokenizer, record):
        self.text_model = text_model  # ClipTextModel: input_ids (B, L) -> (B, L, D)
        self.student = student
        self.backbone = backbone  # unet-eps | unet-v | dit
        self.vae = vae
        self.scaling_factor = scaling_factor
        self.tokenizer = tokenizer
        self.record = record  # the manifest's training record
        self.check()

    def check(self):
        text, args = self.text_model.args, self.student.args
        if self.tokenizer.vocab_size > text.vocab_size:
            raise ExportError(f"the tokenizer has {self.tokenizer.vocab_size} tokens, the CLIP only {text.vocab_size}")
        if text.width != args.cross_attention_dim:
            raise ExportError(f"CLIP hidden size {text.width} != the student's cross_attention_dim "
                              f"{args.cross_attention_dim}")
        if self.vae.args.latent_channels != args.in_channels:
            raise ExportError(f"VAE latent channels {self.vae.args.latent_channels} != student in_channels "
                              f"{args.in_channels}")

    @property
    def latent_shape(self):
        args = self.student.args
        return args.in_channels, args.sample_size, args.sample_size

    @property
    def image_size(self):
        return self.student.args.sample_size * self.vae.args.downsample_factor


def load_models(student_path, clip_path, vae_path, tokenizer_dir=TOKENIZER_DIR):
    """Trained models from checkpoints: any backbone checkpoint sample.load_teacher reads (a teacher is the
    teacher-init student; a distilled student checkpoint carries the same backbone, model_args and model keys)."""
    for path in (student_path, clip_path, vae_path):
        if not os.path.isfile(path):
            raise ExportError(f"no checkpoint at {path}")
    checkpoint = load_checkpoint(student_path)
    student = load_teacher(student_path)
    vae, scaling_factor = load_vae(vae_path)
    record = package.training_record(checkpoint, metrics=_metrics_beside(student_path))
    record["inputs"] = {name: {"path": os.path.relpath(path), "sha256": package.file_entry(path)["sha256"]}
                        for name, path in (("student", student_path), ("clip", clip_path), ("vae", vae_path))}
    return Models(load_clip(clip_path).text_model, student, backbone_of(student), vae, scaling_factor,
                  ClipTokenizer.from_dir(tokenizer_dir), record)


def _metrics_beside(checkpoint_path):
    """The metrics of the <name>.json record that sample.py writes beside a committed checkpoint, if there is one."""
    path = os.path.splitext(checkpoint_path)[0] + ".json"
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f).get("metrics")


def random_models(backbone, tiny=False, seed=0, tokenizer_dir=TOKENIZER_DIR):
    """Randomly initialised models of the real classes (tiny configs with tiny=True): a package for the service and
    the tests before any training has finished. scaling_factor 1."""
    if backbone not in BACKBONES:
        raise ExportError(f"unknown backbone {backbone!r}; known: {', '.join(BACKBONES)}")
    torch.manual_seed(seed)
    tokenizer = ClipTokenizer.from_dir(tokenizer_dir)
    clip_args = ClipArgs(vocab_size=tokenizer.vocab_size, eos_token_id=tokenizer.eos_token_id,
                         **(TINY_CLIP if tiny else {}))
    text_model = Clip(clip_args).text_model.eval()
    student = build_backbone(backbone, TINY_BACKBONE[backbone] if tiny else {}).eval()
    # rounded to float16 values, as distill stores trained students: exports hold them the same way (float16
    # initializers, store_exact_halves)
    student.load_state_dict(half_weights(student.state_dict()))
    vae = AutoencoderKL(VaeArgs(**(TINY_VAE if tiny else {}))).eval()
    record = package.training_record({"config": {"random_init": backbone, "tiny": tiny, "seed": seed}, "step": 0})
    return Models(text_model, student, backbone, vae, 1.0, tokenizer, record)


def store_exact_halves(graph, min_elements=HALF_MIN_ELEMENTS) -> int:
    """Store each float32 initializer of at least min_elements values that are all exactly float16 numbers (a
    student's weights: distill stores them in float16) as float16, cast back to float32 by a Cast node at the top of
    the graph. onnxruntime folds those Casts once, when it builds the session: the graph computes the same numbers
    at the same speed from half the bytes. Returns the bytes saved."""
    graph_inputs = {value.name for value in graph.input}
    casts, saved = [], 0
    for initializer in graph.initializer:
        if initializer.data_type != onnx.TensorProto.FLOAT or initializer.name in graph_inputs:
            continue
        if np.prod(initializer.dims) < min_elements:
            continue
        values = onnx.numpy_helper.to_array(initializer)
        halves = values.astype(np.float16)
        if not np.array_equal(halves.astype(np.float32), values):
            continue
        name = initializer.name
        # raw_data, as torch writes float32 (numpy_helper.from_array puts float16 into int32_data)
        initializer.CopyFrom(onnx.helper.make_tensor(f"{name}{HALF_SUFFIX}", onnx.TensorProto.FLOAT16, values.shape,
                                                     halves.tobytes(), raw=True))
        casts.append(onnx.helper.make_node("Cast", [f"{name}{HALF_SUFFIX}"], [name], name=f"{name}{HALF_SUFFIX}_cast",
                                           to=onnx.TensorProto.FLOAT))
        saved += values.nbytes // 2
    for index, cast in enumerate(casts):
        graph.node.insert(index, cast)
    return saved


def export_graph(module, inputs, path, input_names, output_names, dynamic_axes=None):
    """torch.onnx.export at opset 17 with constant folding and a dynamic batch axis on every input and output
    (unless dynamic_axes says otherwise), then onnx.checker. Returns the loaded ONNX model.

    Output axes that are not dynamic get the sizes PyTorch produced: the exporter's shape inference can leave a
    fixed axis symbolic (the text encoder's sequence axis comes out as a generated name), and the service checks
    shapes against the graph's metadata."""
    axes = {name: {0: BATCH} for name in (*input_names, *output_names)}
    axes.update(dynamic_axes or {})
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with torch.no_grad():
        results = module(*inputs)
        torch.onnx.export(module, inputs, path, opset_version=OPSET, do_constant_folding=True,
                          input_names=list(input_names), output_names=list(output_names), dynamic_axes=axes,
                          **TORCHSCRIPT_EXPORTER)
    model = onnx.load(path)
    results = results if isinstance(results, tuple) else (results,)
    for output, result in zip(model.graph.output, results):
        for axis, (dim, size) in enumerate(zip(output.type.tensor_type.shape.dim, result.shape)):
            if axis in axes.get(output.name, {}):
                dim.dim_param = axes[output.name][axis]
            else:
                dim.dim_value = size
    store_exact_halves(model.graph)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)
    return model


def example_inputs(models, batch=2):
    """Generator inputs with a non-trivial batch: (noise, encoder_hidden_states, negative_states, nasa_scale)."""
    length, width = models.text_model.args.max_length, models.text_model.args.width
    return (torch.randn(batch, *models.latent_shape), torch.randn(batch, length, width),
            torch.randn(batch, length, width), torch.linspace(0.0, 1.0, batch))


def export_text_encoder(models, path):
    ids = torch.from_numpy(models.tokenizer(["a red circle", "two shapes"], models.text_model.args.max_length))
    export_graph(models.text_model, (ids,), path, ["input_ids"], ["last_hidden_state"])


def export_generator(models, path, with_latents=False):
    """generator.onnx (or, with_latents, the parity variant that also outputs the x0 latent). Returns the Generator.

    The student is copied: Generator switches its attn2 processors to NASA, and the optimum UNet keeps plain ones."""
    generator = Generator(copy.deepcopy(models.student), models.vae, models.scaling_factor, with_latents).eval()
    outputs = ["image", "latents"] if with_latents else ["image"]
    export_graph(generator, example_inputs(models), path,
                 ["noise", "encoder_hidden_states", "negative_encoder_hidden_states", "nasa_scale"], outputs)
    return generator


def copy_tokenizer(tokenizer_dir, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    for name in ("vocab.json", "merges.txt"):
        shutil.copyfile(os.path.join(tokenizer_dir, name), os.path.join(out_dir, name))


def manifest_fields(models, model_id, display_name, method, teacher, nasa_default, nasa_max):
    text = models.text_model.args
    channels, height, width = models.latent_shape
    return {
        "id": model_id,
        "display_name": display_name,
        "backbone": models.backbone,
        "parameterization": models.student.args.parameterization,
        "method": method,
        "teacher": teacher,
        "timestep": diffusion.STUDENT_TIMESTEP,
        "image": {"width": models.image_size, "height": models.image_size},
        "latent": {"channels": channels, "height": height, "width": width},
        "text": {"max_length": text.max_length, "hidden_size": text.width,
                 "pad_token_id": models.tokenizer.pad_token_id, "bos_token_id": models.tokenizer.bos_token_id,
                 "eos_token_id": models.tokenizer.eos_token_id},
        "nasa": {"default_scale": nasa_default, "max_scale": nasa_max},
        "training": models.record,
    }


def export_package(models, out_dir, fields, tokenizer_dir=TOKENIZER_DIR):
    """Write the package into a sibling temporary folder, then move it into place: the registry never sees a
    half-written package. An existing out_dir is replaced (moved aside first, so it is missing only between two
    renames)."""
    if models.image_size != IMAGE_SIZE:
        raise ExportError(f"the student and VAE make {models.image_size}px images, contracts.md says {IMAGE_SIZE}")
    base = out_dir.rstrip(os.sep)
    tmp_dir, old_dir = f"{base}.tmp-{os.getpid()}", f"{base}.old-{os.getpid()}"
    shutil.rmtree(tmp_dir, ignore_errors=True)
    os.makedirs(tmp_dir)
    try:
        export_text_encoder(models, os.path.join(tmp_dir, "text_encoder.onnx"))
        export_generator(models, os.path.join(tmp_dir, "generator.onnx"))
        copy_tokenizer(tokenizer_dir, os.path.join(tmp_dir, "tokenizer"))
        manifest = package.write_manifest(tmp_dir, fields)
        if os.path.exists(out_dir):
            os.replace(out_dir, old_dir)
        os.replace(tmp_dir, out_dir)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        shutil.rmtree(old_dir, ignore_errors=True)
    return manifest


class OptimumTextEncoder(nn.Module):
    """optimum's CLIP text encoder: int32 input_ids -> (last_hidden_state, pooler_output = the state at the EOS)."""

    def __init__(self, text_model):
        super().__init__()
        self.text_model = text_model

    def forward(self, input_ids):
        hidden = self.text_model(input_ids.long())  # (B, L, D)
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return hidden, hidden[rows, eos_positions(input_ids, self.text_model.args.eos_token_id)]  # (B, D)


class VaeDecoder(nn.Module):
    """diffusers' vae_decoder graph: unscaled latent_sample -> sample (post_quant_conv + decoder, not clamped)."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, latent_sample):
        return self.vae.decode(latent_sample)


def plain_unet(models):
    """A copy of the student with plain attention processors: the optimum UNet has no NASA inputs."""
    unet = copy.deepcopy(models.student)
    set_nasa(unet, False)
    return unet


def export_optimum(models, out_dir, tokenizer_dir=TOKENIZER_DIR):
    """The optimum/diffusers ONNX layout of the same weights (see the module docstring)."""
    if not models.backbone.startswith("unet"):
        raise ExportError(f"the optimum layout holds a UNet; backbone {models.backbone} is not one")
    shutil.rmtree(out_dir, ignore_errors=True)
    text, args, vae_args = models.text_model.args, models.student.args, models.vae.args
    ids = torch.from_numpy(models.tokenizer(["a red circle", "two shapes"], text.max_length)).int()
    export_graph(OptimumTextEncoder(models.text_model), (ids,), os.path.join(out_dir, "text_encoder", "model.onnx"),
                 ["input_ids"], ["last_hidden_state", "pooler_output"])
    noise, states, _, _ = example_inputs(models)
    timestep = torch.tensor([999, 500], dtype=torch.int64)
    export_graph(plain_unet(models), (noise, timestep, states), os.path.join(out_dir, "unet", "model.onnx"),
                 ["sample", "timestep", "encoder_hidden_states"], ["out_sample"], {"timestep": {0: "steps"}})
    export_graph(VaeDecoder(models.vae), (noise,), os.path.join(out_dir, "vae_decoder", "model.onnx"),
                 ["latent_sample"], ["sample"])
    copy_tokenizer(tokenizer_dir, os.path.join(out_dir, "tokenizer"))
    _write_json(os.path.join(out_dir, "tokenizer", "special_tokens_map.json"),
                {"bos_token": BOS, "eos_token": EOS, "pad_token": EOS, "unk_token": EOS})
    _write_json(os.path.join(out_dir, "tokenizer", "tokenizer_config.json"), {
        "tokenizer_class": "CLIPTokenizer", "model_max_length": text.max_length, "do_lower_case": True,
        "add_prefix_space": False, "errors": "replace", "bos_token": BOS, "eos_token": EOS, "pad_token": EOS,
        "unk_token": EOS})
    _write_json(os.path.join(out_dir, "model_index.json"), {
        "_class_name": "OnnxStableDiffusionPipeline", "_diffusers_version": "0.27.2",
        "feature_extractor": [None, None], "requires_safety_checker": False, "safety_checker": [None, None],
        "scheduler": ["diffusers", "EulerDiscreteScheduler"], "text_encoder": ["diffusers", "OnnxRuntimeModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "OnnxRuntimeModel"],
        "vae_decoder": ["diffusers", "OnnxRuntimeModel"], "vae_encoder": [None, None]})
    _write_json(os.path.join(out_dir, "scheduler", "scheduler_config.json"), {
        "_class_name": "EulerDiscreteScheduler", "_diffusers_version": "0.27.2",
        "num_train_timesteps": diffusion.NUM_TRAIN_TIMESTEPS, "beta_start": diffusion.BETA_START,
        "beta_end": diffusion.BETA_END, "beta_schedule": "scaled_linear",
        "prediction_type": {"eps": "epsilon", "v": "v_prediction"}[args.parameterization],
        "timestep_spacing": "trailing", "steps_offset": 0, "clip_sample": False})
    _write_json(os.path.join(out_dir, "text_encoder", "config.json"), {
        "architectures": ["CLIPTextModel"], "model_type": "clip_text_model", "vocab_size": text.vocab_size,
        "hidden_size": text.width, "intermediate_size": text.mlp_ratio * text.width,
        "num_attention_heads": text.heads, "num_hidden_layers": text.layers,
        "max_position_embeddings": text.max_length, "hidden_act": "gelu", "layer_norm_eps": 1e-5,
        "bos_token_id": models.tokenizer.bos_token_id, "eos_token_id": models.tokenizer.eos_token_id,
        "pad_token_id": models.tokenizer.pad_token_id})
    down = ["CrossAttnDownBlock2D" if attention else "DownBlock2D" for attention in args.attention_levels]
    _write_json(os.path.join(out_dir, "unet", "config.json"), {
        "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.27.2",
        "in_channels": args.in_channels, "out_channels": args.out_channels, "sample_size": args.sample_size,
        "block_out_channels": list(args.block_channels), "down_block_types": down,
        "mid_block_type": "UNetMidBlock2DCrossAttn",
        "up_block_types": [name.replace("Down", "Up") for name in reversed(down)],
        "layers_per_block": args.layers_per_block, "cross_attention_dim": args.cross_attention_dim,
        "attention_head_dim": args.attention_head_dim, "norm_num_groups": args.norm_groups,
        "flip_sin_to_cos": True, "freq_shift": 0, "act_fn": "silu",
        "cross_attention_layers": _count_attn2(models.student),
        "snoopi_backbone": models.backbone, "snoopi_model_args": models.student.model_args()})
    _write_json(os.path.join(out_dir, "vae_decoder", "config.json"), {
        "_class_name": "AutoencoderKL", "_diffusers_version": "0.27.2",
        "in_channels": vae_args.in_channels, "out_channels": vae_args.in_channels,
        "latent_channels": vae_args.latent_channels, "block_out_channels": list(vae_args.block_out_channels),
        "layers_per_block": vae_args.layers_per_block, "norm_num_groups": vae_args.norm_groups,
        "sample_size": models.image_size, "scaling_factor": models.scaling_factor, "act_fn": "silu"})


def _count_attn2(model):
    return sum(1 for name, _ in model.named_modules() if name.split(".")[-1] == "attn2")


def _write_json(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(value, f, indent=2)
        f.write("\n")


def _tensor_file(parity_dir, name, tensor, tolerance=None):
    """Write a tensor as raw little-endian bytes; return its parity.json entry."""
    array = tensor.detach().cpu().numpy() if isinstance(tensor, torch.Tensor) else np.asarray(tensor)
    array = np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<")))
    file = f"{name}.bin"
    array.tofile(os.path.join(parity_dir, file))
    entry = {"dtype": str(array.dtype), "dims": list(array.shape), "file": file}
    if tolerance is not None:
        entry["max_abs"] = tolerance
    return entry


def write_parity(models, package_dir, parity_dir, optimum_dir=None, seed=0):
    """Inputs and PyTorch outputs for every graph of the package (and of the optimum layout, when given):
    parity_dir/parity.json + one .bin per tensor. Graph paths in parity.json are relative to parity_dir."""
    shutil.rmtree(parity_dir, ignore_errors=True)
    os.makedirs(parity_dir)
    length = models.text_model.args.max_length
    ids = torch.from_numpy(models.tokenizer(PARITY_PROMPTS, length))
    negative_ids = torch.from_numpy(models.tokenizer(PARITY_NEGATIVES, length))
    batch = len(PARITY_PROMPTS)
    noise = diffusion.seeded_noise([seed + i for i in range(batch)], models.latent_shape)
    nasa_scale = torch.tensor(PARITY_NASA_SCALES)
    generator = export_generator(models, os.path.join(parity_dir, "generator-with-latents.onnx"), with_latents=True)
    with torch.no_grad():
        states, negative_states = models.text_model(ids), models.text_model(negative_ids)
        image, latents = generator(noise, states, negative_states, nasa_scale)

    def case(name, graph, inputs, outputs):
        return {"name": name, "graph": os.path.relpath(graph, parity_dir),
                "inputs": {key: _tensor_file(parity_dir, f"{name}.{key}", value) for key, value in inputs.items()},
                "outputs": {key: _tensor_file(parity_dir, f"{name}.{key}", value, tolerance)
                            for key, (value, tolerance) in outputs.items()}}

    generator_inputs = {"noise": noise, "encoder_hidden_states": states,
                        "negative_encoder_hidden_states": negative_states, "nasa_scale": nasa_scale}
    all_ids = torch.cat([ids, negative_ids])
    with torch.no_grad():
        all_states = models.text_model(all_ids)
    cases = [
        case("text_encoder", os.path.join(package_dir, "text_encoder.onnx"), {"input_ids": all_ids},
             {"last_hidden_state": (all_states, FLOAT_TOLERANCE)}),
        case("generator", os.path.join(package_dir, "generator.onnx"), generator_inputs,
             {"image": (image, PIXEL_TOLERANCE)}),
        case("generator_with_latents", os.path.join(parity_dir, "generator-with-latents.onnx"), generator_inputs,
             {"image": (image, PIXEL_TOLERANCE), "latents": (latents, FLOAT_TOLERANCE)}),
    ]
    if optimum_dir is not None:
        timestep = torch.tensor(PARITY_UNET_TIMESTEPS, dtype=torch.int64)
        with torch.no_grad():
            hidden, pooled = OptimumTextEncoder(models.text_model)(all_ids.int())
            out_sample = plain_unet(models)(noise, timestep, states)
            decoded = models.vae.decode(latents / models.scaling_factor)
        cases += [
            case("optimum_text_encoder", os.path.join(optimum_dir, "text_encoder", "model.onnx"),
                 {"input_ids": all_ids.int()},
                 {"last_hidden_state": (hidden, FLOAT_TOLERANCE), "pooler_output": (pooled, FLOAT_TOLERANCE)}),
            case("optimum_unet", os.path.join(optimum_dir, "unet", "model.onnx"),
                 {"sample": noise, "timestep": timestep, "encoder_hidden_states": states},
                 {"out_sample": (out_sample, FLOAT_TOLERANCE)}),
            case("optimum_vae_decoder", os.path.join(optimum_dir, "vae_decoder", "model.onnx"),
                 {"latent_sample": latents / models.scaling_factor}, {"sample": (decoded, FLOAT_TOLERANCE)}),
        ]
    _write_json(os.path.join(parity_dir, "parity.json"), {"seed": seed, "cases": cases})


METHOD_NAMES = {"teacher-init": "teacher-initialised one-step student", "sb": "SwiftBrush one-step student",
                "pg-sb": "PG-SB one-step student"}


def default_display_name(backbone, method, random_init=False):
    """model.json's display_name when none is given, e.g. "Shapes unet-eps, PG-SB one-step student"."""
    return f"Shapes {backbone}, {METHOD_NAMES[method]}" + (" (random weights)" if random_init else "")


def default_teacher_id(backbone):
    """model.json's teacher when none is given: the id of the backbone's teacher package."""
    return f"shapes-{backbone}-teacher"


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Export a one-step student as a model package (ONNX).")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--student", help="backbone checkpoint: a teacher (teacher-init) or a distilled student")
    source.add_argument("--random-init", choices=sorted(BACKBONES), help="randomly initialised models instead")
    parser.add_argument("--tiny", action="store_true", help="with --random-init: tiny configs (tests)")
    parser.add_argument("--seed", type=int, default=0, help="--random-init weights and parity inputs")
    parser.add_argument("--clip", default="models/base/clip.pt")
    parser.add_argument("--vae", default="models/base/vae.pt")
    parser.add_argument("--tokenizer", default=TOKENIZER_DIR, help="folder with vocab.json and merges.txt")
    parser.add_argument("--id", required=True, help="model id, also the package folder's name")
    parser.add_argument("--out", required=True, help="package folder, e.g. models/<id>")
    parser.add_argument("--display-name", help="default: derived from backbone and method")
    parser.add_argument("--method", choices=["teacher-init", "sb", "pg-sb"], default="teacher-init")
    parser.add_argument("--teacher", help="teacher id (default shapes-<backbone>-teacher)")
    parser.add_argument("--nasa-default-scale", type=float, default=0.0)
    parser.add_argument("--nasa-max-scale", type=float, default=1.0)
    parser.add_argument("--optimum-out", help="also write the optimum/diffusers ONNX layout here")
    parser.add_argument("--parity-out", help="also write the onnxruntime-vs-PyTorch parity fixture here")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.tiny and not args.random_init:
        parser.error("--tiny needs --random-init")
    if os.path.basename(os.path.normpath(args.out)) != args.id:
        parser.error(f"--out must be a folder named after --id ({args.id}); the registry requires it")
    if not 0.0 <= args.nasa_default_scale <= args.nasa_max_scale:
        parser.error("need 0 <= --nasa-default-scale <= --nasa-max-scale")
    return args


def main(argv):
    args = parse_args(argv)
    cpu_threads.use(args.threads)
    if args.random_init:
        models = random_models(args.random_init, args.tiny, args.seed, args.tokenizer)
    else:
        models = load_models(args.student, args.clip, args.vae, args.tokenizer)
    display_name = args.display_name or default_display_name(models.backbone, args.method, bool(args.random_init))
    fields = manifest_fields(models, args.id, display_name, args.method,
                             args.teacher or default_teacher_id(models.backbone),
                             args.nasa_default_scale, args.nasa_max_scale)
    manifest = export_package(models, args.out, fields, args.tokenizer)
    print(f"wrote {args.out}: " + ", ".join(f"{name} {entry['bytes'] / 1e6:.2f} MB"
                                            for name, entry in manifest["files"].items()))
    if args.optimum_out:
        export_optimum(models, args.optimum_out, args.tokenizer)
        print(f"wrote {args.optimum_out} (optimum/diffusers layout)")
    if args.parity_out:
        write_parity(models, args.out, args.parity_out, args.optimum_out, args.seed)
        print(f"wrote {args.parity_out}/parity.json")


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except ExportError as error:
        print(f"export error: {error}", file=sys.stderr)
        sys.exit(2)
