"""Receptive-field arithmetic along one axis: how a layer grows the field, the jump and the first centre.

For a window of size k, dilation d, stride s and padding p_before after a map with field ``rf``,
jump ``j`` and first-unit centre ``start`` (in input pixels):

    k_eff = d*(k - 1) + 1
    rf_out = rf + (k_eff - 1) * j
    jump_out = j * s
    start_out = start + ((k_eff - 1)/2 - p_before) * j
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class AxisField:
    """The receptive field of one unit along one axis: its size, the jump between neighbours, the first centre."""

    rf: float = 1
    jump: float = 1
    start: float = 0.5

    def window(self, kernel, stride=1, pad_before=0, dilation=1):
        """Field after a window layer: rf + (k_eff - 1)*jump, jump*stride, start shifted by the window centre."""
        effective = dilation * (kernel - 1) + 1
        return AxisField(self.rf + (effective - 1) * self.jump, self.jump * stride,
                         self.start + ((effective - 1) / 2 - pad_before) * self.jump)

    def transposed(self, kernel, stride=1, pad_before=0, dilation=1):
        """Field after a transposed conv: ceil(k_eff / s) input units reach one output; jump / s.

        An output pixel o gathers inputs i with i*s - p + t*d = o; at most ceil(k_eff / s) of them,
        so rf grows by (ceil(k_eff / s) - 1)*jump and neighbouring outputs are jump / s apart.
        """
        effective = dilation * (kernel - 1) + 1
        taps = math.ceil(effective / stride)
        centre = (pad_before - (effective - 1) / 2) / stride
        return AxisField(self.rf + (taps - 1) * self.jump, self.jump / stride, self.start + centre * self.jump)

    def merge(self, other):
        """Largest field over parallel branches (residual add, concatenation)."""
        if other.rf > self.rf:
            return AxisField(other.rf, max(self.jump, other.jump), other.start)
        return AxisField(self.rf, max(self.jump, other.jump), self.start)


def number(value):
    """An int when the value is integral (6.0 -> 6), else the float itself."""
    return int(value) if float(value).is_integer() else float(value)


def adaptive_window(in_size, out_size):
    """(largest window, mean stride) of adaptive pooling from ``in_size`` to ``out_size`` cells.

    Cell j pools [floor(j*W/O), ceil((j+1)*W/O)); when O divides W this is a pool with k = s = W/O.
    """
    largest = max(math.ceil((j + 1) * in_size / out_size) - (j * in_size) // out_size for j in range(out_size))
    return largest, in_size / out_size
