"""CLIP's BPE tokenizer (the openai/clip and Hugging Face CLIPTokenizer algorithm) over vocab.json + merges.txt.

src/tokenizer/clip-tokenizer.ts gives the same ids; docs/contracts.md, section Tokenizer, is the specification:
- normalise: collapse runs of whitespace (str.isspace) to one space, strip, lower-case;
- pre-tokenise with CLIP's pattern
  <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+
  scanned by hand here, since Python's re has no \\p{..}: a letter is a code point whose Unicode general category
  starts with L, a number one whose category starts with N;
- each piece's UTF-8 bytes go through CLIP's bytes_to_unicode, "</w>" marks the piece's last symbol, and the
  merges apply lowest rank first; every byte is a base symbol, so any text tokenizes;
- ids: [bos] + piece ids + [eos]; batches truncate to max_length keeping eos last and pad with pad = eos.

CLI (the TypeScript parity test uses it): JSON strings one per line on stdin, one JSON array of ids per line out.
    /usr/bin/python3 -m trainer.clip_tokenizer --dir trainer/assets/tokenizer --max-length 32
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import unicodedata
from functools import lru_cache

import numpy as np

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
END_OF_WORD = "</w>"
CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")  # in the pattern's order


@lru_cache(maxsize=None)
def bytes_to_unicode() -> dict:
    """CLIP's (and GPT-2's) reversible map from the 256 byte values to printable unicode characters."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) +
                 list(range(ord("®"), ord("ÿ") + 1)))
    byte_values, code_points = printable[:], printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            byte_values.append(b)
            code_points.append(256 + extra)
            extra += 1
    return dict(zip(byte_values, map(chr, code_points)))


def base_vocabulary() -> list:
    """The first 512 tokens, in CLIP's order: the 256 byte symbols, then the same with "</w>"."""
    symbols = list(bytes_to_unicode().values())
    return symbols + [s + END_OF_WORD for s in symbols]


def normalize(text: str) -> str:
    return " ".join(text.split()).lower()


def _is_letter(ch: str) -> bool:
    return unicodedata.category(ch)[0] == "L"


def _is_number(ch: str) -> bool:
    return unicodedata.category(ch)[0] == "N"


def pre_tokenize(text: str) -> list:
    """CLIP's pattern applied with findall semantics: at each position the first alternative that matches wins."""
    pieces, i, n = [], 0, len(text)
    while i < n:
        ch = text[i]
        special = next((s for s in (BOS, EOS) if text.startswith(s, i)), None)
        contraction = next((c for c in CONTRACTIONS if text.startswith(c, i)), None)
        if special or contraction:
            end = i + len(special or contraction)
        elif _is_letter(ch):
            end = i + 1
            while end < n and _is_letter(text[end]):
                end += 1
        elif _is_number(ch):
            end = i + 1
        elif ch.isspace():
            i += 1
            continue
        else:
            end = i + 1
            while end < n and not (text[end].isspace() or _is_letter(text[end]) or _is_number(text[end])):
                end += 1
        pieces.append(text[i:end])
        i = end
    return pieces


class ClipTokenizer:
    def __init__(self, vocab: dict, merges: list):
        self.encoder = vocab  # token -> id
        self.decoder = {i: t for t, i in vocab.items()}
        self.merge_ranks = {pair: rank for rank, pair in enumerate(merges)}
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        self.bos_token_id = vocab[BOS]
        self.eos_token_id = vocab[EOS]
        self.pad_token_id = self.eos_token_id  # as in SD 1.5's tokenizer
        self._cache = {BOS: (BOS,), EOS: (EOS,)}

    @classmethod
    def from_dir(cls, path: str) -> "ClipTokenizer":
        with open(os.path.join(path, "vocab.json"), encoding="utf-8") as f:
            vocab = json.load(f)
        with open(os.path.join(path, "merges.txt"), encoding="utf-8") as f:
            lines = f.read().strip().split("\n")
        if not lines[0].startswith("#version"):
            raise ValueError(f"{path}/merges.txt must start with a '#version' line, got {lines[0]!r}")
        return cls(vocab, [tuple(line.split(" ")) for line in lines[1:] if line])

    @property
    def vocab_size(self) -> int:
        return len(self.encoder)

    def bpe(self, piece: str) -> tuple:
        """The BPE tokens of one pre-tokenised piece, already mapped to byte symbols."""
        if piece in self._cache:
            return self._cache[piece]
        word = tuple(piece[:-1]) + (piece[-1] + END_OF_WORD,)
        while len(word) > 1:
            pair = min(zip(word, word[1:]), key=lambda p: self.merge_ranks.get(p, float("inf")))
            if pair not in self.merge_ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == pair:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
        self._cache[piece] = word
        return word

    def tokenize(self, text: str) -> list:
        """The BPE token strings of a text, without bos/eos."""
        tokens = []
        for piece in pre_tokenize(normalize(text)):
            if piece not in (BOS, EOS):
                piece = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            tokens.extend(self.bpe(piece))
        return tokens

    def encode(self, text: str) -> list:
        """[bos] + ids + [eos], neither truncated nor padded."""
        return [self.bos_token_id] + [self.encoder[t] for t in self.tokenize(text)] + [self.eos_token_id]

    def decode(self, ids) -> str:
        """The text of ids, special tokens dropped, "</w>" read as a space."""
        specials = (self.bos_token_id, self.eos_token_id)
        text = "".join(self.decoder[int(i)] for i in ids if int(i) not in specials)
        raw = bytearray(self.byte_decoder[ch] for ch in text)  # "</w>" is made of byte symbols too
        return raw.decode("utf-8", errors="replace").replace(END_OF_WORD, " ").strip()

    def __call__(self, texts, max_length: int = 32) -> np.ndarray:
        """int64 (B, max_length): each text encoded, truncated keeping eos last, padded with pad_token_id."""
        if isinstance(texts, str):
            texts = [texts]
        out = np.full((len(texts), max_length), self.pad_token_id, dtype=np.int64)
        for row, text in enumerate(texts):
            ids = self.encode(text)
            if len(ids) > max_length:
                ids = ids[:max_length - 1] + [self.eos_token_id]
            out[row, :len(ids)] = ids
        return out


DEFAULT_DIR = os.path.join(os.path.dirname(__file__), "assets", "tokenizer")


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default=DEFAULT_DIR, help="folder with vocab.json and merges.txt")
    parser.add_argument("--max-length", type=int, default=32, help="pad/truncate every row to this many ids")
    args = parser.parse_args(argv)
    tokenizer = ClipTokenizer.from_dir(args.dir)
    for line in sys.stdin:
        if line.strip():
            text = json.loads(line)
            print(json.dumps(tokenizer([text], args.max_length)[0].tolist()), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
