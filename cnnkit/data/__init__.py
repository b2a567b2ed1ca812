"""Data sets (Shapes, MNIST, FashionMNIST, CIFAR10, ImageFolder), transforms and the DataLoader."""
from . import transforms
from .cifar import CIFAR10
from .dataset import ConcatDataset, Dataset, InMemoryImages, Subset, TensorDataset
from .factory import DATASET_NAMES, dataset_info, default_data_root, load_dataset, parse_split, split_indices
from .folder import ImageFolder
from .idx import parse_idx, read_idx
from .loader import DataLoader, default_collate
from .mnist import MNIST, FashionMNIST
from .random import get_data_rng, use_data_rng
from .sampler import DistributedSampler
from .shapes import Shapes, generate_shapes

__all__ = ["Dataset", "Subset", "TensorDataset", "ConcatDataset", "DataLoader", "default_collate", "transforms",
           "Shapes", "generate_shapes", "MNIST", "FashionMNIST", "CIFAR10", "ImageFolder", "read_idx", "parse_idx",
           "load_dataset", "dataset_info", "parse_split", "split_indices", "default_data_root", "DATASET_NAMES",
           "get_data_rng", "use_data_rng", "DistributedSampler"]
