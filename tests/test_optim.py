"""cnnkit.optim against torch.optim: the same parameters and gradients must give the same updates and rates."""
import copy

import numpy as np
import pytest

import cnnkit
from cnnkit import optim
from cnnkit.optim import lr_scheduler

torch = pytest.importorskip("torch")

SHAPES = [(3, 4), (5,)]

OPTIMIZER_CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.001)),
    ("SGD", dict(lr=0.05, momentum=0.5, maximize=True)),
    ("Adam", dict()),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1, amsgrad=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.02, weight_decay=0.1, amsgrad=True, maximize=True)),
    ("RMSprop", dict()),
    ("RMSprop", dict(lr=0.01, alpha=0.9, eps=1e-6, weight_decay=0.05, momentum=0.7, centered=True)),
    ("RMSprop", dict(lr=0.01, centered=True)),
]


def _pair(name, arrays, kwargs, groups=None):
    """Our optimizer and torch's over copies of the same arrays, as (ours, our_params, theirs, their_params)."""
    ours_params = [cnnkit.Tensor(array.copy(), requires_grad=True) for array in arrays]
    theirs_params = [torch.tensor(array.copy(), requires_grad=True) for array in arrays]
    if groups is None:
        ours_arg, theirs_arg = ours_params, theirs_params
    else:
        ours_arg = [dict(group, params=[ours_params[i] for i in group["params"]]) for group in groups]
        theirs_arg = [dict(group, params=[theirs_params[i] for i in group["params"]]) for group in groups]
    return (getattr(optim, name)(ours_arg, **kwargs), ours_params,
            getattr(torch.optim, name)(theirs_arg, **kwargs), theirs_params)


def _set_grads(ours_params, theirs_params, rng, dtype, skip=()):
    for index, (ours, theirs) in enumerate(zip(ours_params, theirs_params)):
        if index in skip:
            ours.grad, theirs.grad = None, None
            continue
        grad = rng.standard_normal(ours.shape).astype(dtype)
        ours.grad = grad.copy()
        theirs.grad = torch.from_numpy(grad.copy())


def _assert_close(ours_params, theirs_params, rtol, atol):
    for ours, theirs in zip(ours_params, theirs_params):
        np.testing.assert_allclose(ours.data, theirs.detach().numpy(), rtol=rtol, atol=atol)


@pytest.mark.parametrize("name,kwargs", OPTIMIZER_CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(OPTIMIZER_CASES)])
def test_optimizer_matches_torch_float64(name, kwargs):
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal(shape) for shape in SHAPES]
    ours, ours_params, theirs, theirs_params = _pair(name, arrays, kwargs)
    for step in range(7):
        # step 3 leaves the second parameter without a gradient: both must skip it
        _set_grads(ours_params, theirs_params, rng, np.float64, skip=(1,) if step == 3 else ())
        ours.step()
        theirs.step()
        _assert_close(ours_params, theirs_params, rtol=1e-11, atol=1e-13)
    ours_state, theirs_state = ours.state_dict()["state"], theirs.state_dict()["state"]
    assert {k: sorted(v) for k, v in ours_state.items()} == {k: sorted(v) for k, v in theirs_state.items()}


@pytest.mark.parametrize("name,kwargs", OPTIMIZER_CASES[1::2], ids=[n for n, _ in OPTIMIZER_CASES[1::2]])
def test_optimizer_float32_keeps_dtype_and_matches_torch(name, kwargs):
    rng = np.random.default_rng(2)
    arrays = [rng.standard_normal(shape).astype(np.float32) for shape in SHAPES]
    ours, ours_params, theirs, theirs_params = _pair(name, arrays, kwargs)
    # a NumPy float64 rate (e.g. computed by user code) must not promote float32 state to float64
    ours.param_groups[0]["lr"] = np.float64(ours.param_groups[0]["lr"])
    for _ in range(5):
        _set_grads(ours_params, theirs_params, rng, np.float32)
        ours.step()
        theirs.step()
    _assert_close(ours_params, theirs_params, rtol=1e-5, atol=1e-6)
    for param in ours_params:
        assert param.data.dtype == np.float32
    for state in ours.state.values():
        for key, value in state.items():
            if key != "step":
                assert value.dtype == np.float32, key


