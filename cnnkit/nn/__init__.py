"""Layers, containers and blocks with torch.nn's names, arguments and state_dict keys."""
from . import init
from .containers import ModuleDict, ModuleList, Sequential
from .module import Module
from .parameter import Parameter
