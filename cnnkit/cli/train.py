"""``cnnkit train``: train a model on a data set, with progress, metrics.jsonl, checkpoints and resume."""
from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import time

import numpy as np

from .. import backend, comm, data, distributed, nn
from ..io import read_metadata, resolve_checkpoint, write_latest
from ..models import create, is_model, model_entrypoint
from ..train import LAST_CHECKPOINT, OPTIMIZERS, SCHEDULES, Trainer, make_optimizer, make_scheduler
from ..train.pipeline import check_input_size, describe_data, image_side, normalizing_transform
from ..train.trainer import StoppedCleanly
from . import numbers

# Defaults that train LeNet-5 on the built-in shapes set to >= 97% test accuracy in under two minutes on 2 cores,
# and on 8,000 MNIST digits to about 99% in 10 epochs.
DEFAULTS = {"model": "lenet5", "dataset": "shapes", "data_dir": None, "train_split": "train", "val_split": "test",
            "epochs": 5, "batch_size": 64, "lr": None, "optimizer": "sgd", "momentum": 0.9, "weight_decay": 0.0,
            "schedule": "cosine", "warmup_epochs": None, "seed": 0, "patience": None, "monitor": "val_loss",
            "small_input": False, "image_size": None, "options": [], "sync_bn": False, "workers": 0}
# Adam-type steps are normalized by the gradient's size, so they need a far smaller rate than SGD's
DEFAULT_LR = {"sgd": 0.05, "adam": 0.001, "adamw": 0.001, "rmsprop": 0.001}

