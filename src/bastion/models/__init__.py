"""Models: the Classifier protocol and one small adapter per kind of model."""

from bastion.models.files import ModelFormat, sniff_format
from bastion.models.interface import Classifier, Knowledge, QueryCounter, predict, value_and_grad
from bastion.models.load import load_factory, load_torch_model
from bastion.models.restricted import Restricted, restrict
from bastion.models.torch import TorchClassifier

__all__ = [
    "Classifier",
    "Knowledge",
    "ModelFormat",
    "QueryCounter",
    "Restricted",
    "TorchClassifier",
    "load_factory",
    "load_torch_model",
    "predict",
    "restrict",
    "sniff_format",
    "value_and_grad",
]
