"""DataLoader worker processes: same batches for any num_workers, errors with the sample index, no orphans."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from cnnkit.data import (
    DataLoader,
    DistributedSampler,
    ImageFolder,
    TensorDataset,
    batch_memory,
    default_collate,
    get_data_rng,
    transforms,
)

Image = pytest.importorskip("PIL.Image")


def make_jpeg_folder(root, count=24, side=40):
    """``count`` random-noise JPEGs in two class folders under ``root``."""
    rng = np.random.default_rng(0)
    for index in range(count):
        folder = root / f"class{index % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index:03d}.jpg", quality=90)
    return root


def _batches(loader, epochs=1):
    out = []
    for _ in range(epochs):
        for images, labels in loader:
            out.append((images.data.copy(), labels.data.copy()))
    return out


class Noisy:
    """A data set whose samples add augmentation noise drawn from the loader's generator."""

    def __len__(self):
        return 21

    def __getitem__(self, index):
        return np.full(3, float(index)) + get_data_rng().standard_normal(3), index


def test_any_number_of_workers_gives_the_same_batches_in_the_same_order(tmp_path):
    folder = make_jpeg_folder(tmp_path / "jpegs")
    crop = transforms.Compose([transforms.RandomCrop(32), transforms.RandomHorizontalFlip(), transforms.ToTensor()])
    dataset = ImageFolder(folder, transform=crop)
    expected = _batches(DataLoader(dataset, batch_size=5, shuffle=True, seed=7), epochs=2)
    for workers, persistent in ((1, False), (2, True), (3, False)):
        loader = DataLoader(dataset, batch_size=5, shuffle=True, seed=7, num_workers=workers,
                            persistent_workers=persistent)
        got = _batches(loader, epochs=2)
        assert len(got) == len(expected)
        for (images, labels), (want_images, want_labels) in zip(got, expected):
            np.testing.assert_array_equal(images, want_images)
            np.testing.assert_array_equal(labels, want_labels)
        loader._shutdown_workers()


def test_augmentation_depends_on_the_sample_not_on_the_batch_or_the_process_count():
    whole = np.concatenate([x.data for x, _ in DataLoader(Noisy(), batch_size=4, seed=3)])
    halves = []
    for rank in range(2):
        sampler = DistributedSampler(Noisy(), num_replicas=2, rank=rank, shuffle=False)
        halves.append({int(i): x for xs, idx in DataLoader(Noisy(), batch_size=3, seed=3, sampler=sampler,
                                                           num_workers=1)
                       for x, i in zip(xs.data, idx.data)})
    for index in range(21):
        np.testing.assert_array_equal(whole[index], halves[index % 2][index])


def test_batches_larger_than_numpys_argument_limit_are_stacked_in_workers():
    dataset = TensorDataset(np.arange(600.0).reshape(300, 2), np.arange(300))
    expected = _batches(DataLoader(dataset, batch_size=128, shuffle=True, seed=1), epochs=2)
    loader = DataLoader(dataset, batch_size=128, shuffle=True, seed=1, num_workers=1, persistent_workers=True)
    got = _batches(loader, epochs=2)
    loader._shutdown_workers()
    for (images, labels), (want_images, want_labels) in zip(got, expected, strict=True):
        np.testing.assert_array_equal(images, want_images)
        np.testing.assert_array_equal(labels, want_labels)


def test_worker_init_fn_runs_in_each_worker(tmp_path):
    def init(worker_id):
        (tmp_path / f"worker{worker_id}-{os.getpid()}").write_text("")

    loader = DataLoader(TensorDataset(np.arange(8.0), np.arange(8)), batch_size=2, num_workers=2,
                        worker_init_fn=init)
    assert len(_batches(loader)) == 4
    names = sorted(path.name.split("-")[0] for path in tmp_path.iterdir())
    assert names == ["worker0", "worker1"]


class Broken:
    def __len__(self):
        return 10

    def __getitem__(self, index):
        if index == 7:
            raise OSError("truncated file")
        return np.zeros(2), index


def test_a_workers_exception_names_the_sample_index_and_leaves_no_process():
    loader = DataLoader(Broken(), batch_size=3, num_workers=2)
    iterator = iter(loader)
    workers = list(iterator._pool.processes)
    with pytest.raises(RuntimeError, match=r"sample index 7") as error:
        for _ in iterator:
            pass
    assert "truncated file" in str(error.value)
    for process in workers:
        process.join(timeout=5)
        assert not process.is_alive()


def test_bad_worker_arguments_are_refused():
    with pytest.raises(ValueError, match="num_workers"):
        DataLoader(TensorDataset(np.arange(4.0)), num_workers=-1)
    with pytest.raises(ValueError, match="persistent_workers"):
        DataLoader(TensorDataset(np.arange(4.0)), persistent_workers=True)
    with pytest.raises(ValueError, match="sampler and shuffle"):
        DataLoader(TensorDataset(np.arange(4.0)), shuffle=True, sampler=range(4))


CTRL_C_PROGRAM = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    from cnnkit.data import DataLoader

    class Slow:
        def __len__(self):
            return 1000

        def __getitem__(self, index):
            time.sleep(0.05)
            return np.zeros(2), index

    loader = DataLoader(Slow(), batch_size=2, num_workers=2)
    iterator = iter(loader)
    print(" ".join(str(p.pid) for p in iterator._pool.processes), flush=True)
    for batch in iterator:
        pass