EXAMPLES = """\
examples:
  cnnkit train
      LeNet-5 on the built-in shapes data set (no download), then 'cnnkit eval runs/latest'
  cnnkit train --dataset mnist --data-dir ../shared/data/mnist \\
               --train-split 'test[:8000]' --val-split 'test[8000:]' --epochs 10
      LeNet-5 on 8,000 MNIST digits, validated on the 2,000 others
  cnnkit train --model simple_cnn --dataset cifar10 --data-dir data/cifar10 --optimizer adamw --lr 0.002
  cnnkit train --dataset folder --data-dir my_photos --image-size 64 --model simple_cnn \\
               --train-split 'train[:80%]' --val-split 'train[80%:]'
      images in my_photos/<class name>/*.png|jpg, 80% to train and 20% to validate
  cnnkit train --model lenet5 --option activation=sigmoid --option pool=avg
      the historical LeNet-5 (sigmoid and average pooling)
  cnnkit train --resume runs/latest
      continue an interrupted run exactly where it stopped (Ctrl-C saves the position in the epoch)
  cnnkit train --resume runs/latest --epochs 20
      train a finished run for more epochs (the learning-rate schedule is planned for 20)
  mpiexec -n 2 cnnkit train --dataset mnist --data-dir ../shared/data/mnist --train-split 'test[:8000]' \
               --val-split 'test[8000:]' --out runs/mnist-2
      data-parallel on 2 processes (pip install 'cnnkit[mpi]'): --batch-size is the global batch, split
      over the processes; --sync-bn makes batch norm use the global batch's statistics

Every run writes to --out (default runs/<model>-<dataset>-<time>, with runs/latest pointing at it):
metrics.jsonl (one JSON line per epoch), last.safetensors (every epoch) and best.safetensors
(best validation top-1).
"""


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "train", help="train a model (default: LeNet-5 on the built-in shapes data set)",
        description="Train a convolutional network, evaluating it on a validation split after every epoch.\n"
                    "With no options: LeNet-5 on the built-in shapes data set (no download), well under two minutes "
                    "on 2 CPU cores.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    model = parser.add_argument_group("model and data")
    model.add_argument("--model", help="model name, see 'cnnkit models' (default lenet5)")
    model.add_argument("--option", dest="options", action="append", metavar="KEY=VALUE",
                       help="a model option, e.g. activation=tanh or width=64 (repeatable)")
    model.add_argument("--small-input", action="store_true", default=None,
                       help="adapt ImageNet models to 28x28/32x32 images (smaller stem, no early downsampling)")
    model.add_argument("--dataset", help="shapes (built in), mnist, fashion-mnist, cifar10 or folder "
                                         "(default shapes)")
    model.add_argument("--data-dir", help="where the data set's files are (mnist, fashion-mnist, cifar10, folder); "
                                          "missing MNIST/CIFAR files are downloaded there when online "
                                          "(default ~/.cache/cnnkit/data/<dataset>)")
    model.add_argument("--image-size", type=numbers.image_side, metavar="PIXELS",
                       help="resize and centre-crop images to PIXELS x PIXELS (default: the data set's size; "
                            "for folders, the first image's)")
    model.add_argument("--train-split", help="training split, with TFDS slices: 'train', 'train[:90%%]', "
                                             "'test[:8000]' (default train)")
    model.add_argument("--val-split", help="validation split evaluated after each epoch, e.g. 'test', "
                                           "'test[8000:]' or 'none' (default test)")
    optimization = parser.add_argument_group("optimization")
    optimization.add_argument("--epochs", type=numbers.epochs,
                              help="number of passes over the training split (default 5)")
    optimization.add_argument("--batch-size", type=numbers.batch_size, help="images per optimizer step (default 64)")
    optimization.add_argument("--lr", type=numbers.float_range(0, low_open=True),
                              help="initial learning rate (default 0.05 for sgd, 0.001 for adam, adamw, rmsprop)")
    optimization.add_argument("--optimizer", choices=OPTIMIZERS, help="default sgd (with momentum)")
    optimization.add_argument("--momentum", type=numbers.float_range(0, 1, high_open=True),
                              help="momentum of sgd/rmsprop (default 0.9)")
    optimization.add_argument("--weight-decay", type=numbers.float_range(0), help="L2 penalty (default 0)")
    optimization.add_argument("--schedule", choices=SCHEDULES,
                              help="learning-rate schedule over the epochs (default cosine)")
    optimization.add_argument("--warmup-epochs", type=numbers.non_negative_int, help="warm-up length for warmup-cosine")
    optimization.add_argument("--patience", type=numbers.positive_int,
                              help="stop early after this many epochs without improvement of --monitor "
                                   "(default: never)")
    optimization.add_argument("--monitor", choices=("val_loss", "val_top1"),
                              help="what --patience watches (default val_loss)")
    optimization.add_argument("--seed", type=numbers.int_range(0, 2**32 - 1),
                              help="random seed of initialization and shuffling (default 0)")
    run = parser.add_argument_group("run")
    run.add_argument("--out", help="run directory (default runs/<model>-<dataset>-<time>)")
    run.add_argument("--resume", metavar="CHECKPOINT",
                     help="continue from a checkpoint, run directory or runs/latest; settings not given "
                          "again are taken from the checkpoint")
    run.add_argument("--no-progress", action="store_true", help="no progress bar (one line per epoch only)")
    run.add_argument("--workers", type=numbers.non_negative_int, metavar="K",
                     help="load training batches in K worker processes (default 0: in the training process); "
                          "the batches are the same for any K")
    run.add_argument("--sync-bn", action="store_true", default=None,
                     help="under mpiexec: batch norm over the global batch (SyncBatchNorm) rather than each "
                          "process's share")
    parser.set_defaults(func=run_command)
    return parser


def _parse_option(text):
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"--option expects KEY=VALUE (for example activation=tanh), got {text!r}")
    try:
        return key.replace("-", "_"), json.loads(value)
    except json.JSONDecodeError:
        return key.replace("-", "_"), value  # a bare word such as tanh


def resolve_config(args, saved=None):
    """Settings for this run: given flags, else the resumed run's settings, else the defaults."""
    saved = saved or {}
    config = {}
    for key, default in DEFAULTS.items():
        given = getattr(args, key)
        config[key] = given if given is not None else saved.get(key, default)
    if config["lr"] is None:
        config["lr"] = DEFAULT_LR[config["optimizer"]]
    if config["epochs"] < 1 or config["batch_size"] < 1:
        raise ValueError("--epochs and --batch-size must be at least 1")
    if config["data_dir"] is not None:
        # absolute, so 'cnnkit eval' and '--resume' find the files from any working directory
        config["data_dir"] = os.path.abspath(os.path.expanduser(config["data_dir"]))
    return config


