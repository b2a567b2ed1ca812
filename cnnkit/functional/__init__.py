"""Stateless differentiable ops with torch.nn.functional's names and semantics (import as F)."""
from .windows import conv_output_size, resolve_padding, same_padding
from .activation import *  # noqa: F403
from .conv import *  # noqa: F403
from .deform import *  # noqa: F403
from .dropout import *  # noqa: F403
from .linear import *  # noqa: F403
from .loss import *  # noqa: F403
from .normalization import *  # noqa: F403
from .padding import *  # noqa: F403
from .pooling import *  # noqa: F403
from .shuffle import *  # noqa: F403
