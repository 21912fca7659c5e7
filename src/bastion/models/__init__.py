"""Models: the Classifier protocol and one small adapter per kind of model."""

from bastion.models.estimated import Estimated
from bastion.models.files import ModelFormat, sniff_format
from bastion.models.interface import Classifier, Knowledge, QueryCounter, predict, value_and_grad
from bastion.models.load import load_factory, load_torch_model
from bastion.models.onnx import OnnxClassifier
from bastion.models.open import load_model
from bastion.models.remote import RemoteClassifier, RemoteConfig
from bastion.models.restricted import Restricted, restrict
from bastion.models.sklearn import SklearnClassifier
from bastion.models.torch import TorchClassifier

__all__ = [
    "Classifier",
    "Estimated",
    "Knowledge",
    "ModelFormat",
    "OnnxClassifier",
    "QueryCounter",
    "RemoteClassifier",
    "RemoteConfig",
    "Restricted",
    "SklearnClassifier",
    "TorchClassifier",
    "load_factory",
    "load_model",
    "load_torch_model",
    "predict",
    "restrict",
    "sniff_format",
    "value_and_grad",
]