def _model_options(config, description, log):
    options = dict(_parse_option(text) for text in config["options"])
    known = is_model(config["model"])
    accepted = inspect.signature(model_entrypoint(config["model"])).parameters if known else {}
    if "image_size" in accepted and "image_size" not in options:
        options["image_size"] = image_side(description["image_size"])  # LeNet's classifier depends on it
    if config["small_input"]:
        if "small_input" in accepted:
            options["small_input"] = True
        else:
            log(f"note: {config['model']} has no small_input option (it is built for small images); ignored")
    unknown = sorted(set(options) - set(accepted)) if accepted else []
    if unknown and not any(p.kind == p.VAR_KEYWORD for p in accepted.values()):
        known = [name for name in accepted if name not in ("num_classes", "in_channels")]
        raise ValueError(f"{config['model']} has no option {', '.join(unknown)}; "
                         f"its options are: {', '.join(known) or 'none'}")
    return options


def _default_out(config):
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = os.path.join("runs", f"{config['model']}-{config['dataset']}-{stamp}")
    out, suffix = base, 1
    while os.path.exists(out):
        suffix += 1
        out = f"{base}-{suffix}"
    return out


def _load_split(config, split, transform):
    # shapes are drawn at the asked size rather than resized
    drawn = {"image_size": config["image_size"]} if config["image_size"] and config["dataset"] == "shapes" else {}
    # missing MNIST/CIFAR files are downloaded when online; offline, the error says where to put them
    return data.load_dataset(config["dataset"], root=config["data_dir"], split=split, transform=transform,
                             download=True, **drawn)


def train(config, out=None, resume=None, progress=True, log=print, saved_epochs=None):
    """Build data, model, optimizer and schedule from ``config`` and train; return the ``Trainer``.

    ``saved_epochs``: the epoch count of the run being resumed; a different ``config['epochs']``
    re-plans the learning-rate schedule for the new length.
    """
    backend.manual_seed(config["seed"])
    description = describe_data(config["dataset"], config["data_dir"], image_size=config["image_size"])
    transform = normalizing_transform(description)
    train_set = _load_split(config, config["train_split"], transform)
    description = describe_data(config["dataset"], config["data_dir"], train_set, image_size=config["image_size"])
    has_val = config["val_split"] not in (None, "", "none")
    val_set = _load_split(config, config["val_split"], transform) if has_val else None
    train_loader, val_loader = _loaders(config, train_set, val_set)
    model = create(config["model"], num_classes=description["num_classes"],
                   in_channels=description["in_channels"], **_model_options(config, description, log))
    if config["sync_bn"]:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    check_input_size(model, description, config["model"])
    optimizer = make_optimizer(config["optimizer"], model.parameters(), config["lr"], config["momentum"],
                               config["weight_decay"])
    scheduler = make_scheduler(config["schedule"], optimizer, config["epochs"], config["warmup_epochs"])
    parameters = sum(param.data.size for param in model.parameters())
    val_text = f", validating on '{config['val_split']}' ({len(val_set):,} images)" if has_val else ""
    processes = f" on {comm.world_size()} processes" if comm.world_size() > 1 else ""
    log(f"training {config['model']} ({parameters:,} parameters) on {config['dataset']} "
        f"'{config['train_split']}' ({len(train_set):,} images){val_text}{processes}; writing {out}")
    replan = resume is not None and saved_epochs not in (None, config["epochs"]) and scheduler is not None
    if replan:
        log(f"note: the {config['schedule']} schedule is planned again for {config['epochs']} epochs "
            f"(the checkpoint's run had {saved_epochs})")
    trainer = Trainer(model, optimizer, train_loader, val_loader, epochs=config["epochs"], scheduler=scheduler,
                      out_dir=out, num_classes=description["num_classes"], patience=config["patience"],
                      monitor=config["monitor"], progress=progress,
                      extra={"config": config, "data": description}, log=log, resume_scheduler=not replan)
    trainer.fit(resume=resume)
    return trainer


