"""Poisoning: attacks on the training data and the feedback loop, and the susceptibility assessment."""

from bastion.poisoning.backdoor import BadNets, BlendBackdoor, badnets_trigger, blend_trigger
from bastion.poisoning.clean_label import FeatureCollision, penultimate_features
from bastion.poisoning.feedback import CampaignResult, FeedbackCampaign, Refusal, SentFeedback
from bastion.poisoning.interface import PoisonAttack, PoisonResult, Trigger, poison_count
from bastion.poisoning.label_flip import LossLabelFlip, RandomLabelFlip, TargetedLabelFlip
from bastion.poisoning.registry import POISONS, make_poison
from bastion.poisoning.susceptibility import DEFAULT_ATTACKS, DEFAULT_RATES, assess_poisoning

__all__ = [
    "DEFAULT_ATTACKS",
    "DEFAULT_RATES",
    "POISONS",
    "BadNets",
    "BlendBackdoor",
    "CampaignResult",
    "FeatureCollision",
    "FeedbackCampaign",
    "LossLabelFlip",
    "PoisonAttack",
    "PoisonResult",
    "RandomLabelFlip",
    "Refusal",
    "SentFeedback",
    "TargetedLabelFlip",
    "Trigger",
    "assess_poisoning",
    "badnets_trigger",
    "blend_trigger",
    "make_poison",
    "penultimate_features",
    "poison_count",
]
