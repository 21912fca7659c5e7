"""Data: the Dataset value type, bundled demo data, and loaders for a user's own data."""

from bastion.data.dataset import Dataset
from bastion.data.demo import DEMO_DATASETS, load_demo
from bastion.data.loaders import load_csv, load_data, load_image_folder, load_npz

__all__ = ["DEMO_DATASETS", "Dataset", "load_csv", "load_data", "load_demo", "load_image_folder", "load_npz"]
