"""``Trainer``/``fit``: the epoch loop with progress, metrics.jsonl, checkpoints, exact resume and early stopping."""
from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import threading
import time

import numpy as np

from .. import backend, comm
from .. import functional as F
from ..data import DistributedSampler
from ..io import load_checkpoint, save_checkpoint
from ..io.files import naming_path, remove_stale_temp_files
from ..nn.parallel import DistributedDataParallel
from ..nn.utils import fuse
from ..optim.lr_scheduler import ReduceLROnPlateau
from .evaluate import as_input, as_labels, as_target, evaluate, loader_length, model_dtype
from .progress import Progress

# monitored metric -> True when larger is better
MONITORS = {"val_loss": False, "val_top1": True, "train_loss": False, "train_top1": True}
METRICS_FILE, LAST_CHECKPOINT, BEST_CHECKPOINT = "metrics.jsonl", "last.safetensors", "best.safetensors"


class StoppedCleanly(KeyboardInterrupt):
    """Training stopped on request at a step boundary (every process at the same one), after saving."""


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
    the epoch, so resuming continues from the next batch; a second Ctrl-C stops at once. SIGTERM does the same.

    Started as one of several MPI processes (``mpiexec``), each process trains a ``DistributedDataParallel``
    copy on its loader's share of every batch (a ``DistributedSampler``), losses, accuracies and validation
    results are summed over processes, a stop request on any process stops all at the same step, and only
    rank 0 writes files (then every process waits for it). Epoch lines go to ``log`` and the progress bar on
    every rank: pass ``log=None, progress=False`` on the others to keep them quiet, as ``cnnkit train`` does.
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
        self.world_size, self.is_writer = comm.world_size(), comm.rank() == 0
        if isinstance(model, DistributedDataParallel):  # wrapped by the caller: checkpoints hold the inner model
            self.model, self.forward_model = model.module, model
        else:
            # the trainer keeps no gradient past its step, so they can stay in DDP's buckets without a copy
            self.forward_model = DistributedDataParallel(model, gradient_as_bucket_view=True) \
                if self.world_size > 1 else model
        if self.world_size > 1 and self.is_writer and \
                not isinstance(getattr(train_loader, "sampler", None), DistributedSampler):
            self.log(f"note: {self.world_size} processes train, but the training loader has no DistributedSampler: "
                     "every process then sees the same batches (DataLoader(..., sampler=DistributedSampler(data)))")

    # ------------------------------------------------------------------ paths
    def _path(self, name):
        return None if self.out_dir is None else os.path.join(self.out_dir, name)

    def _writes(self):
        return self.out_dir is not None and self.is_writer

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
        """Rank 0 writes the checkpoint (atomically); every process waits until it is complete."""
        if self.is_writer:
            extra = {**self.extra, "trainer": self._trainer_state()}
            save_checkpoint(path, self.model, self.optimizer, self.scheduler, epoch=epoch, extra=extra)
        comm.barrier()

    def _remove_unfinished_writes(self):
        """Delete the temporary files of checkpoint writes that a killed run left behind (never renamed)."""
        for name in (LAST_CHECKPOINT, BEST_CHECKPOINT):
            remove_stale_temp_files(self._path(name))

    def _write_metrics_file(self):
        """Rewrite metrics.jsonl from the history (after a resume it drops epochs that were redone)."""
        path = self._path(METRICS_FILE)
        temp_path = path + ".tmp"
        try:
            with open(temp_path, "w", encoding="utf-8") as file:
                file.writelines(json.dumps(record) + "\n" for record in self.history)
            os.replace(temp_path, path)
        except OSError as error:  # a full disk names the file, as checkpoint writes do
            raise naming_path(error, path) from None

    def _append_metrics(self, record):
        if not self.is_writer:
            return
        path = self._path(METRICS_FILE)
        try:
            with open(path, "a", encoding="utf-8") as file:
                file.write(json.dumps(record) + "\n")
        except OSError as error:
            raise naming_path(error, path) from None

    # ------------------------------------------------------------------ interruption
    def request_stop(self):
        """Stop at the end of the current batch, saving the position in the epoch; ``fit`` raises KeyboardInterrupt."""
        self.stop_requested = True

    @contextlib.contextmanager
    def _interrupt_handler(self):
        """Route the first Ctrl-C or SIGTERM to ``request_stop``; a second one interrupts at once."""
        defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
        if not self.handle_interrupt or threading.current_thread() is not threading.main_thread():
            yield
            return
        # signals someone else handles (or ignores) are left alone
        ours = [number for number, default in defaults.items() if signal.getsignal(number) is default]

        def on_interrupt(signum, frame):
            if self.stop_requested:
                raise KeyboardInterrupt
            self.request_stop()
            self.log("\nstopping after this batch (press Ctrl-C again to stop at once)")

        for number in ours:
            signal.signal(number, on_interrupt)
        try:
            yield
        finally:
            for number in ours:
                signal.signal(number, defaults[number])

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
            raise StoppedCleanly(f"stopped in epoch {epoch + 1} after batch {batch}; "
                                 f"{self.last_checkpoint} continues from there")
        raise StoppedCleanly(f"stopped in epoch {epoch + 1} after batch {batch}")

    # ------------------------------------------------------------------ loop
    def fit(self, resume=None):
        """Run the remaining epochs (all, or those after the ``resume`` checkpoint); return the history."""
        self.stop_requested = False
        start = self._resume(resume) if resume is not None else 0
        if self._writes():
            os.makedirs(self.out_dir, exist_ok=True)
            self._remove_unfinished_writes()  # a fresh run in the same folder cleans up after a killed one too
            self._write_metrics_file()
        comm.barrier()
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
            if self._any_stop_requested() and epoch + 1 < self.epochs:
                self.stop_requested = False
                raise StoppedCleanly(f"stopped after epoch {epoch + 1}; {self.last_checkpoint} continues there")

    def _run_epoch(self, epoch):
        started = time.perf_counter()
        earlier_seconds = self._partial["seconds"] if self._partial is not None else 0.0
        lr = float(self.optimizer.param_groups[0]["lr"])
        train_loss, train_top1, images = self._train_one_epoch(epoch, started)
        record = {"epoch": epoch + 1, "train_loss": train_loss, "train_top1": train_top1,
                  "val_loss": None, "val_top1": None, "val_top5": None, "lr": lr}
        if self.val_loader is not None:
            record.update(self._validate(epoch))
        if self.scheduler is not None:
            if isinstance(self.scheduler, ReduceLROnPlateau):
                self.scheduler.step(record["val_loss"] if self.val_loader is not None else train_loss)
            else:
                self.scheduler.step()
        seconds = time.perf_counter() - started + earlier_seconds
        record.update(seconds=round(seconds, 3), images_per_second=round(images / max(seconds, 1e-9), 1))
        return record

    def _validate(self, epoch):
        """Validation loss and accuracies; with several processes each evaluates its shard and the sums are added."""
        if self.world_size == 1:
            result = evaluate(self.model, self.val_loader, self.num_classes, self.loss_fn, progress=self.progress,
                              description=f"epoch {epoch + 1}/{self.epochs} val")
            return {"val_loss": result["loss"], "val_top1": result["top1"], "val_top5": result["top5"]}
        sums = np.zeros(4)
        if loader_length(self.val_loader) != 0:  # a process may get no validation samples when there are few
            result = evaluate(self.model, self.val_loader, self.num_classes, self.loss_fn, progress=self.progress,
                              description=f"epoch {epoch + 1}/{self.epochs} val")
            sums[:] = [result[key] * result["count"] for key in ("loss", "top1", "top5")] + [result["count"]]
        loss_sum, top1, top5, count = comm.all_reduce(sums)
        if count == 0:
            raise ValueError("Trainer: the validation loader yielded no samples on any process")
        return {"val_loss": loss_sum / count, "val_top1": top1 / count, "val_top5": top5 / count}

    def _any_stop_requested(self):
        """Whether any process was asked to stop (every process gets the same answer)."""
        flag = np.array([1.0 if self.stop_requested else 0.0])
        return bool(comm.all_reduce(flag, op="max")[0])

    def _step_totals(self, loss_value, correct, count):
        """(loss sum, correct, count, stop) of this step over all processes, in one collective."""
        if self.world_size == 1:
            return loss_value * count, correct, count, self.stop_requested
        totals = comm.all_reduce(np.array([loss_value * count, correct, count, 1.0 if self.stop_requested else 0.0]))
        return float(totals[0]), int(totals[1]), int(totals[2]), bool(totals[3])

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
                logits = self.forward_model(as_input(images, dtype))
                loss = self.loss_fn(logits, as_target(labels))
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
                labels = as_labels(labels)
                loss_value = float(loss.item())
                batch_loss, batch_correct, batch_count, stop = self._step_totals(
                    loss_value, int((logits.data.argmax(axis=1) == labels).sum()), len(labels))
                if self.world_size > 1:
                    loss_value = batch_loss / batch_count  # the mean over the global batch
                if not math.isfinite(loss_value):
                    lr = self.optimizer.param_groups[0]["lr"]
                    raise FloatingPointError(f"the training loss became {loss_value} at epoch {epoch + 1}, step "
                                             f"{step + 1}: the learning rate {lr:g} is probably too high; "
                                             f"try {lr / 10:g}")
                loss_sum += batch_loss
                correct += batch_correct
                count += batch_count
                bar.update(batch_count, loss_value, batch_correct)
                if self.step_callback is not None:
                    self.step_callback(self, epoch, step, loss_value)
                # with several processes only the stop requests gathered by the step's collective count, so
                # that all stop at the same step; alone, a request from step_callback counts at once
                stop = stop or (self.world_size == 1 and self.stop_requested)
                if stop and step + 1 < (loader_length(self.train_loader) or math.inf):
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
