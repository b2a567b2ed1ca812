"""Helpers shared by the tutorial pages: where pages keep files, the LeNet-5 that page 1 trains, Markdown tables."""
import os
from pathlib import Path

WORK = Path(os.environ.get("CNNKIT_DOCS_WORK", "build/docs-work")).resolve()
LENET_WEIGHTS = WORK / "lenet5-shapes.safetensors"


def markdown_table(header, rows):
    """A Markdown table (rendered as a table by the docs) from a header and rows of cells."""
    from IPython.display import Markdown

    lines = ["| " + " | ".join(str(cell) for cell in header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return Markdown("\n".join(lines))


def shapes_loaders(train_samples=6000, test_samples=1000, batch_size=64):
    """Train and test loaders over the built-in shapes data, normalized with its mean and std."""
    from cnnkit import data
    from cnnkit.data import transforms

    to_input = transforms.Compose([transforms.ToTensor(), transforms.Normalize(data.Shapes.mean, data.Shapes.std)])
    train = data.Shapes(train=True, num_samples=train_samples, transform=to_input)
    test = data.Shapes(train=False, num_samples=test_samples, transform=to_input)
    return (data.DataLoader(train, batch_size=batch_size, shuffle=True, seed=0),
            data.DataLoader(test, batch_size=256))


def train_lenet(epochs=3, out_dir=None):
    """Train LeNet-5 on shapes as the first page does (SGD with momentum, cosine schedule) and save its weights."""
    import cnnkit
    from cnnkit import io, models, optim
    from cnnkit.train import Trainer

    cnnkit.manual_seed(0)
    train_loader, test_loader = shapes_loaders()
    model = models.create("lenet5", num_classes=6, in_channels=1)
    optimizer = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    schedule = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    trainer = Trainer(model, optimizer, train_loader, test_loader, epochs=epochs, scheduler=schedule,
                      out_dir=out_dir, progress=False, num_classes=6)
    trainer.fit()
    LENET_WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
    io.save_weights(model, LENET_WEIGHTS, extra={"classes": list(train_loader.dataset.classes)})
    return model.eval(), trainer.history


def trained_lenet():
    """The LeNet-5 that page 1 saved, or (when that page has not run) the same training done here."""
    from cnnkit import io

    if LENET_WEIGHTS.exists():
        return io.load_model(LENET_WEIGHTS)
    return train_lenet()[0]


def zoo_summary(name, input_size=(3, 224, 224), **options):
    """``cnnkit.analysis.summary(models.create(name, **options), input_size).to_dict()``, kept under WORK.

    Building VGG-16 alone fills 138 million random weights; the pages that tabulate the zoo share one result.
    """
    import json

    from cnnkit import models
    from cnnkit.analysis import summary

    suffix = "-".join(f"{key}={value}" for key, value in sorted(options.items()))
    path = WORK / "summaries" / f"{name}-{'x'.join(map(str, input_size))}{suffix}.json"
    if path.exists():
        return json.loads(path.read_text())
    result = summary(models.create(name, **options), input_size).to_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))
    return result
