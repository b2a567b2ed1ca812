"""cnnkit.data: file readers (IDX, CIFAR python/binary, image folders), Shapes, splits, DataLoader, transforms."""
import gc
import gzip
import hashlib
import os
import pickle
import struct
import threading
import time

import numpy as np
import pytest
from PIL import Image

import cnnkit
from cnnkit import data
from cnnkit.data import transforms as T

# ----------------------------------------------------------------------------- IDX / MNIST


def idx_bytes(array, type_code=0x08):
    """Encode ``array`` in IDX: magic 0x0000<type><ndim>, big-endian uint32 sizes, big-endian data."""
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    dtype = {0x08: ">u1", 0x0C: ">i4", 0x0D: ">f4"}[type_code]
    return header + array.astype(dtype).tobytes()


def write_mnist(folder, prefix="t10k", count=5, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, count).astype(np.uint8)
    os.makedirs(folder, exist_ok=True)
    for name, array in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
        content = idx_bytes(array)
        if gz:
            with gzip.open(os.path.join(folder, name + ".gz"), "wb") as handle:
                handle.write(content)
        else:
            with open(os.path.join(folder, name), "wb") as handle:
                handle.write(content)
    return images, labels


@pytest.mark.parametrize("gz", [True, False])
def test_idx_reader_small_files(tmp_path, gz):
    images, labels = write_mnist(str(tmp_path), gz=gz)
    dataset = data.MNIST(tmp_path, train=False, verify=False)
    assert len(dataset) == 5 and dataset.num_classes == 10 and dataset.in_channels == 1
    np.testing.assert_array_equal(dataset.data, images)
    image, label = dataset[3]
    assert image.dtype == np.uint8 and image.shape == (28, 28) and label == labels[3]
    np.testing.assert_array_equal(image, images[3])
    transformed = data.MNIST(tmp_path, split="test", verify=False, transform=T.ToTensor(),
                             target_transform=lambda y: y + 100)
    tensor, label = transformed[3]
    assert tensor.shape == (1, 28, 28) and tensor.dtype == np.float32 and label == labels[3] + 100


def test_idx_reader_torchvision_layout_and_other_dtypes(tmp_path):
    images, _ = write_mnist(str(tmp_path / "FashionMNIST" / "raw"), prefix="train", count=3)
    assert len(data.FashionMNIST(tmp_path, train=True, verify=False)) == 3
    values = np.arange(24, dtype=np.int32).reshape(2, 3, 4) - 5
    path = tmp_path / "ints.idx"
    path.write_bytes(idx_bytes(values, 0x0C))
    np.testing.assert_array_equal(data.read_idx(path), values)


def test_idx_bad_magic_and_truncation(tmp_path):
    write_mnist(str(tmp_path), gz=False)
    images_path = tmp_path / "t10k-images-idx3-ubyte"
    content = images_path.read_bytes()
    images_path.write_bytes(b"\x12\x34" + content[2:])
    with pytest.raises(ValueError, match="bad magic number 0x1234"):
        data.MNIST(tmp_path, train=False, verify=False)
    images_path.write_bytes(content[:-100])
    with pytest.raises(ValueError, match=f"t10k-images-idx3-ubyte: file is truncated.*{len(content)} bytes are "
                                         f"expected, but it has {len(content) - 100} bytes"):
        data.MNIST(tmp_path, train=False, verify=False)
    images_path.write_bytes(content)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(4, dtype=np.uint8)))
    with pytest.raises(ValueError, match="5 images but .* has 4 labels"):
        data.MNIST(tmp_path, train=False, verify=False)


def test_idx_truncated_gzip_and_checksum(tmp_path):
    write_mnist(str(tmp_path))
    with pytest.raises(ValueError, match="is not the original t10k-images-idx3-ubyte.*verify=False"):
        data.MNIST(tmp_path, train=False)
    gz_path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    gz_path.write_bytes(gz_path.read_bytes()[:-12])
    with pytest.raises(ValueError, match="corrupt or truncated gzip"):
        data.MNIST(tmp_path, train=False, verify=False)


