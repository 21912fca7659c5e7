"""The exception tree: every error Bastion raises on purpose, with its CLI exit code and HTTP status.

::

    BastionError                      exit 1   HTTP 500
    ├── InvalidInputError             exit 2   HTTP 400   a value the caller gave is wrong
    │   ├── ConfigError               exit 2   HTTP 400   an option, preset or attack name
    │   └── DataError                 exit 2   HTTP 422   data: NaN/Inf, bounds, labels, shapes, empty
    ├── ModelError                    exit 3   HTTP 500   a model could not be loaded or run
    │   ├── UnsafeModelError          exit 4   HTTP 400   a model file that would run code when loaded
    │   └── RemoteModelError          exit 3   HTTP 502   a remote endpoint that kept failing or is unreachable
    ├── NotFoundError                 exit 2   HTTP 404   a file or folder that does not exist
    ├── BudgetExhaustedError          exit 5   HTTP 429   a query budget ran out
    ├── AdvisoryServiceError          exit 7   HTTP 502   a vulnerability advisory service unreachable or broken
    ├── IntegrityError                exit 6   HTTP 500   a config or model file differs from its manifest
    ├── RequestRejectedError          exit 2   HTTP 400   the gateway refused a request (with its own 4xx and code)
    ├── ThresholdError                exit 10  HTTP 200   an assessment ran but missed a --fail-under
    ├── FuzzFindingsError             exit 11  HTTP 200   a fuzzing run worked and found failures
    └── AuditFindingsError            exit 12  HTTP 200   an audit ran and found something at or above --fail-on

The CLI prints ``str(error)`` and exits with ``error.exit_code``; it never shows a traceback for
these. Anything else reaching the top is a bug and exits 70 (EX_SOFTWARE).
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AdvisoryServiceError",
    "AuditFindingsError",
    "BastionError",
    "BudgetExhaustedError",
    "ConfigError",
    "DataError",
    "FuzzFindingsError",
    "IntegrityError",
    "InvalidInputError",
    "ModelError",
    "NotFoundError",
    "RemoteModelError",
    "RequestRejectedError",
    "ThresholdError",
    "UnsafeModelError",
]

INTERNAL_ERROR_EXIT_CODE = 70


class BastionError(Exception):
    """Base of every error Bastion raises on purpose."""

    exit_code: ClassVar[int] = 1
    http_status: ClassVar[int] = 500
    code: ClassVar[str] = "bastion_error"


class InvalidInputError(BastionError):
    """A value the caller supplied is out of range or of the wrong kind."""

    exit_code = 2
    http_status = 400
    code = "invalid_input"


class ConfigError(InvalidInputError):
    """An option, preset, norm or attack name that does not exist or does not fit."""

    code = "invalid_config"


class DataError(InvalidInputError):
    """Data that cannot be used: NaN/Inf, outside the bounds, bad labels, wrong shape, empty."""

    http_status = 422
    code = "invalid_data"


class ModelError(BastionError):
    """A model that could not be loaded or that failed when run."""

    exit_code = 3
    code = "model_error"


class UnsafeModelError(ModelError):
    """A model file whose loading could execute code (a pickle), refused."""

    exit_code = 4
    http_status = 400
    code = "unsafe_model"


class RemoteModelError(ModelError):
    """A remote model endpoint that could not be reached or kept failing after its retries."""

    http_status = 502
    code = "remote_model_error"


class NotFoundError(BastionError):
    """A file or folder the caller named does not exist."""

    exit_code = 2
    http_status = 404
    code = "not_found"


class BudgetExhaustedError(BastionError):
    """A hard query budget ran out before the work was done."""

    exit_code = 5
    http_status = 429
    code = "budget_exhausted"


class IntegrityError(BastionError):
    """A configuration, model or other referenced file that differs from its manifest (``bastion config verify``)."""

    exit_code = 6
    http_status = 500
    code = "integrity_mismatch"


class RequestRejectedError(BastionError):
    """The gateway refused a request; ``code`` is stable and machine-readable, ``status`` a 4xx.

    Example::

        raise RequestRejectedError("too_many_pixels", "image is 20000x20000 pixels; the limit is 4000000", status=413)
    """

    exit_code = 2
    http_status = 400
    code = "rejected"

    def __init__(self, code: str, detail: str, *, status: int = 400, headers: dict[str, str] | None = None) -> None:
        if not 400 <= status < 500:
            raise ValueError(f"expected a 4xx status for a rejection, got {status}")
        super().__init__(detail)
        self.code = code  # type: ignore[misc]
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})


class ThresholdError(BastionError):
    """The assessment ran, but a ``--fail-under`` threshold was missed (for CI)."""

    exit_code = 10
    http_status = 200
    code = "threshold_missed"


class AdvisoryServiceError(BastionError):
    """A vulnerability advisory service (OSV, PyPI) that could not be reached or answered nonsense."""

    exit_code = 7
    http_status = 502
    code = "advisory_service_error"


class AuditFindingsError(BastionError):
    """The audit ran, and found a vulnerability, unsafe model file or integrity mismatch at or above ``--fail-on``."""

    exit_code = 12
    http_status = 200
    code = "audit_findings"


class FuzzFindingsError(BastionError):
    """``bastion fuzz`` ran and found failures (findings are saved with reproducers; exit 11)."""

    exit_code = 11
    http_status = 200
    code = "fuzz_findings"