def test_step_never_mutates_grad_and_updates_in_place():
    param = cnnkit.Tensor(np.ones((2, 3)), requires_grad=True)
    data_before = param.data
    grad = np.full((2, 3), 0.5)
    param.grad = grad
    opt = optim.SGD([param], lr=0.1, momentum=0.9, weight_decay=0.1)
    for _ in range(3):
        opt.step()
    np.testing.assert_array_equal(grad, np.full((2, 3), 0.5))
    assert param.data is data_before


def test_param_groups_match_torch():
    rng = np.random.default_rng(3)
    arrays = [rng.standard_normal(shape) for shape in [(4,), (2, 2), (3,)]]
    groups = [{"params": [0, 2], "lr": 0.3, "momentum": 0.5}, {"params": [1]}]
    ours, ours_params, theirs, theirs_params = _pair("SGD", arrays, dict(lr=0.1, momentum=0.9), groups=groups)
    assert ours.param_groups[1]["momentum"] == 0.9 and ours.param_groups[0]["lr"] == 0.3
    for _ in range(4):
        _set_grads(ours_params, theirs_params, rng, np.float64)
        ours.step()
        theirs.step()
    _assert_close(ours_params, theirs_params, rtol=1e-12, atol=1e-14)
    ours_sd, theirs_sd = ours.state_dict(), theirs.state_dict()
    assert [g["params"] for g in ours_sd["param_groups"]] == [g["params"] for g in theirs_sd["param_groups"]]
    assert sorted(ours_sd["state"]) == sorted(theirs_sd["state"])


def test_add_param_group_and_defaults():
    first, second = cnnkit.Tensor(np.zeros(2), requires_grad=True), cnnkit.Tensor(np.zeros(3), requires_grad=True)
    opt = optim.Adam([first], lr=0.01)
    opt.add_param_group({"params": second, "betas": (0.5, 0.6)})
    assert opt.param_groups[1]["lr"] == 0.01 and opt.param_groups[1]["betas"] == (0.5, 0.6)
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [first]})


@pytest.mark.parametrize("name,kwargs", [("SGD", dict(lr=0.1, momentum=0.9)), ("Adam", dict(lr=0.01, amsgrad=True)),
                                         ("RMSprop", dict(momentum=0.5, centered=True))])
def test_state_dict_round_trip_continues_identically(name, kwargs):
    rng = np.random.default_rng(4)
    arrays = [rng.standard_normal(shape) for shape in SHAPES]
    grads = [[rng.standard_normal(shape) for shape in SHAPES] for _ in range(6)]
    params = [cnnkit.Tensor(array.copy(), requires_grad=True) for array in arrays]
    opt = getattr(optim, name)(params, **kwargs)

    def run(optimizer, parameters, steps):
        for step_grads in steps:
            for param, grad in zip(parameters, step_grads):
                param.grad = grad.copy()
            optimizer.step()

    run(opt, params, grads[:3])
    saved = copy.deepcopy(opt.state_dict())
    resumed_params = [cnnkit.Tensor(param.data.copy(), requires_grad=True) for param in params]
    resumed = getattr(optim, name)(resumed_params, lr=123.0)  # hyper-parameters come from the state dict
    resumed.load_state_dict(saved)
    run(opt, params, grads[3:])
    run(resumed, resumed_params, grads[3:])
    for original, restored in zip(params, resumed_params):
        np.testing.assert_array_equal(original.data, restored.data)


