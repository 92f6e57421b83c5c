"""Image sources: folders, CIFAR-10's on-disk format, arrays, .npz; resizing, caching, errors."""

import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from genai.data import folders
from genai.data.batches import ImageBatches
from genai.data.dataset import DatasetError, MissingSplitError
from genai.data.images import load_images, load_recorded
from genai.data.pixels import convert_channels, resize_images


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture
def photo_folder(tmp_path):
    """Class subfolders: 'cat' RGB 40x40 red-ish, 'dog' gray 20x30, one RGBA; a stray text file."""
    root = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for i in range(3):
        img = np.zeros((40, 40, 3), np.uint8)
        img[..., 0] = 200 + i
        _png(root / "cat" / f"c{i}.png", img)
        _png(root / "dog" / f"d{i}.png", rng.integers(0, 50, (30, 20), dtype=np.uint8))
    rgba = np.zeros((16, 16, 4), np.uint8)  # fully transparent: composited on white
    _png(root / "dog" / "transparent.png", rgba)
    (root / "dog" / "notes.txt").write_text("not an image")
    return root


def test_folder_with_class_subfolders(photo_folder):
    data = load_images(photo_folder, image_size=16, progress=False)
    assert data.images.shape == (7, 3, 16, 16) and data.images.dtype == torch.uint8
    assert data.class_names == ("cat", "dog")
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1, 1]
    # cat: pure red stays red after resizing; dog: gray stays gray in RGB.
    assert data.images[0, 0].float().mean() == pytest.approx(200, abs=1)
    assert data.images[0, 1:].max() == 0
    dog = data.images[3].float()
    torch.testing.assert_close(dog[0], dog[1])
    assert data.images[6].min() == 255  # the transparent image is white
    assert data.spec["source"] == str(photo_folder.resolve()) and data.spec["image_size"] == 16


def test_folder_gray_and_defaults(tmp_path):
    root = tmp_path / "flat"
    for i in range(4):
        _png(root / f"{i}.png", np.full((12, 12), 10 * i, np.uint8))
    data = load_images(root, progress=False)
    assert data.images.shape == (4, 1, 12, 12)  # all gray, one size: kept as stored
    assert data.labels is None and data.class_names is None and data.num_classes is None
    assert data.images[:, 0, 0, 0].tolist() == [0, 10, 20, 30]
    rgb = load_images(root, channels=3, progress=False)
    assert rgb.images.shape == (4, 3, 12, 12)


def test_mixed_sizes_need_image_size(photo_folder):
    with pytest.raises(DatasetError, match=r"different sizes .*--image-size") as info:
        load_images(photo_folder, progress=False)
    assert str(info.value).startswith(f"{photo_folder}: ")  # the folder given, not a class's


def test_center_crop_and_antialiased_resize(tmp_path):
    img = np.zeros((20, 40), np.uint8)
    img[:, 10:30] = 255  # the central 20x20 square is white, the sides black
    _png(tmp_path / "f" / "wide.png", img)
    data = load_images(tmp_path / "f", image_size=10, progress=False)
    # cropped to the white centre (the resize filter reads a little past the edges)
    assert data.images[..., 1:-1].min() == 255 and data.images.min() > 200
    stripes = torch.zeros(1, 1, 64, 64, dtype=torch.uint8)
    stripes[..., ::2] = 255  # one-pixel stripes alias without antialiasing
    small = resize_images(stripes, 8)
    assert small.shape == (1, 1, 8, 8)
    assert (small.float() - 127.5).abs().max() < 20


def test_corrupt_and_truncated_images_name_the_file(photo_folder):
    bad = photo_folder / "cat" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DatasetError, match=r"broken.png: not a readable image"):
        load_images(photo_folder, image_size=16, progress=False)
    good = photo_folder / "cat" / "c0.png"
    bad.write_bytes(good.read_bytes()[:-30])  # truncated: the header is fine, the data is not
    with pytest.raises(DatasetError, match=r"broken.png: not a readable image"):
        load_images(photo_folder, image_size=16, channels=3, progress=False)


def test_missing_path_is_named(tmp_path):
    with pytest.raises(DatasetError, match=r"photos: no such folder or file"):
        load_images(tmp_path / "photos")
    with pytest.raises(DatasetError, match=r"set.npz: no such folder or file"):
        load_images("set.npz")


def test_empty_folder_and_non_images(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"empty: no images .*it is empty"):
        load_images(tmp_path / "empty")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("x")
    with pytest.raises(DatasetError, match=r"docs: no images .*found only a.txt"):
        load_images(tmp_path / "docs")


