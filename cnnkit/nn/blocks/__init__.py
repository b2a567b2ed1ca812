"""Building blocks of the classic architectures, each naming its paper."""
from . import aspp, asymmetric, conv_norm, dense, inception, mobile, nin, residual, se, shuffle, vgg
from .aspp import *  # noqa: F403
from .asymmetric import *  # noqa: F403
from .conv_norm import *  # noqa: F403
from .dense import *  # noqa: F403
from .inception import *  # noqa: F403
from .mobile import *  # noqa: F403
from .nin import *  # noqa: F403
from .residual import *  # noqa: F403
from .se import *  # noqa: F403
from .shuffle import *  # noqa: F403
from .vgg import *  # noqa: F403

# Only the blocks themselves reach ``cnnkit.nn`` (not these submodule names).
__all__ = [name for module in (aspp, asymmetric, conv_norm, dense, inception, mobile, nin, residual, se, shuffle, vgg)
           for name in module.__all__]
