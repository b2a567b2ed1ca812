"""Class evidence: CAM, Grad-CAM, gradient saliency and occlusion, checked against their maths, torch and a
trained LeNet-5."""
import numpy as np
import pytest

import cnnkit
from cnnkit import functional as F
from cnnkit import nn
from cnnkit.autograd import Tensor, no_grad
from cnnkit.data.shapes import Shapes
from cnnkit.models import create
from cnnkit.optim import Adam
from cnnkit.viz.evidence import class_activation_map, grad_cam, normalize_map, occlusion, saliency, upsample_bilinear
from cnnkit.viz.evidence_plots import plot_evidence

CAM_TOLERANCE = 1e-5


def gap_net():
    """conv-relu-pool-conv, global average pooling and a linear layer: CAM's setting, the last conv feeding GAP."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5))


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).standard_normal((3, 20, 20)).astype(np.float32)


def test_grad_cam_on_the_last_conv_of_gap_linear_equals_cam(image):
    cnnkit.manual_seed(1)
    model = gap_net()
    for target in range(5):
        cam = class_activation_map(model, image, target)
        gradcam = grad_cam(model, image, "3", target)
        assert cam.heatmap.shape == gradcam.heatmap.shape == (20, 20)
        assert cam.layer == gradcam.layer == "3" and cam.target == gradcam.target == target
        assert cam.raw.max() > 0  # a map with some positive evidence, so the comparison means something
        np.testing.assert_allclose(normalize_map(gradcam.heatmap), normalize_map(cam.heatmap), rtol=0,
                                   atol=CAM_TOLERANCE)
        # Same up to a positive scale: Grad-CAM's weights are CAM's divided by the map's area (10 x 10).
        np.testing.assert_allclose(gradcam.raw * 100, cam.raw, rtol=1e-4, atol=1e-6)


def test_grad_cam_equals_cam_on_resnet18_at_its_last_block(image):
    cnnkit.manual_seed(2)
    model = create("resnet18", num_classes=4, small_input=True)
    cam = class_activation_map(model, image)
    assert cam.layer == "layer4"
    gradcam = grad_cam(model, image, "layer4", cam.target)
    np.testing.assert_allclose(normalize_map(gradcam.heatmap), normalize_map(cam.heatmap), atol=CAM_TOLERANCE)


@pytest.mark.parametrize("name", ["nin", "googlenet", "densenet121", "mobilenet_v2", "shufflenet_v2_x0_5",
                                  "shufflenet_v1"])
def test_cam_works_on_the_global_average_pooling_models(name):
    cnnkit.manual_seed(3)
    model = create(name, num_classes=4, small_input=True)
    x = np.random.default_rng(1).standard_normal((3, 32, 32)).astype(np.float32)
    with no_grad():
        logits = model.eval()(Tensor(x[None])).data
    cam = class_activation_map(model, x)
    assert cam.heatmap.shape == (32, 32) and np.isfinite(cam.heatmap).all() and cam.heatmap.min() >= 0
    assert cam.target == int(np.argmax(logits[0])) and cam.score == pytest.approx(float(logits[0].max()), rel=1e-5)
    assert cam.layer in dict(model.named_modules())


def test_grad_cam_and_saliency_match_torch(image):
    torch = pytest.importorskip("torch")
    cnnkit.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5))
    reference = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                    torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(),
                                    torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 5))
    reference.load_state_dict({key: torch.from_numpy(np.array(value)) for key, value in model.state_dict().items()})
    for target in (0, 3):
        # Grad-CAM at the second conv (before its relu), done with torch's autograd and interpolate.
        kept = {}
        handle = reference[3].register_forward_hook(lambda module, inputs, output, kept=kept: kept.update(a=output))
        x = torch.from_numpy(image[None]).requires_grad_(True)
        scores = reference(x)
        kept["a"].retain_grad()
        scores[0, target].backward()
        handle.remove()
        weights = kept["a"].grad[0].mean(dim=(1, 2))
        raw = torch.relu((weights[:, None, None] * kept["a"][0]).sum(0)).detach()
        expected = torch.nn.functional.interpolate(raw[None, None], size=(20, 20), mode="bilinear",
                                                   align_corners=False)[0, 0].numpy()
        ours = grad_cam(model, image, "3", target)
        np.testing.assert_allclose(ours.raw, raw.numpy(), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(ours.heatmap, expected, rtol=1e-4, atol=1e-6)
        assert ours.score == pytest.approx(float(scores.detach()[0, target]), rel=1e-5)
        expected_saliency = x.grad[0].abs().amax(0).numpy()
        np.testing.assert_allclose(saliency(model, image, target).heatmap, expected_saliency, rtol=1e-4, atol=1e-7)


def test_upsample_bilinear_matches_torch_interpolate():
    torch = pytest.importorskip("torch")
    heatmap = np.random.default_rng(2).standard_normal((5, 7))
    for size in [(28, 28), (9, 20), (5, 7)]:
        expected = torch.nn.functional.interpolate(torch.from_numpy(heatmap)[None, None], size=size,
                                                   mode="bilinear", align_corners=False)[0, 0].numpy()
        np.testing.assert_allclose(upsample_bilinear(heatmap, size), expected, rtol=1e-12, atol=1e-12)


def test_explaining_leaves_no_gradients_and_restores_flags(image):
    cnnkit.manual_seed(5)
    model = gap_net().train()
    model[0].weight.requires_grad_(False)
    flags = [param.requires_grad for param in model.parameters()]
    grad_cam(model, image, "3")
    saliency(model, image)
    assert all(param.grad is None for param in model.parameters())
    assert [param.requires_grad for param in model.parameters()] == flags
    assert model.training  # evaluated in eval mode, then put back


def test_errors_name_the_method_and_the_fix(image):
    cnnkit.manual_seed(6)
    model = gap_net()
    with pytest.raises(ValueError, match=r"grad_cam: Sequential has no layer named 'conv9'; valid names include 0, 3"):
        grad_cam(model, image, "conv9")
    with pytest.raises(ValueError, match=r"no 4-D"):
        grad_cam(model, image, "6")  # the linear layer
    for function in (class_activation_map, saliency, occlusion):
        with pytest.raises(ValueError, match=rf"{function.__name__}: target 5 is out of range for a model with 5 "
                                             r"classes; use 0..4"):
            function(model, image, target=5)
    with pytest.raises(ValueError, match="target -1 is out of range"):
        grad_cam(model, image, "3", target=-1)
    with pytest.raises(TypeError, match="target must be a class index"):
        saliency(model, image, target=1.5)
    lenet = create("lenet5", num_classes=6, in_channels=1, image_size=28)
    with pytest.raises(ValueError, match=r"class_activation_map: LeNet5 does not end in global average pooling.*"
                                         r"use grad_cam"):
        class_activation_map(lenet, np.zeros((1, 28, 28), np.float32))
    with pytest.raises(ValueError, match=r"occlusion: window must be 1\.\.20"):
        occlusion(model, image, window=21)


@pytest.fixture(scope="module")
def trained_lenet():
    """LeNet-5 trained for a few seconds on 2000 shapes (about 90% test accuracy), and 50 unseen test images."""
    cnnkit.manual_seed(0)
    train = Shapes(2000, seed=0, train=True)
    x = train.data[:, None].astype(np.float32) / 255
    y = train.targets.astype(np.int64)
    model = create("lenet5", num_classes=6, in_channels=1, image_size=28)
    optimizer = Adam(model.parameters(), lr=2e-3)
    order_source = np.random.default_rng(0)
    for _ in range(3):
        order = order_source.permutation(len(x))
        for start in range(0, len(x), 64):
            batch = order[start:start + 64]
            loss = F.cross_entropy(model(Tensor(x[batch])), Tensor(y[batch]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    test = Shapes(50, seed=0, train=False)
    return model.eval(), test.data[:, None].astype(np.float32) / 255, test.targets


def test_occlusion_is_highest_on_the_mark(trained_lenet):
    model, images, labels = trained_lenet
    with no_grad():
        accuracy = float((model(Tensor(images)).data.argmax(1) == labels).mean())
    assert accuracy >= 0.7  # otherwise the model has not learnt the marks and the check below means nothing
    on_mark, peak_on_mark = 0, 0
    for picture in images:
        heat = occlusion(model, picture, window=5, stride=2).heatmap
        mark = picture[0] > 0.5
        on_mark += heat[mark].mean() > heat[~mark].mean()
        # The peak lies on the mark or within 2 pixels of it (the patch is 5 wide).
        row, col = np.unravel_index(np.argmax(heat), heat.shape)
        peak_on_mark += mark[max(0, row - 2):row + 3, max(0, col - 2):col + 3].any()
    print(f"\nocclusion on a trained LeNet-5 (test accuracy {accuracy:.2f}): mark above background in {on_mark}/50 "
          f"images, peak on the mark in {peak_on_mark}/50")
    assert on_mark >= 45 and peak_on_mark >= 45


def test_plot_evidence_writes_a_figure(trained_lenet, tmp_path):
    model, images, _ = trained_lenet
    for method in ("gradcam", "saliency", "occlusion"):
        path = plot_evidence(model, images[0], tmp_path / f"{method}.png", method, class_names=list("abcdef"))
        assert path.endswith(f"{method}.png") and (tmp_path / f"{method}.png").stat().st_size > 1000


def every_map(model, image):
    return {"cam": class_activation_map(model, image), "gradcam": grad_cam(model, image, "3"),
            "saliency": saliency(model, image), "occlusion": occlusion(model, image)}


def test_float64_models_give_the_same_maps(image):
    cnnkit.manual_seed(7)
    model = gap_net()
    single = every_map(model, image)
    double = every_map(model.double(), image)
    for name, evidence in double.items():
        assert evidence.heatmap.dtype == np.float64 and evidence.target == single[name].target
        np.testing.assert_allclose(evidence.heatmap, single[name].heatmap, rtol=1e-4,
                                   atol=1e-5 * np.abs(single[name].heatmap).max())
