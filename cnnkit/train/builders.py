"""Optimizers and learning-rate schedules by name (``'sgd'``, ``'cosine'``...), as the ``cnnkit train`` flags choose."""
from __future__ import annotations

import math

from .. import optim
from ..optim import lr_scheduler

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("none", "step", "multistep", "cosine", "warmup-cosine", "plateau")


def make_optimizer(name, params, lr, momentum=0.9, weight_decay=0.0):
    """An optimizer by name; ``momentum`` applies to SGD and RMSprop only."""
    params = list(params)
    if name == "sgd":
        return optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "rmsprop":
        return optim.RMSprop(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def make_scheduler(name, optimizer, epochs, warmup_epochs=None):
    """A per-epoch learning-rate schedule by name, sized for ``epochs`` epochs (``'none'`` gives None).

    step: x0.1 every third of training (rounded up); multistep: x0.1 at 50% and 75%; cosine: to 0 over all epochs;
    warmup-cosine: linear warm-up from 10% for ``warmup_epochs`` (default: 10% of epochs, at least 1),
    then cosine; plateau: x0.1 after 2 epochs without a lower validation loss.
    """
    if name in (None, "none"):
        return None
    if name == "step":
        # rounded up: 4 epochs decay once (after 2), not after every epoch
        return lr_scheduler.StepLR(optimizer, step_size=max(1, math.ceil(epochs / 3)), gamma=0.1)
    if name == "multistep":
        milestones = sorted({max(1, epochs // 2), max(1, (3 * epochs) // 4)})
        return lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    if name == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs))
    if name == "warmup-cosine":
        warmup = max(1, epochs // 10) if warmup_epochs is None else warmup_epochs
        warmup = min(warmup, max(epochs - 1, 0))
        if warmup == 0:
            return lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs))
        return lr_scheduler.SequentialLR(
            optimizer,
            [lr_scheduler.LinearLR(optimizer, start_factor=0.1, total_iters=warmup),
             lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs - warmup))],
            milestones=[warmup])
    if name == "plateau":
        return lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.1, patience=2)
    raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