def test_cache_second_load_skips_decoding(photo_folder, monkeypatch):
    first = load_images(photo_folder, image_size=16, progress=False)

    def no_decoding(*args):
        raise AssertionError("decoded again")

    monkeypatch.setattr(folders, "_decode", no_decoding)
    second = load_images(photo_folder, image_size=16, progress=False)
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    # A changed file changes the key: decoding runs (and here fails loudly).
    _png(photo_folder / "cat" / "c9.png", np.zeros((40, 40, 3), np.uint8))
    with pytest.raises(AssertionError, match="decoded again"):
        load_images(photo_folder, image_size=16, progress=False)


def test_split_subfolders(tmp_path):
    for split, n in (("train", 3), ("test", 2)):
        for k in ("a", "b"):
            for i in range(n):
                _png(tmp_path / "ds" / split / k / f"{i}.png", np.zeros((8, 8), np.uint8))
    assert len(load_images(tmp_path / "ds", "test", progress=False)) == 4
    train = load_images(tmp_path / "ds", "train", progress=False)
    assert len(train) == 6 and train.name == "ds" and train.class_names == ("a", "b")
    with pytest.raises(DatasetError, match="no test split"):
        load_images(tmp_path / "ds" / "train", "test")


def test_a_test_split_takes_the_train_splits_class_numbers(tmp_path):
    """test/ may lack classes of train/: its labels still index train's class names."""
    for split, classes in (("train", ("cat", "dog")), ("test", ("dog",))):
        for k in classes:
            _png(tmp_path / "ds" / split / k / "0.png", np.zeros((8, 8), np.uint8))
    test = load_images(tmp_path / "ds", "test", progress=False)
    assert test.class_names == ("cat", "dog") and test.labels.tolist() == [1]
    _png(tmp_path / "ds" / "test" / "bird" / "0.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(DatasetError, match=r"class folders bird are not classes of .*cat, dog"):
        load_images(tmp_path / "ds", "test", progress=False)


def test_16_bit_gray_png_is_scaled_to_8_bits(tmp_path):
    ramp = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1040).astype(np.uint16)  # 0..65520
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")  # "I;16" or "I", by Pillow
    data = load_images(tmp_path, progress=False)
    expected = np.rint(ramp / 257.0).astype(np.uint8)
    np.testing.assert_array_equal(data.images[0, 0].numpy(), expected)


def test_cifar10_on_disk_format(tmp_path, cifar10_root):
    train = load_images("cifar10", "train", root=tmp_path)
    test = load_images("cifar10", "test", root=tmp_path)
    assert train.images.shape == (20, 3, 32, 32) and test.images.shape == (4, 3, 32, 32)
    assert train.images[:4, 0].max() == 0 and test.images[:, 0].min() == 5
    assert train.class_names[3] == "cat" and test.labels.tolist() == [5, 6, 7, 8]
    assert train.spec == {
        "source": "cifar10",
        "root": str(tmp_path),
        "image_size": None,
        "channels": None,
    }
    small = load_images("cifar10", "test", image_size=16, channels=1, root=tmp_path)
    assert small.images.shape == (4, 1, 16, 16)


def test_cifar_pickle_that_runs_code_is_refused(tmp_path, cifar10_root):
    folder = cifar10_root

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": Evil(), "labels": []}, f)
    with pytest.raises(DatasetError, match=r"test_batch: not a readable CIFAR file.*refusing"):
        load_images("cifar10", "test", root=tmp_path)


def test_missing_named_dataset_names_folder_and_flag(tmp_path):
    with pytest.raises(DatasetError) as e:
        load_images("cifar100", root=tmp_path)
    message = str(e.value)
    assert "cifar100" in message and str(tmp_path) in message and "--download" in message
    with pytest.raises(DatasetError, match=r"no kmnist train split found.*download=True"):
        load_images("kmnist", root=tmp_path)


def test_arrays_uint8_float_numpy_and_labels():
    x = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    as_float = load_images(x.float() / 255.0)
    assert torch.equal(as_float.images, x)  # [0, 1] floats round-trip exactly
    gray = load_images(np.zeros((5, 10, 10), np.uint8), image_size=4)
    assert gray.images.shape == (5, 1, 4, 4)
    named = load_images(x, labels=[0, 1, 2, 0, 1, 2], class_names=["a", "b", "c"])
    assert named.num_classes == 3 and named.labels.dtype == torch.int64


@pytest.mark.parametrize(
    ("images", "kwargs", "error", "match"),
    [
        (torch.zeros(2, 8, 8, 3), {}, ValueError, r"channels last\? use images.permute"),
        (torch.zeros(8, 8), {}, ValueError, r"expected shape \(N, H, W\) or \(N, C, H, W\)"),
        (torch.full((2, 1, 4, 4), 2.0), {}, ValueError, r"must lie in \[0, 1\].*\[2, 2\]"),
        (torch.zeros(2, 1, 4, 4, dtype=torch.int32), {}, TypeError, "uint8 or float"),
        ("x" * 3, {}, DatasetError, "unknown dataset 'xxx'"),
        (
            torch.zeros(2, 1, 4, 4),
            {"labels": [0, 5], "class_names": ["a", "b"]},
            ValueError,
            r"labels: values must be \[0, 1\], got \[0, 5\]",
        ),
        (torch.zeros(2, 1, 4, 4), {"labels": [0.5, 1.0]}, TypeError, "integer class indices"),
        (torch.zeros(2, 1, 4, 4), {"labels": [0, 1, 1]}, ValueError, r"expected shape \(2,\)"),
        (torch.zeros(2, 1, 4, 4), {"image_size": 0}, ValueError, "image_size must be"),
        (torch.zeros(2, 1, 4, 4), {"channels": 4}, ValueError, "channels must be 1"),
        (torch.zeros(2, 1, 4, 4), {"labels": ["a", "b"]}, TypeError, "labels: .* list of str"),
        (
            torch.zeros(2, 1, 4, 4),
            {"labels": [0, 1], "class_names": ["a", "a"]},
            ValueError,
            "class_names: each name once",
        ),
        (np.zeros((4, 3, 0, 0), np.uint8), {}, ValueError, r"empty images, shape \(4, 3, 0, 0\)"),
        (torch.zeros(2, 1, 4, 4), {"labels": [0, 2**40]}, ValueError, "would make 1099511627777"),
    ],
)
def test_bad_arrays(images, kwargs, error, match):
    with pytest.raises(error, match=match):
        load_images(images, **kwargs)


def test_npz(tmp_path):
    path = tmp_path / "set.npz"
    np.savez(path, images=np.ones((3, 1, 6, 6), np.uint8), labels=np.array([0, 1, 1]))
    data = load_images(path)
    assert data.images.shape == (3, 1, 6, 6) and data.labels.tolist() == [0, 1, 1]
    with pytest.raises(DatasetError, match=r"set.npz: no test split .*'test_images'"):
        load_images(path, "test")  # never the train images again
    both = tmp_path / "both.npz"
    np.savez(both, images=np.ones((3, 6, 6), np.uint8), test_images=np.zeros((2, 6, 6), np.uint8))
    test = load_images(both, "test")
    assert test.images.shape == (2, 1, 6, 6) and int(test.images.max()) == 0
    named = tmp_path / "named.npz"  # labeled train split, unlabeled test split
    np.savez(named, images=np.ones((2, 6, 6), np.uint8), labels=[0, 1], class_names=["a", "b"],
             test_images=np.zeros((1, 6, 6), np.uint8))  # fmt: skip
    assert load_images(named, "test").labels is None
    np.savez(tmp_path / "bad.npz", pixels=np.ones(3))
    with pytest.raises(DatasetError, match=r"bad.npz: no 'images' array \(keys: pixels\)"):
        load_images(tmp_path / "bad.npz")


def test_convert_channels_luma():
    rgb = torch.tensor([255, 0, 0], dtype=torch.uint8).view(1, 3, 1, 1)
    assert convert_channels(rgb, 1).item() == 76  # 0.299 * 255, as PIL's convert("L")
    assert convert_channels(convert_channels(rgb, 1), 3).shape == (1, 3, 1, 1)


def test_unlabeled_batches_and_recorded_reload(photo_folder):
    data = load_images(photo_folder, image_size=8, progress=False)
    again = load_recorded(data.describe(), "train")
    assert torch.equal(again.images, data.images) and again.class_names == data.class_names
    flat = load_images(torch.rand(10, 3, 8, 8))
    x, y = ImageBatches(flat, 4).get(0)
    assert x.shape == (4, 3, 8, 8) and y is None
    with pytest.raises(DatasetError, match="in-memory array; pass --data"):
        load_recorded(flat.describe(), "train")


def test_the_cache_keeps_folders_with_the_same_file_names_apart(tmp_path):
    """train/cat/0.bmp and test/cat/0.bmp: same relative path, size and mtime, other pixels."""
    for split, value in (("train", 0), ("test", 255)):
        for k in ("cat", "dog"):
            path = tmp_path / "ds" / split / k / "0.bmp"
            path.parent.mkdir(parents=True)
            Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)
            os.utime(path, ns=(10**18, 10**18))  # as extracted from one tar: equal mtimes
    for split, value in (("train", 0), ("test", 255), ("train", 0)):
        assert load_images(tmp_path / "ds", split, progress=False).images.float().mean() == value