def test_state_dict_is_a_copy_and_load_casts_to_param_dtype():
    param = cnnkit.Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    opt = optim.SGD([param], lr=0.1, momentum=0.9)
    param.grad = np.ones(3, dtype=np.float32)
    opt.step()
    saved = opt.state_dict()
    saved["state"][0]["momentum_buffer"] = saved["state"][0]["momentum_buffer"].astype(np.float64)
    opt.step()
    assert saved["state"][0]["momentum_buffer"][0] == 1.0
    opt.load_state_dict(saved)
    assert opt.state[param]["momentum_buffer"].dtype == np.float32


def test_zero_grad():
    param = cnnkit.Tensor(np.ones(3), requires_grad=True)
    grad = np.ones(3)
    param.grad = grad
    opt = optim.SGD([param], lr=0.1)
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(param.grad, np.zeros(3))
    np.testing.assert_array_equal(grad, np.ones(3))
    opt.zero_grad()
    assert param.grad is None


def test_optimizer_errors():
    param = cnnkit.Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="single Tensor"):
        optim.SGD(param, lr=0.1)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([param], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="beta parameter at index 1"):
        optim.Adam([param], betas=(0.9, 1.0))
    opt = optim.SGD([param], lr=0.1)
    other = optim.SGD([param, cnnkit.Tensor(np.ones(2), requires_grad=True)], lr=0.1)
    with pytest.raises(ValueError, match="parameter group 0 has 2 parameters"):
        opt.load_state_dict(other.state_dict())
    param.grad = np.ones(4)
    with pytest.raises(ValueError, match="gradient shape"):
        opt.step()


# --------------------------------------------------------------------------- schedulers

def _scheduler_pair(make, groups=2):
    """``make(module, optimizer)`` builds a scheduler from ``torch.optim.lr_scheduler`` or ours."""
    ours_params = [cnnkit.Tensor(np.zeros(2), requires_grad=True) for _ in range(groups)]
    theirs_params = [torch.zeros(2, requires_grad=True) for _ in range(groups)]
    lrs = [0.1, 0.03][:groups]
    ours_opt = optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(ours_params, lrs)], lr=0.1, momentum=0.9)
    theirs_opt = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(theirs_params, lrs)], lr=0.1,
                                 momentum=0.9)
    return ours_opt, make(lr_scheduler, ours_opt), theirs_opt, make(torch.optim.lr_scheduler, theirs_opt)


SCHEDULER_CASES = {
    "step": lambda m, o: m.StepLR(o, step_size=3, gamma=0.5),
    "multistep": lambda m, o: m.MultiStepLR(o, milestones=[2, 5, 5, 9], gamma=0.3),
    "exponential": lambda m, o: m.ExponentialLR(o, gamma=0.9),
    "cosine": lambda m, o: m.CosineAnnealingLR(o, T_max=5, eta_min=0.001),
    "linear": lambda m, o: m.LinearLR(o, start_factor=0.25, end_factor=0.9, total_iters=4),
    "warmup-cosine": lambda m, o: m.SequentialLR(o, [m.LinearLR(o, start_factor=0.1, total_iters=3),
                                                     m.CosineAnnealingLR(o, T_max=8)], milestones=[3]),
}


@pytest.mark.parametrize("case", sorted(SCHEDULER_CASES))
def test_scheduler_matches_torch(case):
    ours_opt, ours, theirs_opt, theirs = _scheduler_pair(SCHEDULER_CASES[case])
    assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr(), rel=1e-12)
    for _ in range(14):
        ours_opt.step()
        theirs_opt.step()
        ours.step()
        theirs.step()
        assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr(), rel=1e-12, abs=1e-15)
        assert [g["lr"] for g in ours_opt.param_groups] == pytest.approx(
            [g["lr"] for g in theirs_opt.param_groups], rel=1e-12, abs=1e-15)


