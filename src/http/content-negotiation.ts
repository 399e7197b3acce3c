// Which representation POST /generate answers with: JSON (base64 images) or one raw image. Decided from Accept, the
// body's format and num_images before any work is done; a conflict is a 406 that says what to change, never a
// silent choice of something the client did not ask for.
import { errors } from '../errors.js';
import { imageFormats, type ImageFormat } from '../images/image-encoder.js';

export type Representation = { kind: 'json'; format: ImageFormat } | { kind: 'image'; format: ImageFormat };

interface MediaRange {
  type: string;
  subtype: string;
  q: number;
}

function parseAccept(header: string): MediaRange[] {
  const ranges: MediaRange[] = [];
  for (const part of header.split(',')) {
    const [mediaType = '', ...parameters] = part.split(';').map((s) => s.trim().toLowerCase());
    const [type, subtype] = mediaType.split('/');
    if (!type || !subtype) continue;
    const qParameter = parameters.find((p) => p.startsWith('q='));
    const q = qParameter === undefined ? 1 : Number(qParameter.slice(2));
    ranges.push({ type, subtype, q: Number.isFinite(q) ? Math.min(Math.max(q, 0), 1) : 0 });
  }
  return ranges;
}

/** The q a client gives `mediaType`: from the most specific range that matches it (RFC 9110 section 12.5.1). */
function quality(ranges: readonly MediaRange[], mediaType: string): number {
  const [type, subtype] = mediaType.split('/');
  const exact = ranges.find((r) => r.type === type && r.subtype === subtype);
  if (exact) return exact.q;
  const typeWide = ranges.find((r) => r.type === type && r.subtype === '*');
  if (typeWide) return typeWide.q;
  return ranges.find((r) => r.type === '*' && r.subtype === '*')?.q ?? 0;
}

const imageMediaType = (format: ImageFormat): string => `image/${format}`;

/**
 * JSON wins ties (it carries every field); one raw image is chosen only when the client prefers it and asked for one
 * image. The body's format, when given, is the only image type considered; without it, the best-liked image type
 * (png on a tie).
 */
export function chooseRepresentation(accept: string | undefined, bodyFormat: ImageFormat | undefined, numImages: number): Representation {
  const ranges = parseAccept(accept ?? '*/*');
  const candidates = bodyFormat === undefined ? imageFormats : [bodyFormat];
  const jsonQ = quality(ranges, 'application/json');
  let best: ImageFormat = candidates[0]!;
  for (const format of candidates) {
    if (quality(ranges, imageMediaType(format)) > quality(ranges, imageMediaType(best))) best = format;
  }
  const imageQ = quality(ranges, imageMediaType(best));

  if (imageQ > jsonQ && numImages === 1) return { kind: 'image', format: best };
  if (jsonQ > 0) return { kind: 'json', format: bodyFormat ?? 'png' };
  if (imageQ > 0) {
    throw errors.SNOOPI_NOT_ACCEPTABLE(
      `Accept asks for ${imageMediaType(best)}, and a raw image response holds one image, but num_images is ${numImages}; ` +
        'set num_images to 1 or accept application/json',
    );
  }
  const askedImage = imageFormats.find((format) => quality(ranges, imageMediaType(format)) > 0);
  if (bodyFormat !== undefined && askedImage !== undefined) {
    throw errors.SNOOPI_NOT_ACCEPTABLE(
      `Accept asks for ${imageMediaType(askedImage)} but the body's format is ${bodyFormat}; make them agree or leave format out`,
    );
  }
  throw errors.SNOOPI_NOT_ACCEPTABLE(
    `Accept ${JSON.stringify(accept)} matches nothing this route produces: application/json, ${imageFormats.map(imageMediaType).join(', ')}`,
  );
}
