"""cnnkit.train: the loss falls, interrupted runs resume exactly, early stopping, metrics.jsonl and metrics."""
import io
import json
import re

import numpy as np
import pytest

import cnnkit
from cnnkit import data, nn, optim
from cnnkit.io import load_checkpoint
from cnnkit.models import create
from cnnkit.optim import lr_scheduler
from cnnkit.train import Trainer, confusion_matrix, evaluate, topk_accuracy, topk_correct


def _quadrant_data(count, seed, side=8):
    """Noisy 8x8 images whose class is the bright quadrant (4 classes)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, count)
    images = rng.normal(0.0, 0.3, (count, 1, side, side)).astype(np.float32)
    half = side // 2
    for index, label in enumerate(labels):
        row, col = divmod(int(label), 2)
        images[index, 0, row * half:(row + 1) * half, col * half:(col + 1) * half] += 1.0
    return images, labels.astype(np.int64)


def _small_net():
    # BatchNorm (buffers), Dropout (the global RNG) and momentum all have to come back on resume
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Dropout(0.2), nn.Linear(4 * 4 * 4, 4))


def _setup(seed=0, lr=0.1, model_fn=_small_net, **trainer_options):
    cnnkit.manual_seed(seed)
    model = model_fn()
    optimizer = optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    scheduler = lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    train_loader = data.DataLoader(data.TensorDataset(*_quadrant_data(96, 1)), batch_size=16, shuffle=True, seed=0)
    val_loader = data.DataLoader(data.TensorDataset(*_quadrant_data(48, 2)), batch_size=32)
    options = {"epochs": 4, "scheduler": scheduler, "progress": False, "log": None, **trainer_options}
    return Trainer(model, optimizer, train_loader, val_loader, **options)


def test_a_few_steps_lower_the_loss():
    trainer = _setup(epochs=3)
    losses = []
    trainer.step_callback = lambda trainer, epoch, step, loss: losses.append(loss)
    history = trainer.fit()
    assert len(losses) == 3 * 6
    assert np.mean(losses[-6:]) < 0.5 * np.mean(losses[:3])
    assert history[-1]["val_top1"] > 0.9


class SimulatedCrashError(Exception):
    """Stands for a crash in the middle of an epoch."""


@pytest.mark.parametrize("how", ["crash", "ctrl-c"])
def test_resume_after_interruption_reproduces_the_uninterrupted_run_exactly(tmp_path, how):
    full_losses = []
    full = _setup(out_dir=str(tmp_path / "full"))
    full.step_callback = lambda trainer, epoch, step, loss: full_losses.append((epoch, step, loss))
    full_history = full.fit()

    def interrupt_in_epoch_3(trainer, epoch, step, loss):
        if epoch == 2 and step == 3:
            if how == "crash":
                raise SimulatedCrashError  # nothing saved: resume from the end of epoch 2
            trainer.request_stop()  # what Ctrl-C does: stop after this batch, saving the position

    broken = _setup(out_dir=str(tmp_path / "resumed"), step_callback=interrupt_in_epoch_3)
    with pytest.raises(SimulatedCrashError if how == "crash" else KeyboardInterrupt):
        broken.fit()
    assert load_checkpoint(tmp_path / "resumed" / "last.safetensors", _small_net())["epoch"] == 2

    resumed_losses = []
    resumed = _setup(seed=999, lr=5.0, out_dir=str(tmp_path / "resumed"))  # seed and lr come from the checkpoint
    resumed.step_callback = lambda trainer, epoch, step, loss: resumed_losses.append((epoch, step, loss))
    resumed_history = resumed.fit(resume=tmp_path / "resumed" / "last.safetensors")

    first = (2, 0) if how == "crash" else (2, 4)  # Ctrl-C saved the position after batch 4 of epoch 3
    assert resumed_losses == [entry for entry in full_losses if entry[:2] >= first]  # bit for bit
    _assert_same_model(resumed.model, full.model)
    keys = ["epoch", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "lr"]
    assert [[r[k] for k in keys] for r in resumed_history] == [[r[k] for k in keys] for r in full_history]
    lines = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]


def _assert_same_model(a, b):
    for (key, left), right in zip(a.state_dict().items(), b.state_dict().values()):
        np.testing.assert_array_equal(left, right, err_msg=key)


def test_metrics_jsonl_and_best_checkpoint(tmp_path):
    trainer = _setup(out_dir=str(tmp_path), epochs=3)
    history = trainer.fit()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert records == history
    required = {"epoch", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "lr", "seconds"}
    assert all(required <= set(record) for record in records)
    assert [record["lr"] for record in records] == [0.1, 0.1, 0.05]
    best = max(records, key=lambda record: record["val_top1"])
    state = load_checkpoint(tmp_path / "best.safetensors", _small_net())
    assert state["epoch"] == best["epoch"]
    assert load_checkpoint(tmp_path / "last.safetensors", _small_net())["epoch"] == 3


def test_early_stopping_when_the_validation_loss_stops_improving():
    # lr 0 and no BatchNorm statistics: the validation loss stays exactly the same after epoch 1
    def frozen(**options):
        return _setup(lr=0.0, epochs=6, model_fn=lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 4)), **options)

    stopped = frozen(patience=2)
    assert len(stopped.fit()) == 3 and stopped.stopped_early
    assert stopped.best_monitor == stopped.history[0]["val_loss"]
    patient = frozen(patience=None)
    assert len(patient.fit()) == 6 and not patient.stopped_early
    improving = _setup(epochs=3, patience=1, monitor="val_loss")
    history = improving.fit()
    losses = [record["val_loss"] for record in history]
    assert not improving.stopped_early and losses == sorted(losses, reverse=True)


def test_topk_and_confusion_matrix_match_brute_force():
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((200, 7))
    labels = rng.integers(0, 7, 200)
    ranking = np.argsort(-logits, axis=1)
    for k in range(1, 9):
        expected = np.array([label in row[:k] for label, row in zip(labels, ranking)])
        np.testing.assert_array_equal(topk_correct(logits, labels, k), expected)
        assert topk_accuracy(logits, labels, k) == expected.mean()
    predictions = rng.integers(0, 7, 200)
    expected = np.zeros((7, 7), dtype=np.int64)
    for label, prediction in zip(labels, predictions):
        expected[label, prediction] += 1
    np.testing.assert_array_equal(confusion_matrix(labels, predictions, 7), expected)
    with pytest.raises(ValueError, match="labels must lie in"):
        confusion_matrix([7], [0], 7)


def test_evaluate_matches_a_direct_computation():
    trainer = _setup(epochs=1)
    trainer.fit()
    model, loader = trainer.model, trainer.val_loader
    model.train()
    result = evaluate(model, loader, num_classes=4)
    assert model.training  # evaluate restores the mode it found
    model.eval()
    logits = np.concatenate([model(images).data for images, _ in loader]).astype(np.float64)
    labels = loader.dataset.tensors[1]
    log_probs = logits - logits.max(1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(1, keepdims=True))
    assert result["loss"] == pytest.approx(-log_probs[np.arange(len(labels)), labels].mean(), rel=1e-5)
    assert result["top1"] == np.mean(logits.argmax(1) == labels)
    assert result["top5"] == 1.0  # 4 classes
    np.testing.assert_array_equal(result["confusion"], confusion_matrix(labels, logits.argmax(1), 4))


def test_evaluate_records_no_graph():
    trainer = _setup(epochs=1)
    model = trainer.model
    model.zero_grad()
    evaluate(model, trainer.val_loader)
    assert all(param.grad is None for param in model.parameters())
    with cnnkit.no_grad():
        out = model(cnnkit.randn(2, 1, 8, 8))
    assert out.grad_fn is None


def test_lenet5_learns_real_mnist_digits(mnist_dir):
    from cnnkit import data
    from cnnkit.data import transforms

    info = data.dataset_info("mnist")
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(info["mean"], info["std"])])
    train_set = data.load_dataset("mnist", root=mnist_dir, split="test[:384]", transform=transform)
    loader = data.DataLoader(train_set, batch_size=32, shuffle=True, seed=0)
    model = create("lenet5", num_classes=10, in_channels=1)
    assert sum(param.data.size for param in model.parameters()) == 61_706
    losses = []
    trainer = Trainer(model, optim.SGD(model.parameters(), lr=0.05, momentum=0.9), loader, epochs=3,
                      progress=False, log=None,
                      step_callback=lambda trainer, epoch, step, loss: losses.append(loss))
    history = trainer.fit()
    assert np.mean(losses[:3]) > 2.0  # chance level is ln(10) = 2.3
    assert history[-1]["train_loss"] < 0.5 * np.mean(losses[:3])


def test_extending_a_run_replans_the_schedule(tmp_path):
    def cosine_trainer(epochs, **options):
        trainer = _setup(epochs=epochs, out_dir=str(tmp_path), **options)
        trainer.scheduler = lr_scheduler.CosineAnnealingLR(trainer.optimizer, T_max=epochs)
        return trainer

    cosine_trainer(2).fit()
    extended = cosine_trainer(4, resume_scheduler=False)
    history = extended.fit(resume=tmp_path / "last.safetensors")
    lrs = [record["lr"] for record in history]
    # epochs 1-2 ran under a 2-epoch cosine; epochs 3-4 follow a 4-epoch cosine from its third step
    expected = [0.1 * (1 + np.cos(np.pi * epoch / 4)) / 2 for epoch in (2, 3)]
    np.testing.assert_allclose(lrs, [0.1, 0.05, *expected], rtol=1e-12)


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_only_on_a_terminal_and_plain_lines_without_tqdm(monkeypatch):
    from cnnkit.train import progress

    assert progress.Progress(4, "epoch 1/1", stream=io.StringIO()).bar is None  # not a terminal: silent
    assert progress.Progress(4, "epoch 1/1", enabled=False, stream=_Terminal()).bar is None
    terminal = _Terminal()
    bar = progress.Progress(4, "epoch 1/1", stream=terminal)
    assert bar.bar is not None
    for _ in range(2):
        bar.update(8, loss=0.5, correct=6)
    bar.bar.refresh()
    drawn = terminal.getvalue().split("\r")[-1]
    assert drawn.startswith("epoch 1/1:  50%") and "2/4 [" in drawn  # elapsed<ETA follows the counts
    assert re.search(r"\[\d\d:\d\d<\d\d:\d\d, ", drawn) and "loss 0.5000 acc 75.0%" in drawn and "img/s" in drawn
    bar.close()
    monkeypatch.setattr(progress, "_tqdm", lambda: None)
    monkeypatch.setattr(progress.Progress, "PLAIN_INTERVAL", 0.0)
    stream = _Terminal()
    plain = progress.Progress(4, "epoch 1/1", stream=stream)
    for _ in range(4):
        plain.update(8, loss=0.5, correct=6)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4 and lines[-1].startswith("epoch 1/1 4/4 loss 0.5000 acc 75.0%")


@pytest.mark.parametrize("name,epochs,expected", [
    ("step", 4, [1, 1, 0.1, 0.1]), ("step", 9, [1, 1, 1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01]),
    ("multistep", 4, [1, 1, 0.1, 0.01]), ("cosine", 2, [1, 0.5]), ("warmup-cosine", 3, [0.1, 1, 0.5]),
])
def test_named_schedules_over_the_epochs(name, epochs, expected):
    from cnnkit.train import make_scheduler

    optimizer = optim.SGD([cnnkit.Tensor(np.zeros(1), requires_grad=True)], lr=1.0)
    scheduler = make_scheduler(name, optimizer, epochs)
    lrs = []
    for _ in range(epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        scheduler.step()
    np.testing.assert_allclose(lrs, expected, rtol=1e-12)
