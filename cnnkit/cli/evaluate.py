"""``cnnkit eval``: accuracy (top-1, top-5), loss and confusion matrix of a checkpoint on a data split."""
from __future__ import annotations

import argparse
import sys

from .. import data
from ..inference import freeze
from ..io import load_model, read_metadata, resolve_checkpoint
from ..train import evaluate, format_confusion_matrix
from ..train.pipeline import describe_data, normalizing_transform
from . import numbers

MAX_TABLE_CLASSES = 20

EXAMPLES = """\
examples:
  cnnkit eval runs/latest
      the last training run's best checkpoint, on the split it was validated on
  cnnkit eval runs/lenet5-mnist-20250101-120000/best.safetensors --dataset mnist \\
              --data-dir ../shared/data/mnist --split 'test[8000:]'
"""


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "eval", help="measure a trained model's accuracy and confusion matrix on a data split",
        description="Evaluate a checkpoint: loss, top-1 and top-5 accuracy, and the confusion matrix "
                    "(rows: true class, columns: predicted class). The data set, split and normalization "
                    "default to those the model was trained with.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a .safetensors checkpoint, a run directory, or runs/latest")
    parser.add_argument("--dataset", help="data set name (default: the one the model was trained on)")
    parser.add_argument("--data-dir", help="where the data set's files are")
    parser.add_argument("--split", help="split to evaluate, e.g. test or 'test[8000:]' "
                                        "(default: the training run's validation split)")
    parser.add_argument("--batch-size", type=numbers.batch_size, default=256,
                        help="images per forward pass (default 256)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_command)
    return parser


def run_command(args):
    try:
        path = resolve_checkpoint(args.checkpoint)
        extra = read_metadata(path)["extra"]
        config, saved_data = extra.get("config") or {}, extra.get("data") or {}
        dataset = args.dataset or config.get("dataset") or saved_data.get("dataset")
        if dataset is None:
            raise ValueError(f"{path} does not say which data set it was trained on; pass --dataset")
        data_dir = args.data_dir or (config.get("data_dir") if dataset == config.get("dataset") else None)
        split = args.split or (config.get("val_split") if dataset == config.get("dataset") else None) or "test"
        description = saved_data if saved_data.get("mean") else describe_data(dataset, data_dir)
        model = load_model(path)
        drawn = {"image_size": description["image_size"]} if dataset == "shapes" and description.get("resize") else {}
        dataset_split = data.load_dataset(dataset, root=data_dir, split=split,
                                          transform=normalizing_transform(description), download=True, **drawn)
        loader = data.DataLoader(dataset_split, batch_size=args.batch_size, shuffle=False)
        num_classes = model.model_config.get("num_classes") if getattr(model, "model_config", None) else None
        data_classes = getattr(dataset_split, "num_classes", None)
        if num_classes and data_classes and data_classes != num_classes:
            trained_on = config.get("dataset") or saved_data.get("dataset") or "another data set"
            raise ValueError(f"{path} predicts {num_classes} classes but {dataset} has {data_classes}; evaluate it "
                             f"on a data set with its classes (it was trained on {trained_on})")
        result = evaluate(model, loader, num_classes, progress=not args.no_progress, forward=freeze(model))
    except (ValueError, OSError, RuntimeError) as error:  # bad files or flags, missing data, failed download
        print(f"cnnkit eval: error: {error}", file=sys.stderr)
        return 2
    print(f"{path}: {model.model_name} on {dataset} '{split}' ({result['count']:,} images)")
    print(f"loss {result['loss']:.4f}   top-1 {100 * result['top1']:.2f}%   top-5 {100 * result['top5']:.2f}%")
    confusion = result["confusion"]
    if len(confusion) <= MAX_TABLE_CLASSES:
        print("\nconfusion matrix (rows: true class, columns: predicted class)")
        print(format_confusion_matrix(confusion, saved_data.get("classes")))
    else:
        print(f"(the {len(confusion)}x{len(confusion)} confusion matrix is too large to print)")
    return 0
