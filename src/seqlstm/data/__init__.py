from .sources import DATASETS, LabelledImages, load_dataset

__all__ = ["DATASETS", "LabelledImages", "load_dataset"]
