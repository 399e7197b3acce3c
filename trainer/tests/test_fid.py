import numpy as np
import pytest
import torch

from trainer import eval_sets, fid, shapes
from trainer.clip_tokenizer import DEFAULT_DIR, ClipTokenizer
from trainer.models.clip import Clip, ClipArgs


@pytest.fixture(scope="module")
def clip():
    torch.manual_seed(0)
    tokenizer = ClipTokenizer.from_dir(DEFAULT_DIR)
    args = ClipArgs(vocab_size=tokenizer.vocab_size, eos_token_id=tokenizer.eos_token_id, layers=1,
                    image_channels=[8, 8, 8, 8])
    return Clip(args).eval()


def test_frechet_distance_of_gaussians_matches_the_closed_form():
    # diagonal covariances: |mu_a - mu_b|^2 + sum (sqrt(a_i) - sqrt(b_i))^2
    mean_a, mean_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    var_a, var_b = np.array([1.0, 4.0, 0.25]), np.array([4.0, 1.0, 0.25])
    expected = 1.0 + 4.0 + (1 - 2) ** 2 + (2 - 1) ** 2 + 0.0
    assert fid.frechet_distance(mean_a, np.diag(var_a), mean_b, np.diag(var_b)) == pytest.approx(expected)
    # a full covariance against itself rotated: same eigenvalues, different matrices
    rng = np.random.default_rng(0)
    factor = rng.normal(size=(5, 5))
    cov = factor @ factor.T
    rotation, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    rotated = rotation @ cov @ rotation.T
    distance = fid.frechet_distance(np.zeros(5), cov, np.zeros(5), rotated)
    assert distance > 0 and distance == pytest.approx(fid.frechet_distance(np.zeros(5), rotated, np.zeros(5), cov))


def test_fid_of_a_set_with_itself_is_zero_and_of_different_sets_positive(clip):
    real, _ = eval_sets.reference_images(64)
    features = fid.clip_features(clip, real)
    assert features.shape == (64, 128) and np.allclose(np.linalg.norm(features, axis=1), 1.0)
    assert fid.fid_of_features(features, features) == pytest.approx(0.0, abs=1e-9)
    other, _ = shapes.batch(77, 0, 64)  # other real images: close, not equal
    blank = np.full_like(real, 128)  # gray images only
    close = fid.fid_of_features(features, fid.clip_features(clip, other))
    far = fid.fid_of_features(features, fid.clip_features(clip, blank))
    assert 0 < close < far


def test_reference_generates_from_the_real_captions_with_fixed_seeds(clip):
    reference = fid.FidReference(clip, 16)
    real, captions = eval_sets.reference_images(16)
    assert reference.prompts == captions and reference.seeds == list(range(fid.FID_SEED, fid.FID_SEED + 16))
    assert reference.fid(real) == pytest.approx(0.0, abs=1e-9)
    assert reference.fid(real[::-1].copy()) == pytest.approx(0.0, abs=1e-9)  # a set statistic: order is irrelevant
    with pytest.raises(ValueError):
        reference.fid(real[:8])
