"""Adam and AdamW (decoupled weight decay), with AMSGrad; torch's single-tensor update rule."""
from __future__ import annotations

import math

from ..backend import get_array_module
from .checks import check_hyperparameters
from .optimizer import Optimizer


def lerp_(start, end, weight):
    """In place ``start += weight*(end - start)``, rounded the way torch's ``lerp_`` rounds."""
    if abs(weight) < 0.5:
        start += weight * (end - start)
    else:
        start[...] = end - (end - start) * (1 - weight)
    return start


class Adam(Optimizer):
    """Adam: ``m = lerp(m, g, 1-b1)``, ``v = b2*v + (1-b2)*g^2``, ``p -= lr/(1-b1^t) * m/(sqrt(v)/sqrt(1-b2^t)+eps)``.

    ``weight_decay`` adds ``wd*p`` to the gradient; with ``decoupled_weight_decay=True`` (AdamW) it instead
    scales ``p *= 1 - lr*wd`` before the update. ``amsgrad`` divides by the running maximum of ``v``.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
                 maximize=False, decoupled_weight_decay=False):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize,
                        decoupled_weight_decay=decoupled_weight_decay)
        check_hyperparameters(type(self).__name__, defaults)
        defaults["betas"] = tuple(float(beta) for beta in betas)
        super().__init__(params, defaults)

    def _init_state(self, param, amsgrad):
        xp = get_array_module()
        # the step count is a float32 scalar array, as torch keeps it
        state = {"step": xp.zeros((), dtype=xp.float32), "exp_avg": xp.zeros_like(param.data),
                 "exp_avg_sq": xp.zeros_like(param.data)}
        if amsgrad:
            state["max_exp_avg_sq"] = xp.zeros_like(param.data)
        return state

    def step(self, closure=None):
        """Apply one Adam(W) update to every parameter with a gradient; returns the closure's loss if given."""
        xp = get_array_module()
        loss = self._run_closure(closure)
        for group in self.param_groups:
            # Python floats: a NumPy float64 scalar here would promote float32 parameters' state to float64
            lr, eps, weight_decay = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
            amsgrad = group["amsgrad"]
            beta1, beta2 = (float(beta) for beta in group["betas"])
            for param, grad in self._params_with_grad(group):
                if group["maximize"]:
                    grad = -grad
                state = self.state.get(param)
                if not state:
                    state = self.state[param] = self._init_state(param, amsgrad)
                state["step"] += 1
                if weight_decay != 0:
                    if group["decoupled_weight_decay"]:
                        param.data *= 1 - lr * weight_decay
                    else:
                        grad = grad + weight_decay * param.data
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                lerp_(exp_avg, grad, 1 - beta1)
                exp_avg_sq *= beta2
                exp_avg_sq += (1 - beta2) * grad * grad
                step = float(state["step"])
                step_size = lr / (1 - beta1 ** step)
                bias_correction2_sqrt = math.sqrt(1 - beta2 ** step)
                if amsgrad:
                    if "max_exp_avg_sq" not in state:
                        state["max_exp_avg_sq"] = xp.zeros_like(param.data)
                    xp.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
                    second_moment = state["max_exp_avg_sq"]
                else:
                    second_moment = exp_avg_sq
                denom = xp.sqrt(second_moment) / bias_correction2_sqrt + eps
                param.data -= step_size * (exp_avg / denom)
        return loss


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): ``p *= 1 - lr*wd`` before the Adam step."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         maximize=maximize, decoupled_weight_decay=True)

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True  # an AdamW stays decoupled whatever was saved
