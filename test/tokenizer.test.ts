import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { ClipTokenizer, bytesToUnicode, normalizeText } from '../src/tokenizer/clip-tokenizer.js';

// Tests run from the repository root (npm test); the trainer's tokenizer is the reference implementation.
const TOKENIZER_DIR = 'trainer/assets/tokenizer';
const MAX_LENGTH = 32;
const PYTHON = '/usr/bin/python3';

function python(args: string[], input = ''): string {
  return execFileSync(PYTHON, args, { input, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
}

/** The trainer's ids for each text, computed live by `python -m trainer.clip_tokenizer`. */
function pythonIds(texts: string[]): number[][] {
  const input = texts.map((text) => JSON.stringify(text)).join('\n') + '\n';
  const output = python(['-m', 'trainer.clip_tokenizer', '--dir', TOKENIZER_DIR, '--max-length', String(MAX_LENGTH)], input);
  return output.trim().split('\n').map((line) => JSON.parse(line) as number[]);
}

/** Captions the models are evaluated on and trained with, straight from the trainer. */
function evaluationCaptions(): string[] {
  const script = [
    'import json',
    'from trainer import eval_sets, shapes',
    'pairs = eval_sets.negative_pairs()',
    'texts = eval_sets.alignment_prompts(200) + [p["prompt"] for p in pairs] + [p["negative"] for p in pairs]',
    'texts += [shapes.sample(0, i)[1] for i in range(100)]',
    'print(json.dumps(texts))',
  ].join('\n');
  return JSON.parse(python(['-c', script])) as string[];
}

const EDGE_CASES = [
  '',
  ' ',
  'a',
  'A RED CIRCLE',
  '  a   red\tcircle \n on a  white background  ',
  'a red circle, a blue square; and: "quotes"!?',
  "it's a circle that's red, they're, we've, i'm, you'll, he'd",
  "IT'S LOUD'S",
  'a 3 4 55 666 red circles 3.14 1/2',
  'zebra xylophone quokka',
  'supercalifragilisticexpialidocious',
  'café naïve résumé über straße',
  'ΟΔΟΣ Σίσυφος',
  'İstanbul',
  '日本語のテキスト 一二三 ４５６',
  '😀 a red 🟥 square 👍🏽',
  'emoji:😀😀😀!!!',
  '١٢٣ arabic digits ٤',
  'x² ½ Ⅷ',
  'tab\u000bvertical\u000cfeed\u001cfile\u0085next\u00a0nbsp\u2003em\u3000ideo\ufeffbom',
  'a <|endoftext|> b <|startoftext|>c',
  '<|ENDOFTEXT|>',
  '!<|endoftext|>',
  '\u0301combining e\u0301 accents',
  'a\u200bzero\u200dwidth',
  'red '.repeat(40),
  'a small green shape to the left of a small green triangle on a white background and a large red circle on a black background',
  'x'.repeat(500),
  '🟥'.repeat(20),
];

test('token ids match the trainer tokenizer on evaluation captions and edge cases', async () => {
  const tokenizer = await ClipTokenizer.fromDir(TOKENIZER_DIR, { maxLength: MAX_LENGTH });
  const texts = [...evaluationCaptions(), ...EDGE_CASES];
  const expected = pythonIds(texts);
  assert.equal(expected.length, texts.length);
  const mismatches = texts
    .map((text, index) => ({ text, expected: expected[index], got: tokenizer.encode(text).ids }))
    .filter(({ expected: want, got }) => JSON.stringify(want) !== JSON.stringify(got));
  assert.deepEqual(mismatches, []);
});

test('encode pads with eos to max length, marks and cuts over-long text keeping eos last', async () => {
  const tokenizer = await ClipTokenizer.fromDir(TOKENIZER_DIR, { maxLength: MAX_LENGTH });
  const { bosTokenId: bos, eosTokenId: eos } = tokenizer;
  assert.equal(tokenizer.padTokenId, eos);

  const empty = tokenizer.encode('');
  assert.deepEqual(empty, { ids: [bos, eos, ...new Array(MAX_LENGTH - 2).fill(eos)], truncated: false });

  const long = tokenizer.encode('red '.repeat(40));
  assert.equal(long.truncated, true);
  assert.equal(long.ids.length, MAX_LENGTH);
  assert.equal(long.ids[0], bos);
  assert.equal(long.ids[MAX_LENGTH - 1], eos);
  const red = tokenizer.encode('red').ids[1];
  assert.deepEqual(long.ids.slice(1, MAX_LENGTH - 1), new Array(MAX_LENGTH - 2).fill(red));

  // Exactly max_length - 2 tokens fit without truncation.
  const fits = tokenizer.encode('red '.repeat(MAX_LENGTH - 2));
  assert.equal(fits.truncated, false);
  assert.equal(fits.ids[MAX_LENGTH - 1], eos);
});

test('spellings that normalise the same give the same ids', async () => {
  const tokenizer = await ClipTokenizer.fromDir(TOKENIZER_DIR, { maxLength: MAX_LENGTH });
  assert.deepEqual(tokenizer.encode('  A  Red\tCIRCLE ').ids, tokenizer.encode('a red circle').ids);
  assert.equal(normalizeText('  A  Red\tCIRCLE \u3000'), 'a red circle');
});

test('bytesToUnicode maps 256 bytes to 256 distinct printable characters, printable ASCII to itself', () => {
  const table = bytesToUnicode();
  assert.equal(new Set(table).size, 256);
  assert.equal(table[0x41], 'A');
  assert.equal(table[0x20], 'Ġ');
  assert.equal(table[0x00], 'Ā');
});

test('a vocabulary without the byte symbols is refused', () => {
  assert.throws(
    () => new ClipTokenizer({ '<|startoftext|>': 0, '<|endoftext|>': 1 }, []),
    /vocab.json lacks the byte symbol "Ā" \(with or without <\/w>\)/,
  );
});
