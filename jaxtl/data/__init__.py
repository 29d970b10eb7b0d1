"""In-memory datasets from TFDS, offline mirrors or embedded data; sinusoid tasks."""
from jaxtl.data.datasets import (DATASETS, DatasetNotFoundError, ImageDataset, load_dataset,
                                 resolve_data_dir)

__all__ = ["DATASETS", "DatasetNotFoundError", "ImageDataset", "load_dataset", "resolve_data_dir"]
