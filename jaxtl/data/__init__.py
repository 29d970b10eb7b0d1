"""In-memory datasets from TFDS, offline mirrors or embedded data (`datasets`,
`image_dataset`), image files (`images`), corruptions (`corruptions`, `image_ops`) and
distribution shifts (`shifts`).

Layer 1: imports only `jaxtl.errors` and its own modules.
"""
from jaxtl.data.datasets import (DATASETS, DatasetNotFoundError, ImageDataset, load_dataset,
                                 resolve_data_dir)

__all__ = ["DATASETS", "DatasetNotFoundError", "ImageDataset", "load_dataset", "resolve_data_dir"]