def test_mnist_missing_files_and_download(tmp_path):
    empty = tmp_path / "empty"
    with pytest.raises(FileNotFoundError, match=r"download=True(.|\n)*t10k-images-idx3-ubyte.gz"):
        data.MNIST(empty, train=False)
    mirror = tmp_path / "mirror"
    write_mnist(str(mirror))
    md5 = {name: hashlib.md5((mirror / (name + ".gz")).read_bytes()).hexdigest()
           for name in data.MNIST.files["test"]}

    class LocalMNIST(data.MNIST):
        mirrors = ((tmp_path / "offline").as_uri() + "/", mirror.as_uri() + "/")
        gz_md5 = md5

    dataset = LocalMNIST(tmp_path / "target", train=False, download=True, verify=False)
    assert len(dataset) == 5 and (tmp_path / "target" / "t10k-images-idx3-ubyte.gz").is_file()

    class OfflineMNIST(data.MNIST):
        mirrors = ((tmp_path / "offline").as_uri() + "/",)

    with pytest.raises(RuntimeError, match=r"could not download(.|\n)*Put t10k-images-idx3-ubyte.gz"):
        OfflineMNIST(tmp_path / "other", train=False, download=True)


def test_mnist_folder_with_the_test_files_only_suggests_slicing_them(tmp_path):
    write_mnist(str(tmp_path))  # t10k files only, like ../shared/data/mnist
    with pytest.raises(FileNotFoundError, match=r"holds the test files only.*'test\[:8000\]' to train"):
        data.load_dataset("mnist", root=tmp_path, split="train", verify=False)


def test_real_mnist_test_set(mnist_dir):
    dataset = data.MNIST(mnist_dir, train=False)  # verify=True: checks the decompressed SHA-256
    assert len(dataset) == 10000 and dataset.data.shape == (10000, 28, 28)
    np.testing.assert_array_equal(np.bincount(dataset.targets, minlength=10),
                                  [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
    with gzip.open(os.path.join(mnist_dir, "t10k-images-idx3-ubyte.gz")) as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    assert digest == "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"
    assert digest == data.MNIST.content_sha256["t10k-images-idx3-ubyte"]


# ----------------------------------------------------------------------------- CIFAR-10


def cifar_batches(count, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, 3072), dtype=np.uint8), rng.integers(0, 10, count)


def write_cifar_python(folder, protocol=2):
    """The python version's layout: pickled dicts with bytes keys, data (N, 3072) uint8 and a label list."""
    os.makedirs(folder, exist_ok=True)
    written = {}
    for index, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        flat, labels = cifar_batches(3, index)
        entry = {b"batch_label": name.encode(), b"labels": [int(label) for label in labels], b"data": flat,
                 b"filenames": [f"img{i}.png".encode() for i in range(3)]}
        with open(os.path.join(folder, name), "wb") as handle:
            pickle.dump(entry, handle, protocol=protocol)
        written[name] = (flat, labels)
    names = [b"plane", b"car", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    with open(os.path.join(folder, "batches.meta"), "wb") as handle:
        pickle.dump({b"label_names": names, b"num_vis": 3072}, handle, protocol=protocol)
    return written


@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar_python_version(tmp_path, protocol):
    written = write_cifar_python(str(tmp_path / "cifar-10-batches-py"), protocol)
    train = data.CIFAR10(tmp_path, train=True, verify=False)
    test = data.CIFAR10(tmp_path, train=False, verify=False)
    assert len(train) == 15 and len(test) == 3 and train.classes[1] == "car" and train.in_channels == 3
    flat, labels = written["data_batch_2"]
    image, label = train[3 + 1]
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8 and label == labels[1]
    # each row stores the 1024 red values, then green, then blue, each plane row-major
    np.testing.assert_array_equal(image[:, :, 0], flat[1, :1024].reshape(32, 32))
    np.testing.assert_array_equal(image[:, :, 2], flat[1, 2048:].reshape(32, 32))
    with pytest.raises(ValueError, match="MD5"):
        data.CIFAR10(tmp_path, train=False)


def test_cifar_binary_version(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    records = {}
    for index, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        flat, labels = cifar_batches(2, index)
        records[name] = (flat, labels)
        (folder / (name + ".bin")).write_bytes(np.concatenate([labels[:, None].astype(np.uint8), flat], 1).tobytes())
    (folder / "batches.meta.txt").write_text("\n".join(data.CIFAR10.classes) + "\n\n")
    test = data.CIFAR10(tmp_path, train=False)
    flat, labels = records["test_batch"]
    assert len(test) == 2 and test[1][1] == labels[1]
    np.testing.assert_array_equal(test[1][0][:, :, 1], flat[1, 1024:2048].reshape(32, 32))
    (folder / "test_batch.bin").write_bytes((folder / "test_batch.bin").read_bytes()[:-7])
    with pytest.raises(ValueError, match="not a positive multiple of 3073"):
        data.CIFAR10(tmp_path, train=False)


def _py2_str(value):
    """A Python 2 ``str`` as cPickle wrote it: SHORT_BINSTRING up to 255 bytes, else BINSTRING."""
    value = value if isinstance(value, bytes) else value.encode()
    if len(value) < 256:
        return b"U" + bytes([len(value)]) + value
    return b"T" + struct.pack("<i", len(value)) + value


def _py2_int(value):
    return b"K" + bytes([value]) if value < 256 else b"M" + struct.pack("<H", value)


def _py2_uint8_array(array):
    """A uint8 ndarray as Python 2's NumPy pickled it: numpy.core.multiarray._reconstruct, then its state."""
    shape = b"".join(_py2_int(size) for size in array.shape) + b"\x86"
    dtype = (b"cnumpy\ndtype\n" + _py2_str("u1") + b"K\x00K\x01\x87R(K\x03" + _py2_str("|")
             + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")
    return (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + _py2_str("b") + b"\x87R(K\x01"
            + shape + dtype + b"\x89" + _py2_str(array.tobytes()) + b"tb")


def py2_cifar_pickle(entries):
    """A dict pickled with protocol 2 by Python 2, as the CIFAR-10 python batches are (str keys and values)."""
    body = b""
    for key, value in entries.items():
        if isinstance(value, np.ndarray):
            encoded = _py2_uint8_array(value)
        elif isinstance(value, list):
            encoded = b"](" + b"".join(_py2_int(v) if isinstance(v, int) else _py2_str(v) for v in value) + b"e"
        else:
            encoded = _py2_int(value) if isinstance(value, int) else _py2_str(value)
        body += _py2_str(key) + encoded
    return b"\x80\x02}(" + body + b"u."


def test_cifar_python_batches_as_python_2_wrote_them(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    written = {}
    for index, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        flat, labels = cifar_batches(2, index)
        written[name] = flat, labels
        entry = {"batch_label": f"{name} of 6", "labels": [int(label) for label in labels], "data": flat,
                 "filenames": ["a_000.png", "b_001.png"]}
        (folder / name).write_bytes(py2_cifar_pickle(entry))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(py2_cifar_pickle({"num_cases_per_batch": 10000, "label_names": names,
                                                            "num_vis": 3072}))
    train = data.CIFAR10(tmp_path, train=True, verify=False)
    assert len(train) == 10 and train.classes == names
    flat, labels = written["data_batch_3"]
    image, label = train[2 * 2 + 1]
    assert label == labels[1]
    np.testing.assert_array_equal(image.transpose(2, 0, 1).reshape(-1), flat[1])


class _RunsCommand:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_cifar_refuses_malicious_pickle(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar_python(str(folder))
    marker = tmp_path / "pwned"
    payload = {b"data": _RunsCommand(f"touch {marker}"), b"labels": [0]}
    (folder / "test_batch").write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load .*test_batch.*system.*not a CIFAR batch"):
        data.CIFAR10(tmp_path, train=False, verify=False)
    assert not marker.exists()
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": eval}, protocol=4))
    with pytest.raises(pickle.UnpicklingError, match="builtins.eval"):
        data.CIFAR10(tmp_path, train=False, verify=False)


def test_cifar_missing_files_message(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py.*test_batch.*download=True"):
        data.CIFAR10(tmp_path, train=False)


# ----------------------------------------------------------------------------- ImageFolder


def write_folder(root, per_class=3):
    rng = np.random.default_rng(0)
    for name, mode in (("dog", "RGB"), ("cat", "L"), ("bird", "RGB")):
        (root / name).mkdir(parents=True)
        for index in range(per_class):
            shape = (6, 5, 3) if mode == "RGB" else (6, 5)
            extension = [".png", ".bmp", ".PNG"][index % 3]
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(root / name / f"{index}{extension}")
    (root / "cat" / "notes.txt").write_text("not an image")


def test_image_folder(tmp_path):
    write_folder(tmp_path)
    rgb = data.ImageFolder(tmp_path, mode="RGB")
    assert rgb.classes == ["bird", "cat", "dog"] and len(rgb) == 9 and rgb.num_classes == 3
    assert rgb.image_size == (6, 5) and rgb.in_channels == 3
    image, label = rgb[4]
    assert image.shape == (6, 5, 3) and image.dtype == np.uint8 and label == 1
    expected = np.asarray(Image.open(rgb.samples[4][0]).convert("RGB"))
    np.testing.assert_array_equal(image, expected)
    gray = data.ImageFolder(tmp_path, mode="L", transform=T.ToTensor())
    assert gray[0][0].shape == (1, 6, 5)
    assert data.ImageFolder(tmp_path).mode == "RGB"  # the first image (bird/0.png) is colour
    first, second = (data.load_dataset("folder", root=tmp_path, split=split)
                     for split in ("train[:50%]", "train[50%:]"))
    assert sorted(first.indices + second.indices) == list(range(9))
    info = data.dataset_info("folder", root=tmp_path)
    assert info["num_classes"] == 3 and info["classes"] == ["bird", "cat", "dog"]
    with pytest.raises(FileNotFoundError, match="no class folders"):
        data.ImageFolder(tmp_path / "cat")


# ----------------------------------------------------------------------------- Shapes


def test_shapes_deterministic_and_balanced():
    first = data.Shapes(num_samples=120, seed=3)
    again = data.Shapes(num_samples=120, seed=3)
    other = data.Shapes(num_samples=120, seed=4)
    test = data.Shapes(num_samples=120, seed=3, train=False)
    np.testing.assert_array_equal(first.data, again.data)
    np.testing.assert_array_equal(first.targets, again.targets)
    assert not np.array_equal(first.data, other.data)
    assert not np.array_equal(first.data, test.data)
    assert first.data.dtype == np.uint8 and first.data.shape == (120, 28, 28)
    assert np.array_equal(np.bincount(first.targets, minlength=6), [20] * 6)
    assert first.data.min() == 0 and first.data.max() > 200
    # the mark fills only part of the image: most pixels stay dark
    assert 0.03 < (first.data > 128).mean() < 0.3
    image, label = first[0]
    assert image.shape == (28, 28) and 0 <= label < 6


def test_shapes_options_and_stats():
    big = data.Shapes(num_samples=14, image_size=40, classes=("star", "line", "hexagon", "o"), seed=1, split="test")
    assert big.data.shape == (14, 40, 40) and big.num_classes == 4 and set(big.targets) == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="classes must be"):
        data.Shapes(num_samples=10, classes=("x", "blob"))
    default_train = data.Shapes()
    assert len(default_train) == 6000 and len(data.Shapes(train=False)) == 1000
    pixels = default_train.data / 255.0
    info = data.dataset_info("shapes")
    assert abs(pixels.mean() - info["mean"][0]) < 0.002 and abs(pixels.std() - info["std"][0]) < 0.002


# ----------------------------------------------------------------------------- splits and the factory


@pytest.mark.parametrize("split,expected", [
    ("train", ("train", slice(None, None))),
    ("test[:8000]", ("test", slice(None, 8000))),
    ("test[8000:]", ("test", slice(8000, None))),
    ("train[10%:]", ("train", slice("10%", None))),
    ("train[:50%]", ("train", slice(None, "50%"))),
    (" test[-1000:] ", ("test", slice(-1000, None))),
    ("train[10:20]", ("train", slice(10, 20))),
])
def test_parse_split(split, expected):
    assert data.parse_split(split) == expected


@pytest.mark.parametrize("split", ["", "train[", "train[5]", "train[1.5:]", "train[10%:20]", "train[:150%]",
                                   "train[a:b]", "tr ain"])
def test_parse_split_rejects_bad_syntax(split):
    with pytest.raises(ValueError, match="bad split"):
        data.parse_split(split)


def test_split_indices_follow_tfds_rounding():
    assert data.split_indices(slice("10%", None), 1000) == range(100, 1000)
    assert data.split_indices(slice(None, "33%"), 10) == range(0, round(3.3))
    assert data.split_indices(slice(-3, None), 10) == range(7, 10)


def test_load_mnist_slice(mnist_dir):
    tail = data.load_dataset("mnist", root=mnist_dir, split="test[8000:]", transform=T.ToTensor())
    assert len(tail) == 2000 and tail[0][0].shape == (1, 28, 28) and tail.num_classes == 10


def test_load_dataset_and_info():
    sliced = data.load_dataset("shapes", split="train[10%:]", num_samples=200)
    full = data.load_dataset("shapes", split="train", num_samples=200)
    assert len(sliced) == 180 and sliced.num_classes == 6
    np.testing.assert_array_equal(sliced[0][0], full[20][0])
    assert data.dataset_info("cifar10")["in_channels"] == 3 and data.dataset_info("mnist")["num_classes"] == 10
    with pytest.raises(ValueError, match="unknown data set 'imagenet'.*shapes, mnist"):
        data.load_dataset("imagenet")
    with pytest.raises(ValueError, match="selects no samples"):
        data.load_dataset("shapes", split="test[5:5]", num_samples=10)


# ----------------------------------------------------------------------------- DataLoader


def _labels(loader):
    return [batch[1].data.tolist() for batch in loader]


def test_dataloader_batches_and_collate():
    dataset = data.TensorDataset(np.arange(10, dtype=np.float64)[:, None] * np.ones((1, 3)), np.arange(10))
    loader = data.DataLoader(dataset, batch_size=4, prefetch=0)
    batches = list(loader)
    assert len(loader) == 3 and [len(labels) for _, labels in batches] == [4, 4, 2]
    features, labels = batches[0]
    assert isinstance(features, cnnkit.Tensor) and features.dtype == np.float32 and labels.dtype == np.int64
    assert labels.data.tolist() == [0, 1, 2, 3]
    dropped = data.DataLoader(dataset, batch_size=4, drop_last=True)
    assert len(dropped) == 2 and [len(labels) for _, labels in dropped] == [4, 4]
    images = data.default_collate([(np.full((5, 4), 255, np.uint8), 1), (np.zeros((5, 4), np.uint8), 2)])
    assert images[0].shape == (2, 1, 5, 4) and images[0].data.max() == 1.0 and images[0].dtype == np.float32
    colour = data.default_collate([np.zeros((5, 4, 3), np.uint8)] * 3)
    assert colour.shape == (3, 3, 5, 4)
    with pytest.raises(ValueError, match="different shapes"):
        data.default_collate([np.zeros((2, 2), np.float32), np.zeros((3, 3), np.float32)])


def test_dataloader_shuffle_is_seeded_and_covers_everything():
    dataset = data.TensorDataset(np.zeros((23, 1)), np.arange(23))
    first = data.DataLoader(dataset, batch_size=5, shuffle=True, seed=7)
    second = data.DataLoader(dataset, batch_size=5, shuffle=True, seed=7, prefetch=0)
    epoch0, epoch1 = _labels(first), _labels(first)
    assert epoch0 == _labels(second) and epoch1 == _labels(second)
    assert epoch0 != epoch1 and sorted(sum(epoch0, [])) == list(range(23))
    assert _labels(data.DataLoader(dataset, batch_size=5, shuffle=True, seed=8)) != epoch0
    cnnkit.manual_seed(11)
    drawn = _labels(data.DataLoader(dataset, batch_size=5, shuffle=True))
    cnnkit.manual_seed(11)
    assert _labels(data.DataLoader(dataset, batch_size=5, shuffle=True)) == drawn
    first.set_epoch(1)
    assert _labels(first) == epoch1


class _Exploding(data.Dataset):
    def __len__(self):
        return 20

    def __getitem__(self, index):
        if index == 9:
            raise KeyError(f"sample {index} is broken")
        return np.zeros(2), index


def test_prefetch_thread_propagates_exceptions():
    loader = data.DataLoader(_Exploding(), batch_size=4, prefetch=2)
    seen = []
    with pytest.raises(KeyError, match="sample 9 is broken"):
        for _, labels in loader:
            seen.append(labels.data.tolist())
    assert seen == [[0, 1, 2, 3], [4, 5, 6, 7]]


def _wait_until_stopped(thread, seconds=10.0):
    deadline = time.monotonic() + seconds
    while thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    return not thread.is_alive()


def test_abandoned_iteration_stops_its_thread():
    loader = data.DataLoader(data.TensorDataset(np.zeros((100, 2)), np.arange(100)), batch_size=2, prefetch=1)
    iterator = iter(loader)
    next(iterator)
    thread = iterator._thread
    assert isinstance(thread, threading.Thread) and thread.is_alive()
    del iterator
    gc.collect()
    assert _wait_until_stopped(thread)


def test_random_transforms_same_with_and_without_prefetch():
    dataset = data.Shapes(num_samples=40, image_size=16, transform=T.Compose([T.RandomCrop(12, padding=2),
                                                                              T.RandomHorizontalFlip(), T.ToTensor()]))
    batches = {prefetch: [images.data for images, _ in data.DataLoader(dataset, batch_size=8, shuffle=True, seed=3,
                                                                         prefetch=prefetch)]
               for prefetch in (0, 3)}
    for threaded, direct in zip(batches[3], batches[0]):
        np.testing.assert_array_equal(threaded, direct)


def test_dataloader_resume_mid_epoch_is_exact():
    dataset = data.Shapes(num_samples=50, image_size=12, transform=T.Compose([T.RandomCrop(10), T.ToTensor()]))
    loader = data.DataLoader(dataset, batch_size=6, shuffle=True, seed=5)
    list(loader)  # epoch 0
    iterator = iter(loader)
    for _ in range(3):
        next(iterator)
    state = loader.state_dict()
    assert state == {"seed": 5, "epoch": 1, "batch": 3}
    rest_of_epoch = [images.data for images, _ in iterator]
    next_epoch = [images.data for images, _ in loader]
    resumed = data.DataLoader(dataset, batch_size=6, shuffle=True, seed=999)
    resumed.load_state_dict(state)
    resumed_rest = [images.data for images, _ in resumed]
    assert len(resumed_rest) == len(rest_of_epoch) == len(loader) - 3
    for original, again in zip(rest_of_epoch + next_epoch, resumed_rest + [x.data for x, _ in resumed]):
        np.testing.assert_array_equal(original, again)


def test_dataloader_argument_errors():
    with pytest.raises(ValueError, match="batch_size"):
        data.DataLoader(data.TensorDataset(np.zeros(3)), batch_size=0)
    with pytest.raises(ValueError, match="prefetch"):
        data.DataLoader(data.TensorDataset(np.zeros(3)), prefetch=-1)


# ----------------------------------------------------------------------------- transforms


def test_to_tensor_and_normalize():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    tensor = T.ToTensor()(gray)
    assert tensor.shape == (1, 3, 4) and tensor.dtype == np.float32
    np.testing.assert_allclose(tensor[0], gray / 255.0, rtol=1e-6)
    colour = np.random.default_rng(0).integers(0, 256, (3, 4, 3), dtype=np.uint8)
    chw = T.ToTensor()(colour)
    np.testing.assert_allclose(chw[2], colour[:, :, 2] / 255.0, rtol=1e-6)
    normalized = T.Normalize((0.5, 0.4, 0.3), (0.2, 0.25, 0.5))(chw)
    assert normalized.dtype == np.float32
    np.testing.assert_allclose(normalized[1], (chw[1] - 0.4) / 0.25, rtol=1e-5)
    with pytest.raises(ValueError, match="3 channels"):
        T.Normalize((0.5, 0.5), (0.2, 0.2))(chw)
    with pytest.raises(TypeError, match="apply ToTensor"):
        T.Normalize(0.5, 0.2)(colour)


def test_random_crop_and_flip():
    image = np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    padded = np.pad(image, ((2, 2), (2, 2), (0, 0)))
    crop = T.RandomCrop(8, padding=2, generator=np.random.default_rng(0))(image)
    windows = [padded[top:top + 8, left:left + 8] for top in range(5) for left in range(5)]
    assert crop.shape == (8, 8, 3) and any(np.array_equal(crop, window) for window in windows)
    cnnkit.manual_seed(4)
    first = T.RandomCrop(5)(image)
    cnnkit.manual_seed(4)
    np.testing.assert_array_equal(T.RandomCrop(5)(image), first)
    with pytest.raises(ValueError, match="larger than"):
        T.RandomCrop(9)(image)
    np.testing.assert_array_equal(T.RandomHorizontalFlip(p=1.0)(image), image[:, ::-1])
    np.testing.assert_array_equal(T.RandomHorizontalFlip(p=0.0)(image), image)
    chw = T.ToTensor()(image)
    np.testing.assert_array_equal(T.RandomHorizontalFlip(p=1.0)(chw), chw[:, :, ::-1])
    assert T.RandomCrop((4, 6))(chw).shape == (3, 4, 6)


@pytest.mark.parametrize("size", [(5, 7), (13, 16), (8, 8)])
def test_resize_matches_torch_bilinear(size, torch):
    image = np.random.default_rng(2).random((2, 8, 11))
    ours = T.Resize(size)(image)
    theirs = torch.nn.functional.interpolate(torch.from_numpy(image)[None], size=size, mode="bilinear",
                                             align_corners=False)[0].numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)
    raw = (image[0] * 255).astype(np.uint8)
    resized_raw = T.Resize(size)(raw)
    assert resized_raw.dtype == np.uint8 and resized_raw.shape == size
    reference = T.Resize(size)(raw.astype(np.float64))
    assert np.abs(resized_raw - reference).max() <= 0.5 + 1e-9


def test_resize_int_keeps_aspect_and_center_crop():
    image = np.zeros((10, 20), dtype=np.uint8)
    assert T.Resize(5)(image).shape == (5, 10)
    grid = np.arange(7 * 9).reshape(7, 9).astype(np.uint8)
    np.testing.assert_array_equal(T.CenterCrop((3, 4))(grid), grid[2:5, 2:6])
    grown = T.CenterCrop(10)(grid)
    assert grown.shape == (10, 10)
    np.testing.assert_array_equal(grown[1:8, 0:9], grid)


def test_grayscale_matches_pillow():
    colour = np.random.default_rng(3).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    ours = T.Grayscale()(colour)
    pillow = np.asarray(Image.fromarray(colour, "RGB").convert("L"))
    assert ours.shape == (6, 7) and np.abs(ours.astype(int) - pillow).max() <= 1
    assert T.Grayscale(3)(colour).shape == (6, 7, 3)


@pytest.mark.parametrize("name", ["MNIST", "FashionMNIST", "CIFAR10"])
def test_unknown_split_is_refused_by_name(name, tmp_path):
    import cnnkit.data

    with pytest.raises(ValueError, match=rf"{name}: split must be 'train' or 'test', got 'val'"):
        getattr(cnnkit.data, name)(tmp_path, split="val")
