"""Bad inputs to the library get a clear error naming what is wrong, and leave nothing half done."""
import math

import numpy as np
import pytest

import cnnkit
from cnnkit import nn, optim
from cnnkit.analysis import arithmetic, summary
from cnnkit.io import CheckpointError, load_checkpoint, save_checkpoint
from cnnkit.models import create


# ------------------------------------------------------------------ load_state_dict is all or nothing
def small_model():
    cnnkit.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 3))


def snapshot(model):
    return {key: np.array(value.data, copy=True) for key, value in model.state_dict(keep_vars=True).items()}


def _with(state, key, value):
    return {**state, key: value}


BAD_ENTRIES = {
    # (which key is broken, its value, words the error must contain); each broken key comes after others,
    # which a loader that copies as it checks would already have overwritten
    "wrong shape": ("3.weight", np.zeros((3, 7), np.float32), "(3, 7)"),
    "wrong rank": ("3.weight", np.zeros(24, np.float32), "(24,)"),
    "strings": ("3.weight", np.full((3, 8), "a"), "dtype"),
    "objects": ("3.weight", np.array([[None] * 8] * 3, dtype=object), "dtype"),
    "complex": ("3.weight", np.zeros((3, 8), np.complex64), "dtype"),
    "ragged list": ("3.weight", [[1.0] * 8, [1.0] * 7, [1.0]], "cannot be read"),
    "float64 overflow into float32": ("3.weight", np.full((3, 8), 1e300), "too large"),
    "NaN into an int buffer": ("1.num_batches_tracked", np.array(np.nan), "NaN"),
    "None": ("3.bias", None, "dtype"),
}


@pytest.mark.parametrize("case", list(BAD_ENTRIES))
def test_a_bad_entry_leaves_the_model_untouched_and_names_the_key(case):
    key, value, words = BAD_ENTRIES[case]
    model = small_model()
    source = small_model()
    for param in source.parameters():
        param.data = param.data + 1  # every good entry differs from the model's value
    state = _with(source.state_dict(), key, value)
    before = snapshot(model)
    with pytest.raises((ValueError, TypeError)) as caught:
        model.load_state_dict(state)
    assert key in str(caught.value) and words in str(caught.value)
    after = snapshot(model)
    assert all(np.array_equal(before[name], after[name]) for name in before)


def test_good_entries_still_load_with_conversions():
    model, source = small_model(), small_model()
    state = {key: np.asarray(value.data, dtype=np.float64) for key, value in source.state_dict().items()}
    state["3.bias"] = [1, 2, 3]  # a list of ints becomes the float32 bias
    model.load_state_dict(state)
    assert model.state_dict()["3.bias"].dtype == np.float32
    np.testing.assert_array_equal(model.state_dict()["3.bias"].data, [1, 2, 3])


def test_load_state_dict_refuses_what_is_not_a_mapping():
    with pytest.raises(TypeError, match="mapping"):
        small_model().load_state_dict([("3.bias", np.zeros(3))])


def test_load_checkpoint_puts_the_model_back_when_the_optimizer_state_does_not_fit(tmp_path):
    saved = small_model()
    for param in saved.parameters():
        param.data = param.data + 1
    path = tmp_path / "run.safetensors"
    save_checkpoint(path, saved, optimizer=optim.SGD(saved.parameters(), lr=0.1, momentum=0.9))
    model = small_model()
    before = snapshot(model)
    other = optim.SGD([{"params": list(model.parameters())[:2]}, {"params": list(model.parameters())[2:]}], lr=0.1)
    with pytest.raises(CheckpointError, match="optimizer"):
        load_checkpoint(path, model, optimizer=other)
    after = snapshot(model)
    assert all(np.array_equal(before[name], after[name]) for name in before)


# ------------------------------------------------------------------ analysis arithmetic speaks like the ops
@pytest.mark.parametrize("arguments, layer_kwargs, words", [
    (dict(size=10, kernel=3, stride=0), dict(kernel_size=3, stride=0), "stride must be positive, got 0"),
    (dict(size=10, kernel=3, padding=-1), dict(kernel_size=3, padding=-1), "padding must be non-negative, got -1"),
    (dict(size=10, kernel=0), dict(kernel_size=0), "must be positive, got 0"),
    (dict(size=10, kernel=3, dilation=0), dict(kernel_size=3, dilation=0), "dilation must be positive, got 0"),
    (dict(size=10, kernel=3, stride=-2), dict(kernel_size=3, stride=-2), "stride must be positive, got -2"),
])
def test_output_size_rejects_what_conv2d_rejects_with_the_same_words(arguments, layer_kwargs, words):
    with pytest.raises(ValueError, match=words) as from_analysis:
        arithmetic.output_size(**arguments)
    with pytest.raises(ValueError, match=words):
        nn.Conv2d(1, 1, **layer_kwargs)
    assert str(from_analysis.value).startswith("output_size: ")


