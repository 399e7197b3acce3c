"""Builds the shapes-world CLIP BPE tokenizer: trainer/assets/tokenizer/{vocab.json, merges.txt}.

    /usr/bin/python3 -m trainer.build_tokenizer [--out=trainer/assets/tokenizer] [--captions=20000] [--seed=0]

BPE merges are learned over the words of generated captions (shapes.sample(seed, 0..captions-1)) plus EXTRA_WORDS,
the words prompts and negative prompts use beyond the captions, until every word is one token. Deterministic: the
most frequent pair wins, ties go to the lexicographically smallest pair, and a pair whose merged token already exists
is skipped, so each merge adds exactly one new token. The layout is openai/clip's: 256 byte symbols, the same with
"</w>", one token per merge in merge order, then <|startoftext|> and <|endoftext|>.
"""
import json
import os
import sys
from collections import Counter

from trainer import shapes
from trainer.clip_tokenizer import BOS, DEFAULT_DIR, END_OF_WORD, EOS, base_vocabulary, bytes_to_unicode, \
    normalize, pre_tokenize
from trainer.configurator import configure_or_exit

out = DEFAULT_DIR  # output folder
captions = 20000  # generated captions to learn from
seed = 0  # shapes-world seed of those captions

EXTRA_WORDS = """
no not without none nothing only and or with of the a an on in at to left right above below next
one two three shape shapes circle circles square squares triangle triangles background
small large big tiny red green blue yellow purple orange white gray grey black color colour
""".split()


def word_counts(n_captions: int, seed: int) -> Counter:
    counts = Counter()
    for index in range(n_captions):
        counts.update(pre_tokenize(normalize(shapes.sample_scene(seed, index)[1])))
    counts.update(EXTRA_WORDS)
    return counts


def learn_merges(counts: Counter) -> list:
    byte_encoder = bytes_to_unicode()
    words = {}
    for word, count in counts.items():
        symbols = [byte_encoder[b] for b in word.encode("utf-8")]
        words[tuple(symbols[:-1] + [symbols[-1] + END_OF_WORD])] = count
    known = set(base_vocabulary())
    merges = []
    while True:
        pairs = Counter()
        for symbols, count in words.items():
            for pair in zip(symbols, symbols[1:]):
                pairs[pair] += count
        candidates = [(-count, pair) for pair, count in pairs.items() if pair[0] + pair[1] not in known]
        if not candidates:
            return merges
        _, best = min(candidates)
        merges.append(best)
        known.add(best[0] + best[1])
        words = {_merge(symbols, best): count for symbols, count in words.items()}


def _merge(symbols: tuple, pair: tuple) -> tuple:
    merged, i = [], 0
    while i < len(symbols):
        if i < len(symbols) - 1 and (symbols[i], symbols[i + 1]) == pair:
            merged.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            merged.append(symbols[i])
            i += 1
    return tuple(merged)


def write_tokenizer(folder: str, merges: list):
    tokens = base_vocabulary() + [a + b for a, b in merges] + [BOS, EOS]
    vocab = {token: i for i, token in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise AssertionError("duplicate token in the vocabulary")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
        f.write("\n")
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    return vocab


def main(argv):
    config = configure_or_exit({"out": out, "captions": captions, "seed": seed}, argv)
    merges = learn_merges(word_counts(config["captions"], config["seed"]))
    vocab = write_tokenizer(config["out"], merges)
    print(json.dumps({"out": config["out"], "merges": len(merges), "vocab_size": len(vocab),
                      "bos_token_id": vocab[BOS], "eos_token_id": vocab[EOS], "pad_token_id": vocab[EOS]}))


if __name__ == "__main__":
    main(sys.argv[1:])
