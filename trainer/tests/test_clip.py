import json
import random
from dataclasses import asdict

import pytest
import torch

from trainer import eval_clip, judge, shapes, train_clip
from trainer.checkpoint import load_checkpoint, save_checkpoint
from trainer.clip_tokenizer import DEFAULT_DIR, ClipTokenizer
from trainer.models.clip import Clip, ClipArgs, eos_positions, load_clip

TOKENIZER = ClipTokenizer.from_dir(DEFAULT_DIR)
TINY_FLAGS = ["--batch_size=8", "--width=32", "--layers=1", "--heads=2", "--embed_dim=16",
              "--image_channels=[8,8,8,8]", "--log_every=1", "--warmup_steps=2", "--lr_decay_steps=6",
              "--checkpoint_every_s=100000"]


def tiny_args(**overrides):
    return ClipArgs(vocab_size=TOKENIZER.vocab_size, eos_token_id=TOKENIZER.eos_token_id, width=32, layers=2,
                    heads=2, embed_dim=16, image_channels=[8, 8, 8, 8], **overrides)


def ids(*texts):
    return torch.from_numpy(TOKENIZER(list(texts), max_length=32))


def test_text_model_returns_last_hidden_state_of_shape_b_l_d():
    clip = Clip(ClipArgs(vocab_size=TOKENIZER.vocab_size, eos_token_id=TOKENIZER.eos_token_id)).eval()
    hidden = clip.text_model(ids("a red circle", "two shapes on a black background"))
    assert hidden.shape == (2, 32, 128) and hidden.dtype == torch.float32
    assert clip.encode_text(ids("a red circle")).shape == (1, 128)
    assert clip.encode_image(torch.zeros(3, 3, 64, 64)).shape == (3, 128)


def test_attention_is_causal():
    torch.manual_seed(0)
    model = Clip(tiny_args()).text_model.eval()
    a, b = model(ids("a red circle on a white background", "a red circle on a black background"))
    first_difference = 6  # bos a red circle on a | white/black
    assert torch.allclose(a[:first_difference], b[:first_difference], atol=1e-6)
    assert not torch.allclose(a[first_difference], b[first_difference])


def test_pooling_reads_the_first_eos_token():
    input_ids = ids("a red circle", "two shapes")
    positions = eos_positions(input_ids, TOKENIZER.eos_token_id)
    assert positions.tolist() == [len(TOKENIZER.encode("a red circle")) - 1, len(TOKENIZER.encode("two shapes")) - 1]
    # CLIP's rule (argmax of the ids) picks the same position, since EOS is the largest id
    assert torch.equal(positions, input_ids.argmax(dim=1))


def test_trimming_padding_does_not_change_the_loss():
    torch.manual_seed(0)
    clip = Clip(tiny_args()).eval()
    images = torch.randn(4, 3, 64, 64)
    input_ids = ids("a red circle", "two shapes", "a small blue square to the left of a circle", "a green shape")
    negatives = ids("a blue circle", "a red circle", "a circle to the left of a small blue square", "a red shape")
    trimmed = train_clip.trim_padding(input_ids, TOKENIZER.eos_token_id)
    assert trimmed.shape[1] < 32
    full = clip(images, input_ids, negatives)
    short = clip(images, trimmed, train_clip.trim_padding(negatives, TOKENIZER.eos_token_id))
    assert torch.allclose(full, short, atol=1e-6)


def test_hard_negatives_are_one_edit_away_and_false_of_the_scene():
    rng = random.Random(0)
    for index in range(300):
        _, caption, scene = shapes.sample(5, index)
        negative = train_clip.hard_negative(caption, scene, rng, [shapes.sample(6, i)[1] for i in range(20)])
        assert not judge.satisfies(train_clip.scene_reading(scene), judge.parse_caption(negative))
        assert negative != caption


def test_edits_swap_one_attribute_or_left_and_right():
    edits = dict(train_clip.edits_of("a small blue square to the left of an orange circle on a white background"))
    assert edits["left_right"] == "an orange circle to the left of a small blue square on a white background"
    texts = [text for _, text in train_clip.edits_of("a red circle")]
    assert "an orange circle" in texts and "a red square" in texts and len(texts) == 5 + 2


def test_scene_reading_matches_the_judge_on_the_render():
    for index in range(100):
        image, _, scene = shapes.sample(8, index)
        truth, read = train_clip.scene_reading(scene), judge.read_image(image)
        assert truth.background == read.background
        assert [(o.color, o.shape, o.size) for o in truth.objects] == [(o.color, o.shape, o.size) for o in read.objects]


def test_load_clip(tmp_path):
    clip = Clip(tiny_args())
    path = str(tmp_path / "clip.pt")
    save_checkpoint(path, model_args=asdict(clip.args), model=clip.state_dict())
    loaded = load_clip(path)
    assert not loaded.training
    assert torch.equal(loaded.text_model(ids("a red circle")), clip.eval().text_model(ids("a red circle")))


def run_clip(out_dir, steps):
    train_clip.main([f"--out_dir={out_dir}", f"--max_steps={steps}", *TINY_FLAGS])
    return load_checkpoint(f"{out_dir}/ckpt.pt")


def test_tiny_run_resumes_exactly_and_eval_writes_the_slim_artifact(tmp_path, capsys):
    straight = run_clip(tmp_path / "straight", 4)
    run_clip(tmp_path / "split", 2)
    resumed = run_clip(tmp_path / "split", 4)
    for name, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][name]), name
    capsys.readouterr()
    artifact = tmp_path / "base" / "clip.pt"
    eval_clip.main([f"--checkpoint={tmp_path / 'split' / 'ckpt.pt'}", "--n=120", "--candidates=100",
                    f"--out={artifact}"])
    printed = capsys.readouterr().out
    metrics = json.loads(printed[:printed.rindex("}") + 1])
    assert 0 <= metrics["retrieval_top1_exact"] <= metrics["retrieval_top1_satisfied"] <= 1
    assert set(metrics["one_word_discrimination"]) <= {"color", "shape", "size", "background", "left_right"}
    summary = json.loads((tmp_path / "base" / "clip.json").read_text())
    assert summary["steps"] == 4 and summary["tokenizer"]["eos_token_id"] == TOKENIZER.eos_token_id
    slim = load_checkpoint(str(artifact))
    assert "optimizer" not in slim and load_clip(str(artifact)).args.width == 32


@pytest.mark.parametrize("flag", ["--image_channels=32", "--hard_negatives=maybe"])
def test_bad_flags_exit_2(flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_clip.main([flag])
    assert exit_info.value.code == 2 and flag[2:].split("=")[0] in capsys.readouterr().err


def test_text_model_exports_to_onnx_opset_17(tmp_path):
    import onnx
    model = Clip(tiny_args()).text_model.eval()
    path = str(tmp_path / "text_encoder.onnx")
    torch.onnx.export(model, ids("a red circle"), path, opset_version=17, input_names=["input_ids"],
                      output_names=["last_hidden_state"],
                      dynamic_axes={"input_ids": {0: "batch"}, "last_hidden_state": {0: "batch"}})
    exported = onnx.load(path)
    onnx.checker.check_model(exported)
    assert [i.name for i in exported.graph.input] == ["input_ids"]
