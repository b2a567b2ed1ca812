"""The model zoo: every architecture of the CNN canon, registered by name (torchvision's where it has one)."""
from .registry import create, list_models, register_model
