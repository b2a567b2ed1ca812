"""Stochastic gradient descent with momentum, dampening, Nesterov and weight decay (torch's update rule)."""
from __future__ import annotations

from .checks import check_hyperparameters
from .optimizer import Optimizer


class SGD(Optimizer):
    """SGD: ``g = grad + wd*p``; ``b = m*b + (1-dampening)*g`` (``b = g`` at first); ``p -= lr*(g + m*b | b)``."""

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *, maximize=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize)
        check_hyperparameters("SGD", defaults)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum requires a momentum > 0 and zero dampening")
        super().__init__(params, defaults)

    def step(self, closure=None):
        """Apply one SGD update to every parameter with a gradient; returns the closure's loss if given."""
        loss = self._run_closure(closure)
        for group in self.param_groups:
            # Python floats: a NumPy float64 scalar here would promote float32 parameters' state to float64
            lr, momentum, dampening = float(group["lr"]), float(group["momentum"]), float(group["dampening"])
            weight_decay, nesterov = float(group["weight_decay"]), group["nesterov"]
            for param, grad in self._params_with_grad(group):
                if group["maximize"]:
                    grad = -grad
                if weight_decay != 0:
                    grad = grad + weight_decay * param.data
                if momentum != 0:
                    state = self.state.setdefault(param, {})
                    buffer = state.get("momentum_buffer")
                    if buffer is None:
                        buffer = grad.copy()  # a copy: the buffer is updated in place, p.grad never is
                        state["momentum_buffer"] = buffer
                    else:
                        buffer *= momentum
                        buffer += (1 - dampening) * grad
                    grad = grad + momentum * buffer if nesterov else buffer
                param.data -= lr * grad
        return loss
