"""The project's exception tree.

Every error TradeGuard raises on purpose derives from :class:`TradeGuardError` and carries the ids and
amounts it is about as attributes, so that the HTTP layer can map it to a problem+json response in one place
and the CLI can print it without a stack trace::

    TradeGuardError
    ├── ConfigError                 bad or missing configuration
    ├── DomainError                 a rule of SPEC §2–§3 refuses the request (pure, no I/O involved)
    └── ChainError                  anything that went wrong talking to the chain
        ├── ChainUnavailable        the node does not answer (HTTP 503)
        ├── TransactionFailed       mined with status 0 and no decodable reason
        └── ContractRevert          a custom error decoded by selector against our ABIs (HTTP 409/422)
"""

from __future__ import annotations

from typing import Any


class TradeGuardError(Exception):
    """Root of every error TradeGuard raises on purpose."""


class ConfigError(TradeGuardError):
    """Configuration is missing or invalid."""


class DomainError(TradeGuardError):
    """A business rule refuses the request."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.details = details


class ChainError(TradeGuardError):
    """Talking to the chain failed."""


class ChainUnavailable(ChainError):
    """The node cannot be reached or did not answer in time."""


class TransactionFailed(ChainError):
    """A transaction was mined with status 0 and its reason could not be decoded."""

    def __init__(self, tx_hash: str, message: str = "transaction reverted") -> None:
        super().__init__(f"{message} (tx {tx_hash})")
        self.tx_hash = tx_hash


class ContractRevert(ChainError):
    """A contract reverted with a custom error we know.

    ``name`` is the Solidity error name (``"DeadlineNotReached"``), ``args`` its decoded arguments by name,
    ``data`` the raw revert data and ``tx_hash`` the mined transaction, if there was one.
    """

    def __init__(self, name: str, args: dict[str, Any], data: bytes, tx_hash: str | None = None) -> None:
        shown = ", ".join(f"{k}={_show(v)}" for k, v in args.items())
        super().__init__(f"{name}({shown})")
        self.name = name
        self.args_by_name = args
        self.data = data
        self.tx_hash = tx_hash


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)
