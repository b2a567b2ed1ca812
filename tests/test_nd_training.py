"""A small 1-D CNN and a small 3-D CNN train from the Python API: their loss falls on synthetic tasks."""
import numpy as np

import cnnkit
import cnnkit.functional as F
from cnnkit import nn, optim


def _waves(rng, count, length=64):
    """Sine (label 0) or square (label 1) waves of random frequency, phase and amplitude, with noise: (N, 1, L)."""
    labels = rng.integers(0, 2, count)
    t = np.arange(length) / length
    frequency = rng.uniform(2, 5, (count, 1))
    phase = rng.uniform(0, 2 * np.pi, (count, 1))
    sine = np.sin(2 * np.pi * frequency * t + phase)
    waves = np.where(labels[:, None] == 1, np.sign(sine), sine) * rng.uniform(0.5, 1.5, (count, 1))
    waves += 0.1 * rng.standard_normal(waves.shape)
    return waves[:, None, :].astype(np.float32), labels


def _volumes(rng, count, size=8):
    """A bright 3x3x3 cube in the front half of the depth axis (label 0) or the back half (label 1): (N, 1, D, H, W)."""
    labels = rng.integers(0, 2, count)
    volumes = 0.2 * rng.standard_normal((count, 1, size, size, size))
    for index, label in enumerate(labels):
        depth = rng.integers(0, size // 2 - 2) + label * size // 2
        row, col = rng.integers(0, size - 2, 2)
        volumes[index, 0, depth:depth + 3, row:row + 3, col:col + 3] += 1.0
    return volumes.astype(np.float32), labels


def _train(model, make_batch, steps, lr):
    """Adam on fresh batches; returns the losses of every step."""
    rng = np.random.default_rng(0)
    optimizer = optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        inputs, labels = make_batch(rng, 32)
        loss = F.cross_entropy(model(cnnkit.tensor(inputs)), cnnkit.tensor(labels))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.item()))
    return losses


def test_conv1d_network_learns_sine_versus_square_waves():
    model = nn.Sequential(nn.Conv1d(1, 8, 5, stride=2, padding=2), nn.ReLU(),
                          nn.Conv1d(8, 8, 5, stride=2, padding="same"), nn.ReLU(),
                          nn.Flatten(), nn.Linear(8 * 16, 2))
    losses = _train(model, _waves, steps=40, lr=0.01)
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses


def test_conv3d_network_learns_where_the_cube_is():
    model = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(),
                          nn.Conv3d(4, 4, 3, stride=2, padding=1), nn.ReLU(),
                          nn.Flatten(), nn.Linear(4 * 4 * 4 * 4, 2))
    losses = _train(model, _volumes, steps=20, lr=0.01)
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses
