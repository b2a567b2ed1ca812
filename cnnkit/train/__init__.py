"""Training: the ``Trainer`` epoch loop (checkpoints, exact resume, early stopping), ``evaluate`` and metrics."""
from .builders import OPTIMIZERS, SCHEDULES, make_optimizer, make_scheduler
from .evaluate import evaluate
from .metrics import confusion_matrix, format_confusion_matrix, topk_accuracy, topk_correct
from .progress import Progress
from .trainer import BEST_CHECKPOINT, LAST_CHECKPOINT, METRICS_FILE, Trainer, fit

__all__ = ["Trainer", "fit", "evaluate", "confusion_matrix", "format_confusion_matrix", "topk_correct",
           "topk_accuracy", "Progress", "make_optimizer", "make_scheduler", "OPTIMIZERS", "SCHEDULES",
           "METRICS_FILE", "LAST_CHECKPOINT", "BEST_CHECKPOINT"]