def test_a_train_folder_without_test_is_the_split_layout(tmp_path):
    for k in ("cat", "dog"):
        _png(tmp_path / "ds" / "train" / k / "0.png", np.zeros((8, 8), np.uint8))
    train = load_images(tmp_path / "ds", progress=False)
    assert train.class_names == ("cat", "dog")  # not one class named "train"
    with pytest.raises(MissingSplitError, match=r"no test split \(it has train/ but no test/\)"):
        load_images(tmp_path / "ds", "test", progress=False)
    for k in ("bus", "car"):  # beside other class folders, train/ is a class
        _png(tmp_path / "vehicles" / k / "0.png", np.zeros((8, 8), np.uint8))
    _png(tmp_path / "vehicles" / "train" / "0.png", np.zeros((8, 8), np.uint8))
    assert load_images(tmp_path / "vehicles", progress=False).class_names == ("bus", "car", "train")


def test_exif_orientation_turns_photos_upright(tmp_path):
    stored = np.full((20, 40, 3), 255, np.uint8)  # 40 wide, 20 high, as the sensor stored it
    stored[:, :20] = (255, 0, 0)  # left half red: the top once turned upright (orientation 6)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(stored).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    image = load_images(tmp_path, progress=False).images[0].permute(1, 2, 0).numpy()
    assert image.shape == (20, 20, 3)  # the square crop of the upright 20x40 photo
    assert image[0, 10, 0] > 200 and image[0, 10, 1] < 60  # red on top, not on the left


def test_empty_class_folders_and_symlink_loops_are_named(tmp_path, caplog):
    _png(tmp_path / "ds" / "cat" / "0.png", np.zeros((8, 8), np.uint8))
    _png(tmp_path / "ds" / "dog" / "0.png", np.zeros((8, 8), np.uint8))
    (tmp_path / "ds" / "bird").mkdir()
    os.symlink(tmp_path / "ds" / "cat", tmp_path / "ds" / "cat" / "loop")
    data = load_images(tmp_path / "ds", progress=False)
    assert data.class_names == ("cat", "dog") and len(data) == 2
    assert "subfolders without images are not classes: bird" in caplog.text
    assert "a symlink back to a folder already read" in caplog.text


def test_decoding_more_than_memory_holds_names_the_setting(tmp_path, monkeypatch):
    _png(tmp_path / "0.png", np.zeros((8, 8), np.uint8))

    def no_memory(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(folders.torch, "empty", no_memory)
    with pytest.raises(
        DatasetError, match=r"1 images of 1x9000x9000 need 0.1 GiB .*\(--image-size\)"
    ):
        load_images(tmp_path, image_size=9000, progress=False)


def test_damaged_npz_and_cifar_files_are_named(tmp_path, cifar10_root):
    np.savez(tmp_path / "ok.npz", images=np.zeros((4, 8, 8), np.uint8), labels=[0, 1, 0, 1],
             class_names=np.array([b"ant", b"bee"]))  # fmt: skip
    assert load_images(tmp_path / "ok.npz").class_names == ("ant", "bee")  # bytes decoded
    (tmp_path / "cut.npz").write_bytes((tmp_path / "ok.npz").read_bytes()[:200])
    with pytest.raises(DatasetError, match=r"cut.npz: not a readable .npz file \(BadZipFile"):
        load_images(tmp_path / "cut.npz")
    batch = cifar10_root / "data_batch_2"
    batch.write_bytes(batch.read_bytes().replace(b"latin1", b"larin1"))  # numpy's dtype pickle
    with pytest.raises(DatasetError, match="data_batch_2: not a readable CIFAR file"):
        load_images("cifar10", root=tmp_path)
    with open(cifar10_root / "batches.meta", "wb") as f:
        pickle.dump(["cat", "dog"], f)
    with pytest.raises(DatasetError, match="batches.meta: expected a dict with a list"):
        load_images("cifar10", "test", root=tmp_path)


def test_numpy_sizes_and_names_are_taken_and_a_string_is_not_a_list_of_names():
    images = np.zeros((2, 8, 8), np.uint8)
    assert load_images(images, image_size=np.int64(4)).image_shape == (1, 4, 4)
    with pytest.raises(TypeError, match="class_names: expected a list of names, got 'ab'"):
        load_images(images, labels=[0, 1], class_names="ab")
    with pytest.raises(TypeError, match="labels: expected integer class indices, got <U1"):
        load_images(images, labels=np.array(["a", "b"]))


def test_a_celeba_copy_without_a_split_says_so(tmp_path):
    _png(tmp_path / "celeba" / "img_align_celeba" / "000001.jpg", np.zeros((20, 16, 3), np.uint8))
    (tmp_path / "celeba" / "list_eval_partition.txt").write_text("000001.jpg 0\n")
    assert load_images("celeba", root=tmp_path, image_size=8, progress=False).image_shape == (
        3, 8, 8,
    )  # fmt: skip
    with pytest.raises(MissingSplitError, match=r"no images of the test split \(partition 2\)"):
        load_images("celeba", "test", root=tmp_path, image_size=8, progress=False)
