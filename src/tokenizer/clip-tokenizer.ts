// CLIP's byte-level BPE tokenizer over vocab.json + merges.txt (the openai/clip and Hugging Face CLIPTokenizer
// files), exactly as docs/contracts.md pins it so that trainer/clip_tokenizer.py gives identical ids.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LRUCache } from 'lru-cache';

const BOS_TOKEN = '<|startoftext|>';
const EOS_TOKEN = '<|endoftext|>';
const END_OF_WORD = '</w>';

// Whitespace as Python's str.isspace() defines it (what CLIP's `re.sub(r'\s+', ' ', text)` collapses). JavaScript's
// \s differs (it lacks U+001C..U+001F and U+0085, and adds U+FEFF), so the class is spelled out and used both for
// collapsing and inside the pre-tokenisation pattern.
const WHITESPACE = '\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const WHITESPACE_RUNS = new RegExp(`[${WHITESPACE}]+`, 'gu');
// CLIP's pre-tokenisation pattern; the text is lower-cased first, so case-insensitivity changes nothing.
const PRE_TOKEN = new RegExp(
  `<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^${WHITESPACE}\\p{L}\\p{N}]+`,
  'giu',
);

/** CLIP's reversible map from the 256 byte values to printable unicode characters. */
export function bytesToUnicode(): string[] {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const table = new Array<string>(256);
  for (const b of printable) table[b] = String.fromCodePoint(b);
  let shifted = 0;
  for (let b = 0; b < 256; b++) {
    if (table[b] === undefined) table[b] = String.fromCodePoint(256 + shifted++);
  }
  return table;
}

/** Collapses whitespace runs to one space, strips, lower-cases. */
export function normalizeText(text: string): string {
  return text.replace(WHITESPACE_RUNS, ' ').trim().toLowerCase();
}

export interface ClipTokenizerOptions {
  /** Total ids per text, bos and eos included (CLIP: 77; the shapes world: 32). */
  maxLength?: number;
  /** Padding id; defaults to the eos id, as in Stable Diffusion 1.5's tokenizer. */
  padTokenId?: number;
  /** Words whose BPE result is remembered. */
  cacheEntries?: number;
}

export interface EncodedText {
  /** Exactly maxLength ids: bos, tokens, eos, padding. */
  ids: number[];
  /** True when tokens were dropped to fit maxLength. */
  truncated: boolean;
}

export class ClipTokenizer {
  readonly maxLength: number;
  readonly bosTokenId: number;
  readonly eosTokenId: number;
  readonly padTokenId: number;
  readonly vocabSize: number;
  private readonly vocab: Map<string, number>;
  private readonly mergeRanks: Map<string, number>;
  private readonly byteEncoder = bytesToUnicode();
  private readonly utf8 = new TextEncoder();
  private readonly bpeCache: LRUCache<string, number[]>;

  constructor(vocab: Record<string, number>, merges: string[], options: ClipTokenizerOptions = {}) {
    this.vocab = new Map(Object.entries(vocab));
    this.vocabSize = this.vocab.size;
    this.mergeRanks = new Map(merges.map((merge, rank) => [merge, rank]));
    this.bosTokenId = this.specialId(BOS_TOKEN);
    this.eosTokenId = this.specialId(EOS_TOKEN);
    this.padTokenId = options.padTokenId ?? this.eosTokenId;
    this.maxLength = options.maxLength ?? 77;
    if (!Number.isInteger(this.maxLength) || this.maxLength < 2) {
      throw new RangeError(`maxLength must be an integer >= 2 (room for bos and eos), got ${this.maxLength}`);
    }
    for (const symbol of this.byteEncoder) {
      if (!this.vocab.has(symbol) || !this.vocab.has(symbol + END_OF_WORD)) {
        throw new Error(`vocab.json lacks the byte symbol ${JSON.stringify(symbol)} (with or without ${END_OF_WORD})`);
      }
    }
    this.bpeCache = new LRUCache({ max: options.cacheEntries ?? 10_000 });
    // The special tokens map to themselves, as in CLIP's bpe cache, so a prompt that spells them out gets their ids.
    this.bpeCache.set(BOS_TOKEN, [this.bosTokenId]);
    this.bpeCache.set(EOS_TOKEN, [this.eosTokenId]);
  }

  /** Reads `dir`/vocab.json and `dir`/merges.txt. */
  static async fromDir(dir: string, options: ClipTokenizerOptions = {}): Promise<ClipTokenizer> {
    const [vocabText, mergesText] = await Promise.all([
      readFile(join(dir, 'vocab.json'), 'utf8'),
      readFile(join(dir, 'merges.txt'), 'utf8'),
    ]);
    const vocab = JSON.parse(vocabText) as Record<string, number>;
    return new ClipTokenizer(vocab, parseMerges(mergesText, join(dir, 'merges.txt')), options);
  }

  encode(text: string): EncodedText {
    const tokens: number[] = [];
    for (const match of normalizeText(text).matchAll(PRE_TOKEN)) {
      for (const id of this.bpe(match[0])) tokens.push(id);
    }
    const room = this.maxLength - 2;
    const truncated = tokens.length > room;
    const ids = [this.bosTokenId, ...(truncated ? tokens.slice(0, room) : tokens), this.eosTokenId];
    while (ids.length < this.maxLength) ids.push(this.padTokenId);
    return { ids, truncated };
  }

  /** The BPE ids of one pre-token (its UTF-8 bytes mapped through bytesToUnicode). */
  private bpe(preToken: string): number[] {
    const cached = this.bpeCache.get(preToken);
    if (cached !== undefined) return cached;
    let symbols = Array.from(this.utf8.encode(preToken), (byte) => this.byteEncoder[byte]!);
    symbols[symbols.length - 1] += END_OF_WORD;
    while (symbols.length > 1) {
      let bestRank = Infinity;
      let bestPair = '';
      for (let i = 0; i < symbols.length - 1; i++) {
        const pair = `${symbols[i]} ${symbols[i + 1]}`;
        const rank = this.mergeRanks.get(pair);
        if (rank !== undefined && rank < bestRank) {
          bestRank = rank;
          bestPair = pair;
        }
      }
      if (bestRank === Infinity) break;
      const [first, second] = bestPair.split(' ') as [string, string];
      const merged: string[] = [];
      for (let i = 0; i < symbols.length; i++) {
        if (i < symbols.length - 1 && symbols[i] === first && symbols[i + 1] === second) {
          merged.push(first + second);
          i++;
        } else {
          merged.push(symbols[i]!);
        }
      }
      symbols = merged;
    }
    const ids = symbols.map((symbol) => {
      const id = this.vocab.get(symbol);
      if (id === undefined) throw new Error(`BPE symbol ${JSON.stringify(symbol)} is not in the vocabulary`);
      return id;
    });
    this.bpeCache.set(preToken, ids);
    return ids;
  }

  private specialId(token: string): number {
    const id = this.vocab.get(token);
    if (id === undefined) throw new Error(`vocab.json lacks the special token ${token}`);
    return id;
  }
}

/** merges.txt: a `#version` header line, then one `left right` merge per line, in rank order. */
function parseMerges(text: string, path: string): string[] {
  const lines = text.split('\n').map((line) => line.replace(/\r$/, ''));
  const merges: string[] = [];
  lines.forEach((line, index) => {
    if (line === '' || (index === 0 && line.startsWith('#version'))) return;
    if (line.split(' ').length !== 2) throw new Error(`${path}:${index + 1}: expected "left right", got ${JSON.stringify(line)}`);
    merges.push(line);
  });
  return merges;
}
