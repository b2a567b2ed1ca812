"""Analysis of CNNs: output-size and receptive-field arithmetic, parameter/MAC counts, model summaries, FC-to-conv.

- ``output_size``, ``receptive_field``, ``conv_params``, ``conv_macs`` and the ``compare_*`` helpers: the
  formulas of the course notes, computed;
- ``summary(model, input_size)``: a per-layer table (shapes, params, MACs, receptive field, jump, memory);
- ``fc_to_conv(model, input_size)`` (alias ``convolutionalize``): a fully convolutional copy of a classifier.
"""
from .arithmetic import *  # noqa: F403
from .arithmetic import __all__ as _arithmetic_all
from .fc_to_conv import convolutionalize, fc_to_conv
from .summary import LayerRecord, Summary, summary

__all__ = [*_arithmetic_all, "LayerRecord", "Summary", "summary", "fc_to_conv", "convolutionalize"]
