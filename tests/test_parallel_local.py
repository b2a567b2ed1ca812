"""One-process checks of SyncBatchNorm, DistributedDataParallel and DistributedSampler (no MPI needed)."""
import numpy as np
import pytest

import cnnkit
from cnnkit import comm, nn
from cnnkit.data import DistributedSampler
from cnnkit.models import create
from cnnkit.nn.parallel import DistributedDataParallel, _plan_buckets


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5), (4, 3, 5, 6)])
def test_sync_batch_norm_alone_equals_batch_norm(shape):
    rng = np.random.default_rng(0)
    x, grad = rng.standard_normal(shape), rng.standard_normal(shape)
    results = []
    for layer in (nn.BatchNorm2d(3) if len(shape) == 4 else nn.BatchNorm1d(3), nn.SyncBatchNorm(3)):
        layer.double()
        layer.weight.data[:] = [0.5, 1.5, -2.0]
        layer.bias.data[:] = [0.1, 0.0, -0.3]
        tensor = cnnkit.tensor(x, requires_grad=True)
        layer(tensor).backward(grad)
        layer.eval()
        evaluated = layer(cnnkit.tensor(x)).data
        results.append([tensor.grad, layer.weight.grad, layer.bias.grad, layer.running_mean.data,
                        layer.running_var.data, evaluated])
    for expected, got in zip(*results):
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_convert_sync_batchnorm_keeps_the_state_and_the_keys():
    cnnkit.manual_seed(0)
    model = create("resnet18", num_classes=10, small_input=True)
    keys = list(model.state_dict())
    weight = model.bn1.weight
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert isinstance(converted.bn1, nn.SyncBatchNorm) and converted.bn1.weight is weight
    assert list(converted.state_dict()) == keys
    assert not any(type(m) is nn.BatchNorm2d for m in converted.modules())


def test_sync_batch_norm_refuses_a_single_value_per_channel():
    with pytest.raises(ValueError, match=r"SyncBatchNorm\(2\).*more than one value per channel"):
        nn.SyncBatchNorm(2)(cnnkit.tensor(np.ones((1, 2))))


def test_ddp_alone_leaves_gradients_as_they_are():
    cnnkit.manual_seed(0)
    model = nn.Linear(4, 3)
    x = cnnkit.tensor(np.ones((2, 4), np.float32))
    model(x).sum().backward()
    expected = model.weight.grad.copy()
    model.zero_grad()
    DistributedDataParallel(model)(x).sum().backward()
    np.testing.assert_array_equal(model.weight.grad, expected)
    assert comm.world_size() == 1 and comm.rank() == 0


@pytest.mark.parametrize("as_view", [False, True])
def test_ddp_averages_into_the_gradients_or_hands_out_bucket_views(as_view):
    """With one process the allreduce leaves a bucket as it is, so "averaging over 2" halves every gradient."""
    cnnkit.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2), nn.Linear(5, 5))  # the last one gets no gradient
    parallel = DistributedDataParallel(model, bucket_cap_mb=40e-6, gradient_as_bucket_view=as_view)
    parallel.world_size = 2
    x = cnnkit.tensor(np.ones((2, 4), np.float32))
    for _ in range(2):  # the second pass reuses the buckets
        model.zero_grad()
        model[1](model[0](x)).sum().backward()
        before = {name: param.grad for name, param in model.named_parameters() if param.grad is not None}
        expected = {name: grad / 2 for name, grad in before.items()}
        parallel._average_gradients()
        for name, param in model.named_parameters():
            np.testing.assert_array_equal(param.grad, expected.get(name, np.zeros_like(param.data)))
            assert param.grad.dtype == np.float32 and param.grad.shape == param.data.shape
            if as_view:
                assert any(np.shares_memory(param.grad, flat) for flat in parallel._bucket_arrays)
            elif name in before:
                assert param.grad is before[name]  # averaged in place, as PyTorch does
    assert len(parallel._buckets) > 1


def test_buckets_follow_reverse_order_and_the_cap():
    params = [nn.Parameter(cnnkit.zeros(n)) for n in (1000, 10, 10, 2000)]  # 4000, 40, 40, 8000 bytes
    buckets = _plan_buckets(params, 4100)
    assert [[p.data.size for p in bucket] for bucket in buckets] == [[2000], [10, 10, 1000]]


def test_distributed_sampler_matches_torch_without_shuffle():
    torch_data = pytest.importorskip("torch.utils.data")
    for count, replicas, drop_last in ((11, 2, False), (11, 2, True), (10, 3, False), (10, 3, True), (4, 4, False)):
        for rank in range(replicas):
            ours = list(DistributedSampler(range(count), replicas, rank, shuffle=False, drop_last=drop_last))
            theirs = list(torch_data.DistributedSampler(range(count), replicas, rank, shuffle=False,
                                                        drop_last=drop_last))
            assert ours == theirs, (count, replicas, rank, drop_last)


def test_distributed_sampler_shares_out_one_shuffled_order():
    count = 23
    samplers = [DistributedSampler(range(count), 2, rank, seed=5) for rank in range(2)]
    for sampler in samplers:
        sampler.set_epoch(3)
    first, second = (sampler.indices() for sampler in samplers)
    one = DistributedSampler(range(count), 1, 0, seed=5)
    one.set_epoch(3)
    interleaved = np.empty(24, np.int64)
    interleaved[0::2], interleaved[1::2] = first, second
    np.testing.assert_array_equal(interleaved[:count], one.indices())
    with pytest.raises(ValueError, match="rank"):
        DistributedSampler(range(4), 2, 2)


def test_one_process_needs_no_mpi_and_init_leaves_the_environment_alone():
    import os
    import subprocess
    import sys

    program = ("import os, sys, numpy as np; from cnnkit import distributed as d; before = dict(os.environ); "
               "print(d.init(threads=1), d.all_reduce(np.ones(2)).tolist(), d.broadcast(np.ones(1)).tolist(), "
               "d.barrier(), 'mpi4py' in sys.modules, before == dict(os.environ))")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PMI_", "OMPI_", "PMIX_"))}
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["(0,", "1)", "[1.0,", "1.0]", "[1.0]", "None", "False", "True"]
