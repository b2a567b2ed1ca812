"""Layers, containers and blocks with torch.nn's names, arguments and state_dict keys."""
from . import init
from .containers import ModuleDict, ModuleList, Sequential
from .module import Module
from .parameter import Parameter
from .activation import *  # noqa: F403
from .conv import *  # noqa: F403
from .deform import *  # noqa: F403
from .dropout import *  # noqa: F403
from .shape import *  # noqa: F403
from .linear import *  # noqa: F403
from .normalization import *  # noqa: F403
from .pooling import *  # noqa: F403
from .blocks import *  # noqa: F403
from .sync_batchnorm import SyncBatchNorm
from . import parallel
from . import utils  # nn.utils.fuse, as torch.nn.utils
