import numpy as np
import pytest
import torch

from attndiff import UserError
from attndiff.data.images import load
from attndiff.metrics import fid


def test_frechet_distance_matches_the_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    a, b = rng.uniform(0.5, 2, 6), rng.uniform(0.5, 2, 6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert fid.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_on_sampled_gaussian_features():
    rng = np.random.default_rng(1)
    f1 = rng.normal(0.0, 1.0, size=(20000, 4))
    f2 = rng.normal(0.5, 2.0, size=(20000, 4))
    expected = 4 * 0.5**2 + 4 * (1 - 2) ** 2
    assert fid.fid_from_features(f1, f2) == pytest.approx(expected, abs=0.15)


def test_inception_features_and_fid_of_a_set_against_itself():
    images = load("digits", "test").images[:24]
    feats = fid.features(images, batch_size=12, progress=False)
    assert feats.shape == (24, 2048) and np.isfinite(feats).all()
    assert abs(fid.fid_from_features(feats, feats)) < 1e-3
    other = fid.features(-images, batch_size=12, progress=False)  # inverted digits look very different
    assert fid.fid_from_features(feats, other) > 50
    # KID is unbiased: two halves of one set score near 0, a different set far above
    assert fid.kid(feats, other, subsets=5) > 10 * abs(fid.kid(feats[:12], feats[12:], subsets=5))


def test_input_preparation_is_the_tf_fid_convention():
    x = torch.tensor([-1.0, 1.0]).reshape(2, 1, 1, 1).expand(2, 1, 4, 4)
    prep = fid.prepare(x)
    assert prep.shape == (2, 3, 299, 299)
    assert prep[0].min().item() == -1.0 and prep[1].max().item() == pytest.approx(127 / 128)
    with pytest.raises(UserError, match="shape"):
        fid.prepare(torch.zeros(2, 5, 8, 8))


def test_frechet_distance_agrees_with_the_matrix_square_root_formula():
    import scipy.linalg

    rng = np.random.default_rng(2)
    f1, f2 = rng.normal(size=(300, 64)), rng.normal(size=(300, 64)) @ rng.normal(size=(64, 64)) * 0.3
    (m1, s1), (m2, s2) = fid.statistics(f1), fid.statistics(f2)
    diff = m1 - m2
    reference = diff @ diff + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert fid.frechet_distance(m1, s1, m2, s2) == pytest.approx(reference, rel=1e-6)


def test_fp32_is_the_default_and_the_reference_cache_keeps_precisions_apart(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNDIFF_CACHE", str(tmp_path))
    images = load("digits", "test").images[:8]
    assert np.array_equal(fid.features(images, progress=False), fid.features(images, precision="fp32", progress=False))
    a = fid.reference_features("digits", "test", 8, progress=False)
    b = fid.reference_features("digits", "test", 8, precision="bf16", progress=False)
    files = sorted(p.name for p in (tmp_path / "fid").glob("*.npz"))
    assert len(files) == 2 and any("fp32" in f for f in files) and any("bf16" in f for f in files)
    assert all(fid.RESIZE in f for f in files)
    assert not np.array_equal(a, b)  # bf16 moves the features; they are never mixed up
    np.testing.assert_array_equal(fid.reference_features("digits", "test", 8, progress=False), a)  # cached
    with pytest.raises(UserError, match="precision"):
        fid.features(images, precision="fp16", progress=False)


def test_the_onnx_runtime_path_gives_torchs_features_on_real_images():
    """The fast path (the default for fp32 on the CPU) against the TorchScript network itself."""
    images = load("mnist", "test").images[:16]
    plain = fid.features(images, batch_size=8, progress=False, backend="torch")
    fast = fid.features(images, batch_size=8, progress=False, backend="onnx")
    assert np.abs(fast - plain).max() < 1e-4 * np.abs(plain).max()
    np.testing.assert_array_equal(fid.features(images, batch_size=8, progress=False), fast)  # auto picks it
    with pytest.raises(UserError, match="fp32 on the CPU"):
        fid.features(images, precision="bf16", backend="onnx", progress=False)
    with pytest.raises(UserError, match="backend"):
        fid.features(images, backend="tensorrt", progress=False)


def test_a_damaged_onnx_export_in_the_cache_is_exported_again(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNDIFF_CACHE", str(tmp_path))
    fid.onnx_path().parent.mkdir(parents=True)
    fid.onnx_path().write_bytes(b"not an onnx file")
    fid.onnx_session.cache_clear()
    try:
        assert fid.onnx_session(1) is not None
        assert fid.onnx_path().stat().st_size > 10_000_000
        assert not list(fid.onnx_path().parent.glob("*.tmp"))
    finally:
        fid.onnx_session.cache_clear()  # later tests open the session of the real cache
