"""``Trainer``/``fit``: the epoch loop with progress, metrics.jsonl, checkpoints, exact resume and early stopping."""
from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import threading
import time

from .. import backend
from .. import functional as F
from ..io import load_checkpoint, save_checkpoint
from ..nn.utils import fuse
from ..optim.lr_scheduler import ReduceLROnPlateau
from .evaluate import as_input, as_labels, as_target, evaluate, loader_length, model_dtype
from .progress import Progress

# monitored metric -> True when larger is better
MONITORS = {"val_loss": False, "val_top1": True, "train_loss": False, "train_top1": True}
METRICS_FILE, LAST_CHECKPOINT, BEST_CHECKPOINT = "metrics.jsonl", "last.safetensors", "best.safetensors"


class Trainer:
    """Train ``model`` for ``epochs`` epochs, evaluating on ``val_loader`` after each one.

    With ``out_dir`` every epoch appends a line to ``metrics.jsonl`` and writes ``last.safetensors``;
    ``best.safetensors`` is written whenever validation top-1 improves. ``fit(resume=path)``
    continues from a checkpoint (weights, optimizer, scheduler, RNG, epoch, early-stopping state)
    and reproduces the uninterrupted run's losses exactly, as loaders shuffle by epoch
    (``set_epoch``). ``patience`` stops training after that many epochs without improvement of
    ``monitor`` (``val_loss`` or ``val_top1``). ``step_callback(trainer, epoch, step, loss)`` runs
    after every optimizer step; ``extra`` is saved in every checkpoint (class names, data info).

    Ctrl-C (or ``request_stop()``) stops at the end of the current batch: with a loader that has
    ``state_dict`` (``cnnkit.data.DataLoader``) ``last.safetensors`` then records the position inside
    the epoch, so resuming continues from the next batch; a second Ctrl-C stops at once.
    """

    def __init__(self, model, optimizer, train_loader, val_loader=None, *, epochs=10, scheduler=None,
                 loss_fn=None, out_dir=None, num_classes=None, patience=None, monitor="val_loss", progress=True,
                 extra=None, log=print, step_callback=None, handle_interrupt=True, resume_scheduler=True):
        if monitor not in MONITORS:
            raise ValueError(f"Trainer: monitor must be one of {sorted(MONITORS)}, got {monitor!r}")
        if val_loader is None and monitor.startswith("val_"):
            monitor = monitor.replace("val_", "train_")  # nothing else to watch without validation data
        if patience is not None and patience < 1:
            raise ValueError(f"Trainer: patience must be a positive number of epochs or None, got {patience}")
        # BatchNorm + ReLU pairs run as one op (nn.utils.fuse): the same values, one memory pass less each way
        self.model, self.optimizer, self.scheduler = fuse(model), optimizer, scheduler
        self.train_loader, self.val_loader = train_loader, val_loader
        self.epochs, self.num_classes, self.patience, self.monitor = epochs, num_classes, patience, monitor
        self.loss_fn = F.cross_entropy if loss_fn is None else loss_fn
        self.out_dir, self.progress, self.extra = out_dir, progress, dict(extra or {})
        self.log = log or (lambda *args, **kwargs: None)
        self.step_callback, self.handle_interrupt = step_callback, handle_interrupt
        self.resume_scheduler = resume_scheduler
        self.stop_requested = False
        self._partial = None  # where an interrupted epoch stopped: its batch and running sums
        self.history = []
        self.best_top1 = self.best_epoch = self.best_monitor = None
        self.stale_epochs = 0
        self.stopped_early = False

    # ------------------------------------------------------------------ paths
    def _path(self, name):
        return None if self.out_dir is None else os.path.join(self.out_dir, name)

    @property
    def last_checkpoint(self):
        return self._path(LAST_CHECKPOINT)

    @property
    def best_checkpoint(self):
        path = self._path(BEST_CHECKPOINT)
        return path if path is not None and os.path.exists(path) else self.last_checkpoint

    # ------------------------------------------------------------------ state
    def _trainer_state(self):
        state = {"best_top1": self.best_top1, "best_epoch": self.best_epoch, "best_monitor": self.best_monitor,
                 "stale_epochs": self.stale_epochs, "monitor": self.monitor, "history": self.history}
        if hasattr(self.train_loader, "state_dict"):
            state["train_loader"] = self.train_loader.state_dict()  # its seed (random if unset) and position
        if self._partial is not None:
            state["partial_epoch"] = self._partial
        return state

    def _resume(self, path):
        replan = self.scheduler is not None and not self.resume_scheduler
        fresh_lrs = [group["lr"] for group in self.optimizer.param_groups]
        state = load_checkpoint(path, self.model, self.optimizer, None if replan else self.scheduler)
        if replan:
            self._replay_schedule(fresh_lrs, state["epoch"] or 0)
        if state["rng_state"] is not None:
            backend.set_rng_state(state["rng_state"])
        saved = state["extra"].get("trainer", {})
        self.history = list(saved.get("history", []))
        self.best_top1, self.best_epoch = saved.get("best_top1"), saved.get("best_epoch")
        self.best_monitor, self.stale_epochs = saved.get("best_monitor"), saved.get("stale_epochs", 0)
        epoch = state["epoch"] or 0
        self._partial = saved.get("partial_epoch")
        if "train_loader" in saved and hasattr(self.train_loader, "load_state_dict"):
            position = {"epoch": epoch, "batch": self._partial["batch"] if self._partial else 0}
            self.train_loader.load_state_dict({**saved["train_loader"], **position})
        where = f", in epoch {epoch + 1} at batch {self._partial['batch']}" if self._partial else ""
        self.log(f"resumed from {path} after epoch {epoch}{where}")
        return epoch

    def _replay_schedule(self, fresh_lrs, epochs_done):
        """Put the (new, unloaded) scheduler where it would be after ``epochs_done`` epochs.

        For a run extended to more epochs: the schedule is planned again for the new length
        rather than continuing the old one past its end.
        """
        for group, lr in zip(self.optimizer.param_groups, fresh_lrs):
            group["lr"] = lr
        if isinstance(self.scheduler, ReduceLROnPlateau):
            return  # it has no plan to replay: it reacts to the validation loss
        for _ in range(epochs_done):
            self.scheduler.step()

    def _save(self, path, epoch):
        extra = {**self.extra, "trainer": self._trainer_state()}
        save_checkpoint(path, self.model, self.optimizer, self.scheduler, epoch=epoch, extra=extra)

    def _remove_unfinished_writes(self):
        """Delete the temporary files of checkpoint writes that a killed run left behind (never renamed)."""
        for name in os.listdir(self.out_dir):
            if name.endswith(".tmp") and name.startswith((f".{LAST_CHECKPOINT}.", f".{BEST_CHECKPOINT}.")):
                os.remove(os.path.join(self.out_dir, name))

    def _write_metrics_file(self):
        """Rewrite metrics.jsonl from the history (after a resume it drops epochs that were redone)."""
        path = self._path(METRICS_FILE)
        temp_path = path + ".tmp"
        with open(temp_path, "w", encoding="utf-8") as file:
            file.writelines(json.dumps(record) + "\n" for record in self.history)
        os.replace(temp_path, path)

    def _append_metrics(self, record):
        with open(self._path(METRICS_FILE), "a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")

    # ------------------------------------------------------------------ interruption
    def request_stop(self):
        """Stop at the end of the current batch, saving the position in the epoch; ``fit`` raises KeyboardInterrupt."""
        self.stop_requested = True

    @contextlib.contextmanager
    def _interrupt_handler(self):
        """Route the first Ctrl-C to ``request_stop``; the second one interrupts at once."""
        if not self.handle_interrupt or threading.current_thread() is not threading.main_thread() \
                or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            yield  # someone else handles SIGINT (or it is ignored): leave it alone
            return

        def on_interrupt(signum, frame):
            if self.stop_requested:
                raise KeyboardInterrupt
            self.request_stop()
            self.log("\nstopping after this batch (press Ctrl-C again to stop at once)")

        signal.signal(signal.SIGINT, on_interrupt)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def _stop_now(self, epoch, batch, sums):
        """Save where the epoch stopped (when the loader can resume mid-epoch), then raise KeyboardInterrupt."""
        self.stop_requested = False
        resumable = hasattr(self.train_loader, "state_dict") and hasattr(self.train_loader, "load_state_dict")
        if self.out_dir is not None and resumable:
            loss_sum, correct, count, seconds = sums
            self._partial = {"epoch": epoch, "batch": batch, "loss_sum": loss_sum, "correct": correct,
                             "count": count, "seconds": seconds}
            self._save(self.last_checkpoint, epoch)
            self._partial = None
            raise KeyboardInterrupt(f"stopped in epoch {epoch + 1} after batch {batch}; "
                                    f"{self.last_checkpoint} continues from there")
        raise KeyboardInterrupt(f"stopped in epoch {epoch + 1} after batch {batch}")

    # ------------------------------------------------------------------ loop
    def fit(self, resume=None):
        """Run the remaining epochs (all, or those after the ``resume`` checkpoint); return the history."""
        self.stop_requested = False
        start = self._resume(resume) if resume is not None else 0
        if self.out_dir is not None:
            os.makedirs(self.out_dir, exist_ok=True)
            if resume is not None:
                self._remove_unfinished_writes()
            self._write_metrics_file()
        with self._interrupt_handler():
            self._fit_epochs(start)
        return self.history

    def _fit_epochs(self, start):
        for epoch in range(start, self.epochs):
            record = self._run_epoch(epoch)
            self.history.append(record)
            improved_top1 = self._track_best(record)
            stop = self._track_patience(record)
            if self.out_dir is not None:
                self._append_metrics(record)
                if improved_top1:
                    self._save(self._path(BEST_CHECKPOINT), epoch + 1)
                self._save(self.last_checkpoint, epoch + 1)
            self.log(self._epoch_line(record, improved_top1))
            if stop:
                self.stopped_early = True
                self.log(f"early stopping: {self.monitor} has not improved for {self.stale_epochs} epochs "
                         f"(best {self.best_monitor:.4f})")
                break
            if self.stop_requested and epoch + 1 < self.epochs:
                self.stop_requested = False
                raise KeyboardInterrupt(f"stopped after epoch {epoch + 1}; {self.last_checkpoint} continues there")

    def _run_epoch(self, epoch):
        started = time.perf_counter()
        earlier_seconds = self._partial["seconds"] if self._partial is not None else 0.0
        lr = float(self.optimizer.param_groups[0]["lr"])
        train_loss, train_top1, images = self._train_one_epoch(epoch, started)
        record = {"epoch": epoch + 1, "train_loss": train_loss, "train_top1": train_top1,
                  "val_loss": None, "val_top1": None, "val_top5": None, "lr": lr}
        if self.val_loader is not None:
            result = evaluate(self.model, self.val_loader, self.num_classes, self.loss_fn, progress=self.progress,
                              description=f"epoch {epoch + 1}/{self.epochs} val")
            record.update(val_loss=result["loss"], val_top1=result["top1"], val_top5=result["top5"])
        if self.scheduler is not None:
            if isinstance(self.scheduler, ReduceLROnPlateau):
                self.scheduler.step(record["val_loss"] if self.val_loader is not None else train_loss)
            else:
                self.scheduler.step()
        seconds = time.perf_counter() - started + earlier_seconds
        record.update(seconds=round(seconds, 3), images_per_second=round(images / max(seconds, 1e-9), 1))
        return record

    def _train_one_epoch(self, epoch, started):
        partial, self._partial = self._partial, None
        if partial is not None:  # the loader was positioned by _resume
            first_step, loss_sum, correct, count = partial["batch"], partial["loss_sum"], partial["correct"], \
                partial["count"]
        else:
            if hasattr(self.train_loader, "set_epoch"):
                self.train_loader.set_epoch(epoch)  # the shuffle depends on (seed, epoch) only: resumable
            first_step, loss_sum, correct, count = 0, 0.0, 0, 0
        self.model.train()
        dtype = model_dtype(self.model)
        bar = Progress(loader_length(self.train_loader), f"epoch {epoch + 1}/{self.epochs}", enabled=self.progress,
                       initial=first_step)
        try:
            for step, (images, labels) in enumerate(self.train_loader, start=first_step):
                logits = self.model(as_input(images, dtype))
                loss = self.loss_fn(logits, as_target(labels))
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
                loss_value = float(loss.item())
                if not math.isfinite(loss_value):
                    lr = self.optimizer.param_groups[0]["lr"]
                    raise FloatingPointError(f"the training loss became {loss_value} at epoch {epoch + 1}, step "
                                             f"{step + 1}: the learning rate {lr:g} is probably too high; "
                                             f"try {lr / 10:g}")
                labels = as_labels(labels)
                batch_correct = int((logits.data.argmax(axis=1) == labels).sum())
                loss_sum += loss_value * len(labels)
                correct += batch_correct
                count += len(labels)
                bar.update(len(labels), loss_value, batch_correct)
                if self.step_callback is not None:
                    self.step_callback(self, epoch, step, loss_value)
                if self.stop_requested and step + 1 < (loader_length(self.train_loader) or math.inf):
                    seconds = time.perf_counter() - started + (partial["seconds"] if partial else 0.0)
                    self._stop_now(epoch, step + 1, (loss_sum, correct, count, seconds))
        finally:
            bar.close()
        if count == 0:
            raise ValueError("Trainer: the training loader yielded no batches (empty split, or drop_last with "
                             "fewer samples than one batch)")
        return loss_sum / count, correct / count, count

    def _track_best(self, record):
        top1 = record["val_top1"] if record["val_top1"] is not None else record["train_top1"]
        if self.best_top1 is None or top1 > self.best_top1:
            self.best_top1, self.best_epoch = top1, record["epoch"]
            return True
        return False

    def _track_patience(self, record):
        value, larger_is_better = record[self.monitor], MONITORS[self.monitor]
        if self.best_monitor is None or (value > self.best_monitor if larger_is_better else value < self.best_monitor):
            self.best_monitor, self.stale_epochs = value, 0
        else:
            self.stale_epochs += 1
        return self.patience is not None and self.stale_epochs >= self.patience

    def _epoch_line(self, record, improved):
        line = (f"epoch {record['epoch']}/{self.epochs}  train loss {record['train_loss']:.4f} "
                f"acc {100 * record['train_top1']:.2f}%")
        if record["val_loss"] is not None:
            line += (f"  val loss {record['val_loss']:.4f} top-1 {100 * record['val_top1']:.2f}% "
                     f"top-5 {100 * record['val_top5']:.2f}%")
        line += f"  lr {record['lr']:.3g}  {record['seconds']:.1f}s ({record['images_per_second']:.0f} img/s)"
        return line + ("  *best" if improved else "")


def fit(model, optimizer, train_loader, val_loader=None, *, epochs=10, resume=None, **options):
    """Train with a ``Trainer`` (same keyword options) and return its per-epoch history."""
    return Trainer(model, optimizer, train_loader, val_loader, epochs=epochs, **options).fit(resume=resume)
