import numpy as np
import pytest
import torch

from genai.data.batches import ImageBatches
from genai.data.dataset import DatasetError, ImageDataset, split_dataset
from genai.data.idx import read_idx, write_idx
from genai.data.images import load_images


def test_idx_round_trip_gz_and_raw(tmp_path):
    array = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    for name in ("a.gz", "a"):
        write_idx(tmp_path / name, array)
        np.testing.assert_array_equal(read_idx(tmp_path / name), array)


def test_truncated_idx_names_the_file(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    write_idx(path, np.zeros((3, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(
        DatasetError, match=r"train-images-idx3-ubyte: IDX file holds 2342 data bytes.*2352"
    ):
        read_idx(path)


def test_truncated_gzip_and_bad_magic(tmp_path):
    path = tmp_path / "x.gz"
    write_idx(path, np.zeros((3, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(DatasetError, match=r"x.gz: cannot read IDX file"):
        read_idx(path)
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x00\x00\x0d\x03" + b"\x00" * 20)
    with pytest.raises(DatasetError, match="bad: not an unsigned-byte IDX file"):
        read_idx(bad)


def test_load_from_root(idx_root):
    train = load_images("mnist", "train", root=idx_root)
    test = load_images("mnist", "test", root=idx_root)
    assert train.images.shape == (200, 1, 28, 28) and train.images.dtype == torch.uint8
    assert test.labels.shape == (60,) and test.labels.dtype == torch.int64
    assert train.source == str(idx_root)


def test_label_count_mismatch(idx_root):
    write_idx(idx_root / "train-labels-idx1-ubyte.gz", np.zeros(5, np.uint8))
    with pytest.raises(DatasetError, match="5 labels for 200 images"):
        load_images("mnist", "train", root=idx_root)


def test_bad_names_and_missing_root(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset 'cifar'"):
        load_images("cifar")
    with pytest.raises(DatasetError, match="unknown split 'val'"):
        load_images("mnist", "val")
    with pytest.raises(DatasetError, match="does not exist"):
        load_images("mnist", root=tmp_path / "nope")


def test_mnist_offline_fallback_is_real_digits(caplog):
    data = load_images("mnist", "train")  # GENAI_DATA points at an empty folder
    assert len(data) == 5000
    assert "5,000-digit training subset" in caplog.text
    assert torch.bincount(data.labels).tolist() == [500] * 10
    assert data.images.float().mean() > 20  # digits, not blank images


def test_mnist_test_split_missing_is_clear(tmp_path):
    with pytest.raises(DatasetError, match="no mnist test split found"):
        load_images("mnist", "test", root=tmp_path)


def test_batches_are_a_function_of_seed_and_step(idx_root):
    data = load_images("mnist", "train", root=idx_root)
    a, b = ImageBatches(data, 32, seed=3), ImageBatches(data, 32, seed=3)
    assert len(a) == 200 // 32
    xs = [a.get(s)[0] for s in range(10)]  # crosses an epoch boundary
    for s in (9, 2, 7):  # any order, fresh object: same batches
        torch.testing.assert_close(b.get(s)[0], xs[s], rtol=0, atol=0)
    ids = ImageBatches(ImageDataset(data.images, torch.arange(200), "t", "train", "t"), 32, seed=3)
    epoch = torch.cat([ids.get(s)[1] for s in range(len(ids))])
    assert epoch.unique().numel() == 192  # each image at most once per epoch
    assert not torch.equal(a.get(0)[0], a.get(len(a))[0])  # a new permutation each epoch
    x, _ = a.get(0)
    assert x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1


def test_dynamic_binarization(idx_root):
    data = load_images("mnist", "train", root=idx_root)
    batches = ImageBatches(data, 50, binarize=True)
    x0, x1 = batches.get(0)[0], batches.get(len(batches))[0]
    assert set(x0.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(x0, x1)
    torch.testing.assert_close(batches.get(0)[0], x0, rtol=0, atol=0)


def test_split_is_a_seeded_permutation(idx_root):
    data = load_images("mnist", "test", root=idx_root)
    a, b = split_dataset(data, 0.5, seed=1)
    a2, _ = split_dataset(data, 0.5, seed=1)
    assert len(a) == 30 and len(b) == 30
    assert torch.equal(a.images, a2.images)
    assert not torch.equal(a.images, data.images[:30])  # not split by index


def test_gzip_file_that_is_raw(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte.gz: cannot read"):
        read_idx(path)
