import sharp from 'sharp';

/** The raw RGB bytes of an encoded image (PNG, JPEG, WebP), for comparing images pixel by pixel. */
export async function pixels(image: Buffer): Promise<Uint8Array> {
  return new Uint8Array(await sharp(image).raw().toBuffer());
}