def test_reduce_on_plateau_matches_torch():
    metrics = [1.0, 0.9, 0.95, 0.91, 0.9, 0.92, 0.93, 0.7, 0.71, 0.72, 0.73, 0.74, 0.75, 0.76, 0.77]
    for kwargs in (dict(patience=1, factor=0.5, cooldown=1, min_lr=[0.0, 0.01]),
                   dict(mode="max", patience=2, threshold=0.05, threshold_mode="abs")):
        ours_opt, ours, theirs_opt, theirs = _scheduler_pair(lambda m, o, kw=kwargs: m.ReduceLROnPlateau(o, **kw))
        for metric in metrics:
            ours.step(metric)
            theirs.step(metric)
            assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr(), rel=1e-12)
            assert ours.num_bad_epochs == theirs.num_bad_epochs


@pytest.mark.parametrize("case", ["cosine", "multistep", "warmup-cosine"])
def test_scheduler_state_dict_round_trip(case):
    make = SCHEDULER_CASES[case]
    opt, scheduler, _, _ = _scheduler_pair(make)
    for _ in range(4):
        opt.step()
        scheduler.step()
    saved_opt, saved_sched = copy.deepcopy(opt.state_dict()), copy.deepcopy(scheduler.state_dict())
    resumed_opt, resumed, _, _ = _scheduler_pair(make)
    resumed_opt.load_state_dict(saved_opt)
    resumed.load_state_dict(saved_sched)
    for _ in range(8):
        opt.step()
        scheduler.step()
        resumed_opt.step()
        resumed.step()
        assert resumed.get_last_lr() == scheduler.get_last_lr()
        assert [g["lr"] for g in resumed_opt.param_groups] == [g["lr"] for g in opt.param_groups]


def test_scheduler_errors():
    opt = optim.SGD([cnnkit.Tensor(np.zeros(1), requires_grad=True)], lr=0.1)
    with pytest.raises(TypeError, match="not an Optimizer"):
        lr_scheduler.StepLR(object(), step_size=2)
    with pytest.raises(ValueError, match="start_factor"):
        lr_scheduler.LinearLR(opt, start_factor=0)
    with pytest.raises(ValueError, match="one milestone fewer"):
        lr_scheduler.SequentialLR(opt, [lr_scheduler.StepLR(opt, 2)], milestones=[3])
    fresh = optim.SGD([cnnkit.Tensor(np.zeros(1), requires_grad=True)], lr=0.1)
    with pytest.raises(KeyError, match="initial_lr"):
        lr_scheduler.StepLR(fresh, step_size=2, last_epoch=3)


@pytest.mark.parametrize("name,kwargs", [("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
                                         ("Adam", dict(lr=0.01)), ("AdamW", dict(lr=0.01, weight_decay=0.1)),
                                         ("RMSprop", dict(lr=0.01, momentum=0.5))])
def test_torch_state_dict_loads_and_continues_like_torch(name, kwargs):
    rng = np.random.default_rng(5)
    arrays = [rng.standard_normal(shape) for shape in SHAPES]
    _, _, theirs, theirs_params = _pair(name, arrays, kwargs)
    for _ in range(3):
        for param in theirs_params:
            param.grad = torch.from_numpy(rng.standard_normal(tuple(param.shape)))
        theirs.step()
    state = theirs.state_dict()
    as_numpy = {"state": {index: {key: value.numpy().copy() if torch.is_tensor(value) else value
                                  for key, value in entry.items()} for index, entry in state["state"].items()},
                "param_groups": copy.deepcopy(state["param_groups"])}
    ours_params = [cnnkit.Tensor(param.detach().numpy().copy(), requires_grad=True) for param in theirs_params]
    ours = getattr(optim, name)(ours_params, lr=5.0)
    ours.load_state_dict(as_numpy)  # torch's layout: the same keys (momentum_buffer, exp_avg, step, ...)
    for _ in range(3):
        _set_grads(ours_params, theirs_params, rng, np.float64)
        ours.step()
        theirs.step()
    _assert_close(ours_params, theirs_params, rtol=1e-12, atol=1e-14)