@pytest.mark.parametrize("call, error, words", [
    (lambda: arithmetic.output_size(10, 3.5), TypeError, "kernel must be an int"),
    (lambda: arithmetic.output_size(-4, 3), ValueError, "size must be non-negative"),
    (lambda: arithmetic.output_size(10, 3, 1, (1, -1)), ValueError, "padding must be non-negative"),
    (lambda: arithmetic.pool_output_size(10, 2, 0), ValueError, "stride must be positive"),
    (lambda: arithmetic.conv_params(3, 8, 3, groups=0), ValueError, "groups must be a positive integer"),
    (lambda: arithmetic.conv_params(-3, 8, 3), ValueError, "in_channels must be positive"),
    (lambda: arithmetic.conv_macs(3, 8, 3, (-1, 2)), ValueError, "output_size must be non-negative"),
    (lambda: arithmetic.compare_stacked(10, 7, 1), ValueError, "small must be at least 2"),
    (lambda: arithmetic.compare_grouped(10, 10, 3, 0), ValueError, "groups must be a positive integer"),
    (lambda: arithmetic.receptive_field([(3, 0)]), ValueError, "stride must be positive"),
    (lambda: arithmetic.receptive_field([(3, 1, 0)], input_size=(-5, 5)), ValueError, "input_size must be positive"),
    (lambda: summary(create("lenet5", in_channels=1), (1, -28, 28)), ValueError, "input_size entry must be positive"),
    (lambda: summary(create("lenet5", in_channels=1), (1, 28.5, 28)), TypeError, "input_size must be a tuple"),
    (lambda: summary(create("lenet5", in_channels=1), (1, 28, 28), 0), ValueError, "batch_size must be a positive"),
])
def test_analysis_helpers_reject_impossible_layers(call, error, words):
    with pytest.raises(error, match=words):
        call()


# ------------------------------------------------------------------ model options
@pytest.mark.parametrize("name, options, error, option", [
    ("lenet5", dict(num_classes="10"), TypeError, "num_classes"),
    ("lenet5", dict(num_classes=0), ValueError, "num_classes"),
    ("lenet5", dict(num_classes=2.5), TypeError, "num_classes"),
    ("lenet5", dict(num_classes=True), TypeError, "num_classes"),
    ("lenet5", dict(in_channels=-1), ValueError, "in_channels"),
    ("lenet5", dict(image_size="28"), TypeError, "image_size"),
    ("lenet5", dict(activation=3), TypeError, "activation"),
    ("simple_cnn", dict(dropout=1.5), ValueError, "dropout"),
    ("simple_cnn", dict(width=0), ValueError, "width"),
    ("resnet18", dict(small_input="yes"), TypeError, "small_input"),
    ("mobilenet_v2", dict(width_mult=0), ValueError, "width_mult"),
    ("mobilenet_v2", dict(width_mult=float("nan")), ValueError, "width_mult"),
])
def test_model_options_are_checked_and_named(name, options, error, option):
    with pytest.raises(error, match=f"option {option} must be"):
        create(name, **options)


def test_valid_options_still_build():
    model = create("simple_cnn", num_classes=np.int64(4), dropout=0.25, width=8)
    assert model.model_config["num_classes"] == 4


# ------------------------------------------------------------------ optimizer and scheduler hyper-parameters
def params():
    return [cnnkit.tensor(np.zeros(3, np.float32), requires_grad=True)]


