"""FID of the shapes world: the Frechet distance between Gaussians fitted to tiny-CLIP image embeddings of generated
and of real images (docs/design/shapes-world.md), on a fixed prompt set with fixed noise seeds.

    reference = FidReference(clip, n=256)                  # real images: eval_sets.reference_images(n)
    prompts, seeds = reference.prompts, reference.seeds    # the captions of those real images, seeds FID_SEED + i
    score = reference.fid(generate(prompts, seeds))        # uint8 (n, 64, 64, 3) generated images -> float

Features: the tiny CLIP's L2-normalised image embedding (clip.encode_image, E = 128), the space its CLIP score lives
in, so values are in units of that unit sphere (not comparable with Inception FIDs). Generating from the real images'
own captions makes the prompt distribution that of the data, so a perfect generator scores ~0 up to sampling noise.
The matrix square root is taken through eigen-decompositions of symmetric matrices (numpy only):
    tr sqrt(S1 S2) = tr sqrt(sqrt(S1) S2 sqrt(S1)),
sqrt(S1) S2 sqrt(S1) being symmetric positive semi-definite where S1 S2 is not symmetric.
"""
import numpy as np

from trainer import eval_sets
from trainer.eval_clip import embed_images

FID_SEED = 5000  # noise seed of generated image i is FID_SEED + i
BATCH_SIZE = 250


def clip_features(clip, images: np.ndarray) -> np.ndarray:
    """uint8 images (N, 64, 64, 3) -> float64 (N, E) L2-normalised tiny-CLIP image embeddings."""
    return embed_images(clip, images, BATCH_SIZE).double().cpu().numpy()


def statistics(features: np.ndarray):
    """(mean (E,), covariance (E, E)) of (N, E) features, N >= 2."""
    if len(features) < 2:
        raise ValueError(f"FID needs at least 2 images, got {len(features)}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _symmetric_sqrt(matrix: np.ndarray) -> np.ndarray:
    """The PSD square root of a symmetric matrix (negative round-off eigenvalues clipped to 0)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mean_a, cov_a, mean_b, cov_b) -> float:
    """|mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr sqrt(S_a S_b), the squared 2-Wasserstein distance of Gaussians."""
    root_a = _symmetric_sqrt(cov_a)
    product = root_a @ cov_b @ root_a  # symmetric PSD, similar to S_a S_b (same eigenvalues)
    eigenvalues = np.linalg.eigvalsh((product + product.T) / 2)
    trace_sqrt = np.sqrt(np.clip(eigenvalues, 0.0, None)).sum()
    difference = mean_a - mean_b
    distance = difference @ difference + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_sqrt
    return float(max(distance, 0.0))


def fid_of_features(features_a: np.ndarray, features_b: np.ndarray) -> float:
    return frechet_distance(*statistics(features_a), *statistics(features_b))


class FidReference:
    """The real side of FID for n images, computed once: the prompts and seeds to generate with, and the statistics
    that generated images are compared against."""

    def __init__(self, clip, n: int):
        real_images, captions = eval_sets.reference_images(n)
        self.clip = clip
        self.n = n
        self.prompts = list(captions)
        self.seeds = [FID_SEED + i for i in range(n)]
        self.mean, self.cov = statistics(clip_features(clip, real_images))

    def fid(self, generated: np.ndarray) -> float:
        """FID of uint8 generated images (n, 64, 64, 3), image i made from prompts[i] with noise seed seeds[i]."""
        if len(generated) != self.n:
            raise ValueError(f"FID reference holds {self.n} images, got {len(generated)} generated ones")
        return frechet_distance(*statistics(clip_features(self.clip, generated)), self.mean, self.cov)
