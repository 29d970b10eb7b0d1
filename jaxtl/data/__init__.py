"""In-memory datasets from TFDS, offline mirrors or embedded data; sinusoid tasks."""
from jaxtl.data.datasets import DATASETS, ImageDataset, DatasetNotFoundError, load_dataset, resolve_data_dir
