"""Bastion: attack, harden and guard machine-learning classifiers.

The Python API in one screen::

    import bastion

    report = bastion.assess()                                   # the bundled MNIST demo
    model = bastion.load_torch_model("net.pt", input_shape=(3, 32, 32))
    data = bastion.load_data("test.npz")
    report = bastion.assess(model, data, norm="l2", epsilons=[0.5], out_dir="reports/")
    result = bastion.PGD(steps=40)(model, data.x[:64], data.y[:64], norm="linf", eps=8 / 255)
"""

__version__ = "0.1.0"

from bastion.attacks import ATTACKS, FGSM, PGD, Attack, AttackResult, make_attack
from bastion.data import Dataset, load_data, load_demo
from bastion.demo import demo_model
from bastion.errors import BastionError
from bastion.evaluation import assess
from bastion.models import Classifier, Knowledge, TorchClassifier, load_torch_model
from bastion.norms import L1, L2, Linf, get_norm
from bastion.report.model import Assessment

__all__ = [
    "ATTACKS",
    "FGSM",
    "L1",
    "L2",
    "PGD",
    "Assessment",
    "Attack",
    "AttackResult",
    "BastionError",
    "Classifier",
    "Dataset",
    "Knowledge",
    "Linf",
    "TorchClassifier",
    "__version__",
    "assess",
    "demo_model",
    "get_norm",
    "load_data",
    "load_demo",
    "load_torch_model",
    "make_attack",
]
