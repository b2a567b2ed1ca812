"""``evaluate(model, loader)``: mean loss, top-1/top-5 accuracy and confusion matrix, in eval mode without grad."""
from __future__ import annotations

import numpy as np

from .. import functional as F
from ..autograd import Tensor, no_grad
from .metrics import confusion_matrix, topk_correct
from .progress import Progress


def model_dtype(model):
    """The floating dtype of the model's first parameter (inputs are cast to it), or None."""
    for param in model.parameters():
        return param.dtype
    return None


def as_input(images, dtype):
    """A batch as a Tensor of the model's dtype (loaders yield float32)."""
    images = images if isinstance(images, Tensor) else Tensor(np.asarray(images))
    return images.to(dtype) if dtype is not None and images.dtype != dtype else images


def as_target(labels):
    """Labels as an int64 Tensor for the loss function."""
    return labels if isinstance(labels, Tensor) else Tensor(np.asarray(labels, dtype=np.int64))


def as_labels(labels):
    """Labels as an int64 array for the metrics."""
    return np.asarray(labels.data if isinstance(labels, Tensor) else labels, dtype=np.int64)


def evaluate(model, loader, num_classes=None, loss_fn=None, progress=False, description="eval", forward=None):
    """Return ``{"loss", "top1", "top5", "confusion", "count"}`` over ``loader`` (accuracies as fractions).

    ``loss`` is the sample-weighted mean of ``loss_fn`` (cross-entropy by default);
    ``confusion[t, p]`` counts samples of class ``t`` predicted as ``p``. ``forward`` computes the logits
    of a batch Tensor instead of ``model`` (e.g. ``cnnkit.inference.freeze(model)``).
    """
    loss_fn = F.cross_entropy if loss_fn is None else loss_fn
    forward = model if forward is None else forward
    was_training = model.training
    model.eval()
    dtype = model_dtype(model)
    loss_sum, count, top1, top5 = 0.0, 0, 0, 0
    confusion = None
    bar = Progress(loader_length(loader), description, enabled=progress)
    try:
        with no_grad():
            for images, labels in loader:
                logits = forward(as_input(images, dtype))
                batch_loss = float(loss_fn(logits, as_target(labels)).item())
                labels = as_labels(labels)
                scores = logits.data
                if num_classes is None:
                    num_classes = scores.shape[1]
                if confusion is None:
                    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
                predictions = scores.argmax(axis=1)
                confusion += confusion_matrix(labels, predictions, num_classes)
                batch_top1 = int((predictions == labels).sum())
                top1 += batch_top1
                top5 += int(topk_correct(scores, labels, 5).sum())
                loss_sum += batch_loss * len(labels)
                count += len(labels)
                bar.update(len(labels), batch_loss, batch_top1)
    finally:
        bar.close()
        model.train(was_training)
    if count == 0:
        raise ValueError("evaluate: the loader yielded no samples; check the split (e.g. 'test[8000:]')")
    return {"loss": loss_sum / count, "top1": top1 / count, "top5": top5 / count, "confusion": confusion,
            "count": count}


def loader_length(loader):
    """``len(loader)`` in batches, or None for loaders without a length."""
    try:
        return len(loader)
    except TypeError:
        return None