""")


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie has exited; its parent has not reaped it yet
        return stat.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.skipif(not os.path.exists("/proc"), reason="needs /proc to see processes")
@pytest.mark.parametrize("how", ["ctrl-c", "kill"])
def test_the_end_of_the_main_process_leaves_no_worker_behind(how):
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) or SIGKILL of the main process alone."""
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    process = subprocess.Popen([sys.executable, "-c", CTRL_C_PROGRAM], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env, start_new_session=True)
    pids = []
    try:
        pids = [int(pid) for pid in process.stdout.readline().split()]
        assert len(pids) == 2
        time.sleep(0.5)
        if how == "ctrl-c":
            os.killpg(process.pid, signal.SIGINT)
            _, errors = process.communicate(timeout=20)
            assert "KeyboardInterrupt" in errors
        else:
            process.kill()  # the workers find their parent gone and exit
            process.communicate(timeout=20)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in pids), "worker processes outlived the main process"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _left_behind(pool):
    """The segments of ``pool`` whose names still exist (the main process removes each when it maps it)."""
    return [name for name in pool.segments.maps if os.path.exists(os.path.join("/dev/shm", name.lstrip("/")))]


def test_batches_kept_by_the_caller_keep_their_values_while_later_batches_load():
    """A batch's arrays are views of a shared-memory segment, which is refilled only once they are gone."""
    dataset = TensorDataset(np.arange(40.0).reshape(20, 2), np.arange(20))
    expected = _batches(DataLoader(dataset, batch_size=3, shuffle=True, seed=5), epochs=2)
    loader = DataLoader(dataset, batch_size=3, shuffle=True, seed=5, num_workers=2, persistent_workers=True)
    kept = [batch for _ in range(2) for batch in loader]  # no copies: every batch stays alive
    loader._shutdown_workers()
    assert len(kept) == len(expected)
    for (images, labels), (want_images, want_labels) in zip(kept, expected):
        np.testing.assert_array_equal(images.data, want_images)
        np.testing.assert_array_equal(labels.data, want_labels)


def test_workers_reuse_their_segments_and_leave_none_behind():
    loader = DataLoader(TensorDataset(np.zeros((64, 3, 8, 8), np.float32), np.arange(64)), batch_size=4,
                        num_workers=2, persistent_workers=True, prefetch_factor=2)
    for _ in range(3):
        for images, labels in loader:
            assert images.shape == (4, 3, 8, 8) and labels.shape == (4,)
    pool = loader._pool
    # 48 batches went through; each worker needs about one segment per batch in flight or held
    assert 2 <= len(pool.segments.maps) <= 2 * (loader.prefetch_factor + 3)
    loader._shutdown_workers()
    assert _left_behind(pool) == []


def test_a_failing_worker_leaves_no_segment_behind():
    iterator = iter(DataLoader(Broken(), batch_size=3, num_workers=2))
    pool = iterator._pool
    with pytest.raises(RuntimeError, match=r"sample index 7"):
        for _ in iterator:
            pass
    assert pool.segments.maps and _left_behind(pool) == []


def test_without_segment_files_batches_are_copied_out_of_shared_memory(monkeypatch):
    """Where shared memory has no files to map (macOS), the main process copies each batch and frees it at once."""
    monkeypatch.setattr(batch_memory, "_SHM_DIRECTORY", "/nonexistent-shm-directory")
    dataset = TensorDataset(np.arange(40.0).reshape(20, 2), np.arange(20))
    expected = _batches(DataLoader(dataset, batch_size=3, seed=5))
    loader = DataLoader(dataset, batch_size=3, seed=5, num_workers=2, persistent_workers=True)
    got = [batch for batch in loader]
    pool = loader._pool
    assert pool.segments.maps and all(mapping is None for mapping in pool.segments.maps.values())
    for (images, labels), (want_images, want_labels) in zip(got, expected, strict=True):
        np.testing.assert_array_equal(images.data, want_images)
        np.testing.assert_array_equal(labels.data, want_labels)
    loader._shutdown_workers()  # the workers remove their segments' names
    assert _left_behind(pool) == []


def test_a_collate_fn_may_return_arrays_of_python_objects():
    def collate(samples):
        return np.array([f"sample {int(index)}" for _, index in samples], dtype=object), np.stack(
            [values for values, _ in samples])

    dataset = TensorDataset(np.arange(12.0).reshape(6, 2), np.arange(6))
    names = [list(names) for names, _ in DataLoader(dataset, batch_size=4, collate_fn=collate, num_workers=1)]
    assert names == [[f"sample {i}" for i in range(4)], ["sample 4", "sample 5"]]


def test_default_collate_stacks_straight_into_a_free_segment():
    ring, maps = batch_memory.SegmentRing(), batch_memory.SegmentMaps(1)
    samples = [(np.full((3, 4, 4), float(i), np.float32), i) for i in range(5)]
    try:
        first = ring.fill(default_collate(samples))  # no free segment yet: stacked anywhere, then copied
        ring.give_back([first[0]])
        with ring.collating():
            images, labels = default_collate(samples)
        draft = ring._draft[0]  # the free segment the stack went into
        assert draft.name == first[0]
        assert np.shares_memory(images.data, np.ndarray(draft.size, np.uint8, buffer=draft.buf))
        message = ring.fill((images, labels))
        assert message[0] == first[0]
        got_images, got_labels = maps.open(0, message)
        np.testing.assert_array_equal(got_images.data, np.stack([s[0] for s in samples]))
        np.testing.assert_array_equal(got_labels.data, np.arange(5))
    finally:
        ring.unlink_all()
