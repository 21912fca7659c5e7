"""Model extraction: steal a surrogate by querying the target, then attack the target through it."""

from bastion.attacks.extraction.stealing import Extraction, ExtractionResult, agreement
from bastion.attacks.extraction.transfer import TransferResult, transfer_attack

__all__ = ["Extraction", "ExtractionResult", "TransferResult", "agreement", "transfer_attack"]
