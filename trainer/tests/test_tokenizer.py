import json
import os
import subprocess
import sys

import numpy as np
import pytest

from trainer import build_tokenizer, shapes
from trainer.clip_tokenizer import DEFAULT_DIR, ClipTokenizer, base_vocabulary, bytes_to_unicode, pre_tokenize

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def tok():
    return ClipTokenizer.from_dir(DEFAULT_DIR)


def read_files(folder):
    with open(os.path.join(folder, "vocab.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    with open(os.path.join(folder, "merges.txt"), encoding="utf-8") as f:
        lines = f.read().split("\n")
    return vocab, lines


def test_vocab_layout_is_openai_clips():
    vocab, lines = read_files(DEFAULT_DIR)
    assert lines[0] == "#version: 0.2" and lines[-1] == ""
    merges = [tuple(line.split(" ")) for line in lines[1:-1]]
    tokens = sorted(vocab, key=vocab.get)
    assert [vocab[t] for t in tokens] == list(range(len(vocab)))
    assert tokens[:512] == base_vocabulary()
    assert tokens[:256] == [bytes_to_unicode()[b] for b in
                            list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256)) +
                            [b for b in range(256) if not (33 <= b < 127 or 161 <= b < 173 or 174 <= b < 256)]]
    assert tokens[512:-2] == [a + b for a, b in merges]
    assert tokens[-2:] == ["<|startoftext|>", "<|endoftext|>"]
    for rank, (a, b) in enumerate(merges):
        assert vocab[a] < 512 + rank and vocab[b] < 512 + rank  # parts exist before the merge that joins them
        assert not a.endswith("</w>")


def test_build_is_deterministic_and_matches_the_committed_files(tmp_path):
    merges = build_tokenizer.learn_merges(build_tokenizer.word_counts(build_tokenizer.captions, build_tokenizer.seed))
    build_tokenizer.write_tokenizer(str(tmp_path), merges)
    for name in ("vocab.json", "merges.txt"):
        with open(tmp_path / name, "rb") as built, open(os.path.join(DEFAULT_DIR, name), "rb") as committed:
            assert built.read() == committed.read(), name


def test_special_ids(tok):
    assert tok.vocab_size == 642
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (640, 641, 641)


def test_pinned_ids_of_a_caption(tok):
    assert tok.encode("a large red circle on a white background") == [640, 320, 550, 565, 545, 522, 320, 556, 521, 641]


def test_every_shapes_world_word_is_one_token(tok):
    words = set(build_tokenizer.EXTRA_WORDS)
    for i in range(300):
        words.update(shapes.sample(0, i)[1].split())
    for word in words:
        assert tok.tokenize(word) == [word + "</w>"]


def test_bpe_applies_merges_by_rank_not_by_position():
    symbols = base_vocabulary()
    merges = [("b", "c</w>"), ("a", "b"), ("a", "bc</w>")]
    vocab = {t: i for i, t in enumerate(symbols + ["bc</w>", "ab", "abc</w>", "<|startoftext|>", "<|endoftext|>"])}
    tok = ClipTokenizer(vocab, merges)
    assert tok.tokenize("abc") == ["abc</w>"]  # b+c</w> first (rank 0), then a+bc</w>; never ab + c</w>
    assert tok.tokenize("abd") == ["ab", "d</w>"]
    assert tok.tokenize("ab") == ["a", "b</w>"]  # "b</w>" is not "b": no merge applies
    assert tok.tokenize("a") == ["a</w>"]
    assert tok.tokenize("bcbc") == ["b", "c", "bc</w>"]


def test_end_of_word_marks_the_last_symbol_only(tok):
    assert tok.tokenize("a") == ["a</w>"]
    assert tok.encode("a")[1] != tok.encoder["a"]
    assert tok.tokenize("hello world") == ["h", "el", "l", "o</w>", "w", "or", "l", "d</w>"]


def test_normalisation_collapses_whitespace_strips_and_lowercases(tok):
    assert tok.encode("  A\tRED\n\n circle ") == tok.encode("a red circle")


@pytest.mark.parametrize("text, pieces", [
    ("it's they're we've i'm you'll he'd don't", ["it", "'s", "they", "'re", "we", "'ve", "i", "'m", "you", "'ll",
                                                 "he", "'d", "don", "'t"]),
    ("hello!!! a,b...c", ["hello", "!!!", "a", ",", "b", "...", "c"]),
    ("!!'s", ["!!'", "s"]),  # the punctuation run takes the apostrophe, as CLIP's regex does
    ("x'y", ["x", "'", "y"]),
    ("12 circles 3x", ["1", "2", "circles", "3", "x"]),
    ("²½Ⅻ", ["²", "½", "Ⅻ"]),  # No and Nl numbers, one per piece
    ("café 中文 👍👍 e\u0301", ["café", "中文", "👍👍", "e", "\u0301"]),  # letters (L*), emoji run, combining mark
    ("<|startoftext|>a <|endoftext|>", ["<|startoftext|>", "a", "<|endoftext|>"]),
    ("!<|endoftext|>", ["!<|", "endoftext", "|>"]),
])
def test_pre_tokenize(text, pieces):
    assert pre_tokenize(text) == pieces


def test_digits_split_one_per_token(tok):
    assert tok.tokenize("2024") == ["2</w>", "0</w>", "2</w>", "4</w>"]


def test_unicode_falls_back_to_bytes(tok):
    byte = bytes_to_unicode()
    assert tok.tokenize("é") == [byte[0xC3], byte[0xA9] + "</w>"]
    assert tok.tokenize("中") == [byte[0xE4], byte[0xB8], byte[0xAD] + "</w>"]
    assert tok.tokenize("👍") == [byte[0xF0], byte[0x9F], byte[0x91], byte[0x8D] + "</w>"]
    for text in ("café 中文 👍", "ünïcödé ✓", "\u0000\x7f"):
        ids = tok.encode(text)
        assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(tok.encode("café 中文 👍")) == "café 中文 👍"


def test_special_tokens_in_text_map_to_their_ids(tok):
    assert tok.encode("<|endoftext|>x") == [640, 641, tok.encoder["x</w>"], 641]


def test_batch_pads_with_eos_and_empty_is_bos_eos(tok):
    ids = tok(["", "a red circle"], max_length=8)
    assert ids.dtype == np.int64 and ids.shape == (2, 8)
    assert ids[0].tolist() == [640] + [641] * 7
    assert ids[1].tolist() == tok.encode("a red circle") + [641] * 3


def test_truncation_keeps_eos_last(tok):
    text = " ".join(["a red circle"] * 20)
    full = tok.encode(text)
    row = tok([text], max_length=32)[0].tolist()
    assert len(full) > 32 and row == full[:31] + [641]
    exact = tok.encode("a b c d e f")
    assert tok(["a b c d e f"], max_length=len(exact))[0].tolist() == exact


def test_cli_writes_one_padded_row_per_line(tok):
    texts = ["a red circle", "", "中文 " * 20]
    stdin = "".join(json.dumps(t) + "\n" for t in texts)
    result = subprocess.run(
        [sys.executable, "-m", "trainer.clip_tokenizer", "--dir", DEFAULT_DIR, "--max-length", "32"],
        input=stdin, capture_output=True, text=True, cwd=REPO, check=True)
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows == tok(texts, max_length=32).tolist()