def _loaders(config, train_set, val_set):
    """The training and validation loaders; under mpiexec each process gets its share of every batch and of
    the validation set (each validation sample is seen by exactly one process)."""
    batch_size, size, rank = config["batch_size"], comm.world_size(), comm.rank()
    drop_last = len(train_set) > batch_size  # no 1-image BatchNorm batches
    workers = {"num_workers": config["workers"], "persistent_workers": config["workers"] > 0}
    if size == 1:
        train_loader = data.DataLoader(train_set, batch_size=batch_size, shuffle=True, seed=config["seed"],
                                       drop_last=drop_last, **workers)
    else:
        if batch_size % size:
            raise ValueError(f"--batch-size {batch_size} is the global batch, split over {size} processes; "
                             f"make it a multiple of {size} (e.g. {batch_size - batch_size % size or size})")
        # the same shuffle as one process, dealt out: the global batches match whatever the process count
        sampler = data.DistributedSampler(train_set, size, rank, shuffle=True, seed=config["seed"],
                                          drop_last=drop_last)
        train_loader = data.DataLoader(train_set, batch_size=batch_size // size, sampler=sampler,
                                       seed=config["seed"], drop_last=drop_last, **workers)
    if val_set is None:
        return train_loader, None
    if size > 1:
        val_set = data.Subset(val_set, range(rank * len(val_set) // size, (rank + 1) * len(val_set) // size))
    return train_loader, data.DataLoader(val_set, batch_size=max(batch_size, 256), shuffle=False)


def _shared_text(text):
    """Rank 0's ``text`` in every process (a run directory named after the time differs between processes)."""
    if comm.world_size() == 1:
        return text
    buffer = np.zeros(4096, dtype=np.uint8)
    encoded = text.encode()[:4096]
    buffer[:len(encoded)] = np.frombuffer(encoded, dtype=np.uint8)
    return bytes(comm.broadcast(buffer)).rstrip(b"\0").decode()


def run_command(args):
    out = None
    rank, size = distributed.init() if comm.launched_by_mpi() else (0, 1)
    log = print if rank == 0 else None
    try:
        resume = resolve_checkpoint(args.resume, prefer="last") if args.resume else None
        saved = read_metadata(resume)["extra"].get("config") if resume else None
        config = resolve_config(args, saved)
        out = args.out or (os.path.dirname(os.path.abspath(resume)) if resume else _shared_text(_default_out(config)))
        if args.out is None and resume is None and rank == 0:
            os.makedirs(out, exist_ok=True)
            write_latest(out)  # at the start, so a running or interrupted run is found too
        trainer = train(config, out=out, resume=resume, progress=not args.no_progress and rank == 0,
                        saved_epochs=(saved or {}).get("epochs"), log=log or (lambda *a, **k: None))
    except KeyboardInterrupt as interrupt:
        if size > 1 and not isinstance(interrupt, StoppedCleanly):
            comm.abort(130)  # a second Ctrl-C: the other processes may be waiting in a collective
        if rank != 0:
            return 130
        resumable = out is not None and os.path.exists(os.path.join(out, LAST_CHECKPOINT))
        where = f" ({interrupt})" if str(interrupt) else ""
        hint = f"; continue with: cnnkit train --resume {out}" if resumable else " before a checkpoint was written"
        print(f"\ninterrupted{where}{hint}", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, RuntimeError, FloatingPointError) as error:  # bad flags/files/options, NaN
        print(f"cnnkit train: error{f' on rank {rank}' if size > 1 else ''}: {error}", file=sys.stderr)
        if size > 1:
            comm.abort(2)  # the other processes may be waiting for this one in a collective
        return 2
    if rank == 0:
        _print_summary(trainer)
    return 0


def _print_summary(trainer):
    if not trainer.history:
        return
    last = trainer.history[-1]
    if last["val_top1"] is not None:
        print(f"final validation accuracy: top-1 {100 * last['val_top1']:.2f}%, top-5 {100 * last['val_top5']:.2f}% "
              f"(best top-1 {100 * trainer.best_top1:.2f}% at epoch {trainer.best_epoch})")
    else:
        print(f"final training accuracy: {100 * last['train_top1']:.2f}%")
    print(f"checkpoint: {trainer.best_checkpoint}")
    print(f"metrics:    {os.path.join(trainer.out_dir, 'metrics.jsonl')}")
    print(f"next:       cnnkit eval {trainer.out_dir}   (accuracy and confusion matrix of the best checkpoint)")