@pytest.mark.parametrize("build, error, words", [
    (lambda: optim.Adam(params(), betas=(0.9,)), ValueError, "two numbers"),
    (lambda: optim.Adam(params(), betas=(0.9, 0.999, 0.5)), ValueError, "two numbers"),
    (lambda: optim.Adam(params(), betas=(0.9, 1.0)), ValueError, "beta parameter at index 1"),
    (lambda: optim.Adam(params(), betas=(-0.1, 0.9)), ValueError, "beta parameter at index 0"),
    (lambda: optim.Adam(params(), betas=0.9), ValueError, "betas"),
    (lambda: optim.AdamW(params(), betas=("a", 0.9)), TypeError, "beta parameter at index 0"),
    (lambda: optim.SGD(params(), lr=float("nan")), ValueError, "learning rate nan"),
    (lambda: optim.SGD(params(), lr=float("inf")), ValueError, "learning rate inf"),
    (lambda: optim.SGD(params(), lr=-0.1), ValueError, "learning rate"),
    (lambda: optim.SGD(params(), lr="0.1"), TypeError, "learning rate"),
    (lambda: optim.RMSprop(params(), alpha=-1), ValueError, "alpha"),
    (lambda: optim.SGD([{"params": params(), "lr": math.nan}], lr=0.1), ValueError, "learning rate"),
    (lambda: optim.Adam(params(), eps=math.inf), ValueError, "epsilon"),
    (lambda: optim.Adam(params(), amsgrad="no"), TypeError, "amsgrad"),
])
def test_optimizer_hyperparameters_are_checked_when_built(build, error, words):
    with pytest.raises(error, match=words):
        build()


@pytest.mark.parametrize("build, error, words", [
    (lambda o: optim.lr_scheduler.StepLR(o, step_size=0), ValueError, "step_size"),
    (lambda o: optim.lr_scheduler.StepLR(o, step_size=2.5), TypeError, "step_size"),
    (lambda o: optim.lr_scheduler.StepLR(o, 2, gamma=float("nan")), ValueError, "gamma"),
    (lambda o: optim.lr_scheduler.MultiStepLR(o, [2, "x"]), TypeError, "milestone"),
    (lambda o: optim.lr_scheduler.ExponentialLR(o, gamma=-0.5), ValueError, "gamma"),
    (lambda o: optim.lr_scheduler.CosineAnnealingLR(o, T_max=0), ValueError, "T_max"),
    (lambda o: optim.lr_scheduler.LinearLR(o, total_iters=0), ValueError, "total_iters"),
    (lambda o: optim.lr_scheduler.ReduceLROnPlateau(o, patience=-1), ValueError, "patience"),
    (lambda o: optim.lr_scheduler.ReduceLROnPlateau(o, factor=1.5), ValueError, "factor"),
])
def test_scheduler_hyperparameters_are_checked_when_built(build, error, words):
    with pytest.raises(error, match=words):
        build(optim.SGD(params(), lr=0.1))


# ------------------------------------------------------------------ ragged nested lists
@pytest.mark.parametrize("data, error, words", [
    ([[1, 2], [3]], ValueError, "length 2 at dimension 1 \\(got 1\\)"),
    ([[[1, 2], [3, 4]], [[1, 2], [3]]], ValueError, "length 2 at dimension 2 \\(got 1\\)"),
    ([[1, 2, 3], [4, 5]], ValueError, "length 3 at dimension 1 \\(got 2\\)"),
    ([1, [2]], ValueError, "dimension 1 mixes sequences and scalars"),
    ([[1, 2], [3, [4, 5]]], ValueError, "dimension 2 mixes"),
    ([None, 1.0], TypeError, "expected numbers, got a NoneType"),
    ([["a", "b"]], TypeError, "got a str"),
])
def test_tensor_names_the_ragged_dimension(data, error, words):
    with pytest.raises(error, match=words):
        cnnkit.tensor(data)


def test_ragged_messages_agree_with_torch_on_the_dimension():
    torch = pytest.importorskip("torch")
    for data in ([[1, 2], [3]], [[[1, 2], [3, 4]], [[1, 2], [3]]], [[1, 2, 3], [4, 5]]):
        with pytest.raises(ValueError) as ours:
            cnnkit.tensor(data)
        with pytest.raises(ValueError) as theirs:
            torch.tensor(data)
        # torch: "expected sequence of length 2 at dim 1 (got 1)"
        expected = str(theirs.value).split("length ")[1]
        assert expected.replace("dim ", "dimension ") in str(ours.value)


def test_scheduler_state_cannot_set_arbitrary_attributes():
    optimizer = optim.SGD(params(), lr=0.1)
    scheduler = optim.lr_scheduler.StepLR(optimizer, 2)
    for key in ("optimizer", "get_lr", "T_max"):
        with pytest.raises(ValueError, match=f"unknown keys {key}"):
            scheduler.load_state_dict({**scheduler.state_dict(), key: 1})
    assert scheduler.optimizer is optimizer and callable(scheduler.get_lr)
