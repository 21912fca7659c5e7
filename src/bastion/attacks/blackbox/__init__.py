"""Black-box attacks: they see only the model's outputs (scores or labels), never its gradients."""

from bastion.attacks.blackbox.boundary import BoundaryAttack
from bastion.attacks.blackbox.hopskipjump import HopSkipJump
from bastion.attacks.blackbox.simba import SimBA
from bastion.attacks.blackbox.square import Square

__all__ = ["BoundaryAttack", "HopSkipJump", "SimBA", "Square"]
