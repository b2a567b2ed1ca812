"""Stateless differentiable ops with torch.nn.functional's names and semantics (import as F)."""
from .arithmetic import conv_output_size, resolve_padding, same_padding
