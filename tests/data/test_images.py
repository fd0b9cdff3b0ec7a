import numpy as np
import pytest
import torch
from PIL import Image

from attndiff import UserError
from attndiff.data import images
from attndiff.data.images import load


def _check(d, n, shape, classes):
    assert len(d) == n and d.shape == shape and len(d.classes) == classes
    assert d.images.dtype == torch.float32 and d.labels.dtype == torch.int64
    assert d.images.min() >= -1 and d.images.max() <= 1
    assert d.images.min() == -1 and d.images.max() > 0.9  # uses the full range
    assert d.labels.min() >= 0 and d.labels.max() < max(classes, 1)


def test_mnist():
    _check(load("mnist", "train"), 50000, (1, 28, 28), 10)
    _check(load("mnist", "test"), 10000, (1, 28, 28), 10)
    _check(load("mnist", "valid"), 10000, (1, 28, 28), 10)
    # pixel values are exact bytes
    x = load("mnist", "test").images
    assert torch.allclose((x + 1) * 127.5, ((x + 1) * 127.5).round(), atol=1e-4)


@pytest.mark.skipif(not images.FASHION_DIR.exists(), reason="dataset-fashion-mnist not installed (needs root)")
def test_fashion_mnist():
    train, valid = load("fashion-mnist", "train"), load("fashion-mnist", "valid")
    _check(train, 50000, (1, 28, 28), 10)
    _check(valid, 10000, (1, 28, 28), 10)
    assert not torch.equal(train.images[-1], valid.images[0])  # held out, not a copy of train's end
    _check(load("fashion-mnist", "test"), 10000, (1, 28, 28), 10)


def test_emoji_and_resize():
    train, test = load("emoji", "train"), load("emoji", "test")
    _check(train, 3403, (3, 64, 64), 9)
    assert len(test) == 378 and "Component" not in train.classes
    small = load("emoji", "test", resolution=32)
    assert small.shape == (3, 32, 32)
    # antialiased 64 -> 32 is 2x2 averaging
    torch.testing.assert_close(small.images, torch.nn.functional.avg_pool2d(test.images, 2), atol=1e-5, rtol=0)


def test_digits_and_seeded_subsets_and_splits():
    d = load("digits", "all")
    _check(d, 1797, (1, 8, 8), 10)
    assert len(load("digits", "train")) + len(load("digits", "test")) == 1797
    a, b = d.subset(100, seed=3), d.subset(100, seed=3)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, d.subset(100, seed=4).images)
    first, rest = d.split(0.04, seed=0)
    assert len(first) == round(0.04 * 1797) and len(first) + len(rest) == 1797


def test_folder_with_class_subfolders(tmp_path):
    for cls, value in (("cats", 10), ("dogs", 200)):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(np.full((6, 6, 3), value + i, np.uint8)).save(tmp_path / cls / f"{i}.png")
    d = load(f"folder:{tmp_path}")
    assert d.shape == (3, 6, 6) and len(d) == 6 and d.classes == ("cats", "dogs")
    assert d.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert d.images[0, 0, 0, 0].item() == pytest.approx(10 / 127.5 - 1)


def test_npz_in_nhwc_and_nchw(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", images=x, labels=np.arange(5))
    np.savez(tmp_path / "b.npz", x=x.transpose(0, 3, 1, 2))
    a, b = load(f"npz:{tmp_path / 'a.npz'}"), load(f"npz:{tmp_path / 'b.npz'}")
    assert a.shape == b.shape == (3, 8, 8)
    assert torch.equal(a.images, b.images) and a.labels.tolist() == [0, 1, 2, 3, 4]


def test_bad_input_names_the_problem(tmp_path):
    with pytest.raises(UserError, match="unknown dataset 'cifar10'"):
        load("cifar10")
    with pytest.raises(UserError, match="no split"):
        load("mnist", "validation")
    with pytest.raises(UserError, match="not found"):
        load(f"folder:{tmp_path / 'missing'}")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(UserError, match="broken.png"):
        load(f"folder:{tmp_path / 'bad'}")
    np.savez(tmp_path / "c.npz", images=np.zeros((2, 5, 8, 8), np.uint8))
    with pytest.raises(UserError, match="1 or 3 channels"):
        load(f"npz:{tmp_path / 'c.npz'}")


def test_missing_emoji_cache_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNDIFF_CACHE", str(tmp_path))
    with pytest.raises(UserError, match="make setup"):
        load("emoji")


def test_the_mnist_unpickler_accepts_arrays_and_refuses_anything_else():
    import io
    import pickle

    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    loaded = images._ArrayUnpickler(io.BytesIO(pickle.dumps(arr, protocol=2))).load()
    assert np.array_equal(loaded, arr)

    class Evil:
        def __reduce__(self):
            import os
            return (os.system, ("echo pwned",))

    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        images._ArrayUnpickler(io.BytesIO(pickle.dumps(Evil(), protocol=2))).load()


def test_c4_mnist_is_each_mnist_image_rotated_by_a_seeded_multiple_of_90_degrees():
    plain, rotated = load("mnist", "test"), load("c4-mnist", "test")
    assert torch.equal(rotated.images, load("c4-mnist", "test").images)  # deterministic
    ks = []
    for i in range(40):
        matches = [k for k in range(4) if torch.equal(torch.rot90(plain.images[i], k, (-2, -1)), rotated.images[i])]
        assert matches, f"image {i} is not a rotation of its original"
        ks.append(matches[0])
    assert len(set(ks)) == 4 and torch.equal(rotated.labels, plain.labels)
    assert not torch.equal(load("c4-mnist", "train").images[:40], load("mnist", "train").images[:40])


def test_binary_mnist_is_upright_and_two_valued():
    data = load("binary-mnist", "test")
    assert set(data.images.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(data.images > 0, load("mnist", "test").images > 0)
