"""The project's exception tree.

Every error TradeGuard raises on purpose derives from :class:`TradeGuardError` and carries the ids and
amounts it is about as attributes, so that the HTTP layer can map it to a problem+json response in one place
and the CLI can print it without a stack trace::

    TradeGuardError
    ├── ConfigError                 bad or missing configuration
    │   └── CorruptChainState       local mode: the anvil state file cannot be loaded (names file and backup)
    ├── DomainError                 a rule of SPEC §2–§3 refuses the request (HTTP 409 or 422)
    │   ├── NotFound                no such object, or not visible to the caller (HTTP 404)
    │   ├── InvalidInput            the request is well-formed but its content is refused (HTTP 422)
    │   └── IdempotencyConflict     Idempotency-Key reused with another request (422) or still running (409)
    ├── AuthError                   no or a bad API key (HTTP 401)
    │   └── Forbidden               the principal's role may not do this (HTTP 403)
    ├── FeedError                   a logistics input is malformed or its signature is bad (HTTP 400/401/422)
    └── ChainError                  anything that went wrong talking to the chain
        ├── ChainUnavailable        the node does not answer (HTTP 503)
        ├── ChainHalted             chain work is stopped: a reorg deeper than the finality depth (HTTP 503)
        │   └── ChainMismatch       the node serves another chain than the database's (HTTP 503)
        ├── NonceTooLow             the node refused a transaction: its sender's nonce is already used
        ├── NonceContention         another sender of the account kept taking its nonces (HTTP 503, retry)
        ├── TransactionFailed       mined with status 0 and no decodable reason
        └── ContractRevert          a custom error decoded by selector against our ABIs (HTTP 409/422)
"""

from __future__ import annotations

from typing import Any


class TradeGuardError(Exception):
    """Root of every error TradeGuard raises on purpose."""


class ConfigError(TradeGuardError):
    """Configuration is missing or invalid."""


class CorruptChainState(ConfigError):
    """Local mode: the anvil state file exists but cannot be loaded; ``backup`` is the copy kept beside it."""

    def __init__(self, path: str, backup: str | None, problem: str) -> None:
        hint = (
            f"the previous good save is {backup}: move it over {path} to start from it (the blocks after "
            "it are lost)"
            if backup
            else "no backup is kept beside it"
        )
        super().__init__(
            f"anvil state file {path} cannot be loaded ({problem}); {hint}, or remove both to start a new "
            "chain (the database then belongs to the old chain: remove it too)"
        )
        self.path = path
        self.backup = backup


class DomainError(TradeGuardError):
    """A business rule refuses the request."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.details = details


class NotFound(DomainError):
    """The object does not exist or the caller may not see it (both answer 404, so nothing leaks)."""

    def __init__(self, resource: str, ident: str) -> None:
        super().__init__("not_found", f"{resource} {ident} not found", resource=resource, id=ident)


class InvalidInput(DomainError):
    """The request parsed but its content is refused; ``errors`` lists ``{"field", "message"}`` items."""

    def __init__(self, code: str, message: str, errors: list[dict[str, str]] | None = None, **details: Any):
        super().__init__(code, message, **details)
        self.errors = errors or []


class IdempotencyConflict(DomainError):
    """An ``Idempotency-Key`` was reused with a different request, or its first request is still running."""

    def __init__(self, key: str, *, in_flight: bool = False) -> None:
        message = (
            f"a request with Idempotency-Key {key!r} is still being processed"
            if in_flight
            else f"Idempotency-Key {key!r} was already used with a different request"
        )
        super().__init__("idempotency_key_in_flight" if in_flight else "idempotency_key_reused", message)
        self.key = key
        self.in_flight = in_flight


class AuthError(TradeGuardError):
    """The request carries no API key or an unknown one."""

    def __init__(self, message: str = "a valid API key is required (Authorization: Bearer <key>)") -> None:
        super().__init__(message)


class Forbidden(AuthError):
    """The principal is known but its role may not do this."""

    def __init__(self, role: str, action: str) -> None:
        super().__init__(f"role {role!r} may not {action}")
        self.role = role
        self.action = action


class FeedError(TradeGuardError):
    """A logistics input (EPCIS document, carrier webhook, attestation) is refused.

    ``code`` is machine-readable: ``malformed``, ``unsupported_event``, ``too_large``, ``bad_signature``, …
    """

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.details = details


class ChainError(TradeGuardError):
    """Talking to the chain failed."""


class ChainUnavailable(ChainError):
    """The node cannot be reached or did not answer in time."""


class ChainHalted(ChainError):
    """Chain work (indexer, relayer, keeper) is stopped and nothing is rewritten until an operator acts.

    ``code`` says why (``deep_reorg``, ``chain_mismatch``); ``details`` carries what was expected and found.
    """

    def __init__(self, code: str, reason: str, **details: Any) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.details = details


class ChainMismatch(ChainHalted):
    """The node's genesis block hash or chain id is not the one the database recorded (a replaced chain)."""

    def __init__(self, reason: str, **details: Any) -> None:
        super().__init__("chain_mismatch", reason, **details)


class GasWalletEmpty(ChainError):
    """The node refused a transaction because its sender (the relayer's gas wallet) cannot pay for the gas.

    Nothing is wrong with the intents: they wait, without using up attempts, until the wallet is topped up;
    ``GET /readyz`` answers 503 ``gas_wallet_low`` meanwhile.
    """

    code = "gas_wallet_empty"

    def __init__(self, sender: str, message: str) -> None:
        super().__init__(f"the gas wallet {sender} cannot pay for its transaction: {message}")
        self.sender = sender


class NonceContention(ChainError):
    """A direct send lost the race for its sender's next nonce to another process every time it retried."""

    def __init__(self, sender: str, attempts: int, message: str) -> None:
        super().__init__(
            f"another sender of {sender} took its next nonce {attempts} times in a row; retry: {message}"
        )
        self.sender = sender
        self.attempts = attempts


class NonceTooLow(ChainError):
    """The node refused a signed transaction because its nonce is already used (mined or replaced)."""

    def __init__(self, tx_hash: str, message: str) -> None:
        super().__init__(f"nonce too low for {tx_hash}: {message}")
        self.tx_hash = tx_hash


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
