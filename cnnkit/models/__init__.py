"""The model zoo: every architecture of the CNN canon, registered by name (torchvision's where it has one)."""
from .registry import create, is_model, list_models, model_entrypoint, register_model
from .lenet import lenet5  # noqa: E402,F401
from .simple import simple_cnn  # noqa: E402,F401
from .alexnet import alexnet  # noqa: E402,F401
from .densenet import densenet121  # noqa: E402,F401
from .googlenet import googlenet  # noqa: E402,F401
from .mobilenet import mobilenet_v1, mobilenet_v2  # noqa: E402,F401
from .nin import nin  # noqa: E402,F401
from .resnet import (resnet18, resnet34, resnet50, resnet101, resnext50_32x4d, se_resnet18,  # noqa: E402,F401
                     se_resnet50)
from .shufflenet import shufflenet_v1, shufflenet_v2_x0_5, shufflenet_v2_x1_0  # noqa: E402,F401
from .vgg import vgg11, vgg11_bn, vgg13, vgg13_bn, vgg16, vgg16_bn, vgg19, vgg19_bn  # noqa: E402,F401
