"""RMSprop with optional momentum and centring (torch's update rule)."""
from __future__ import annotations

from ..backend import get_array_module
from .adam import lerp_
from .checks import check_hyperparameters
from .optimizer import Optimizer


class RMSprop(Optimizer):
    """RMSprop: ``v = a*v + (1-a)*g^2``; ``d = sqrt(v - mean_g^2 | v) + eps``; ``p -= lr*g/d`` (or via momentum)."""

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False, *,
                 maximize=False):
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                        weight_decay=weight_decay, maximize=maximize)
        check_hyperparameters("RMSprop", defaults)
        super().__init__(params, defaults)

    def step(self, closure=None):
        """Apply one RMSprop update to every parameter with a gradient; returns the closure's loss if given."""
        xp = get_array_module()
        loss = self._run_closure(closure)
        for group in self.param_groups:
            # Python floats: a NumPy float64 scalar here would promote float32 parameters' state to float64
            lr, alpha, eps = float(group["lr"]), float(group["alpha"]), float(group["eps"])
            weight_decay, momentum, centered = float(group["weight_decay"]), float(group["momentum"]), group["centered"]
            for param, grad in self._params_with_grad(group):
                if group["maximize"]:
                    grad = -grad
                state = self.state.get(param)
                if not state:
                    state = self.state[param] = {"step": xp.zeros((), dtype=xp.float32),
                                                 "square_avg": xp.zeros_like(param.data)}
                if momentum > 0 and "momentum_buffer" not in state:
                    state["momentum_buffer"] = xp.zeros_like(param.data)
                if centered and "grad_avg" not in state:
                    state["grad_avg"] = xp.zeros_like(param.data)
                state["step"] += 1
                if weight_decay != 0:
                    grad = grad + weight_decay * param.data
                square_avg = state["square_avg"]
                square_avg *= alpha
                square_avg += (1 - alpha) * grad * grad
                if centered:
                    grad_avg = lerp_(state["grad_avg"], grad, 1 - alpha)
                    avg = xp.sqrt(square_avg - grad_avg * grad_avg)
                else:
                    avg = xp.sqrt(square_avg)
                avg += eps
                if momentum > 0:
                    buffer = state["momentum_buffer"]
                    buffer *= momentum
                    buffer += grad / avg
                    param.data -= lr * buffer
                else:
                    param.data -= lr * (grad / avg)
        return loss
