"""Data: the unified sample schema, the synthetic default dataset, task-homogeneous sampling, loaders."""

from zoo.data import readers  # noqa: F401  (registers the format readers)
from zoo.data.datamodule import ZooDataModule
from zoo.data.dataset import SyntheticSegmentation
from zoo.data.io import read_image, write_png
from zoo.data.mixture import MixtureDataset
from zoo.data.sampler import TaskBatchSampler
from zoo.data.schema import Sample, collate
from zoo.data.synthetic import CATEGORIES, VOCABULARY

__all__ = [
    "CATEGORIES",
    "MixtureDataset",
    "VOCABULARY",
    "Sample",
    "SyntheticSegmentation",
    "TaskBatchSampler",
    "ZooDataModule",
    "collate",
    "read_image",
    "write_png",
]
