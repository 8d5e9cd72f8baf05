"""What each contract custom error means to an API client: a stable ``code`` and one status rule.

A revert decoded by :class:`~app.chain.abi.AbiRegistry` carries the Solidity error's name; the API answers it
with the ``code`` from this table (the error's name in snake_case, so ``SignatureExpired`` is
``signature_expired``), the Solidity name as ``error`` and its decoded arguments. One rule decides the status:

- **409 (state)**: the request is well formed, but the state it acts on refuses it now: an order's status,
  timer or freeze, an action already taken (a replayed signature, a second attestation), the escrow's pause,
  a balance, allowance or credit, an on-chain role not (yet) held, the oracle registry.
- **422 (input)**: the request itself is wrong and will be refused whatever the state: a signature that is
  expired, malformed or from the wrong signer, an amount, party, schedule, rate, milestone, decision or
  batch out of bounds, a token or terms the escrow does not accept.

The table covers every custom error in every artifact under ``contracts/build`` (the escrow, its registry
library, tUSD, the OpenZeppelin errors they inherit and the test-only token doubles);
``tests/domain/test_contract_errors.py`` fails when an error is added without an entry. The README's table of
error codes is generated from the same rows (:func:`markdown_table`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: A refusal because of the state acted on (HTTP 409).
STATE = 409
#: A refusal because of the request's own content (HTTP 422).
INPUT = 422


@dataclass(frozen=True)
class ContractErrorCode:
    """How one custom error is shown to clients."""

    #: the Solidity error name, as decoded (``"SignatureExpired"``)
    name: str
    #: the stable machine-readable code of the problem (``"signature_expired"``)
    code: str
    #: 409 (state) or 422 (input)
    status: int
    #: one line for the README and the problem's ``detail``
    meaning: str


def snake_case(name: str) -> str:
    """``SignatureExpired`` → ``signature_expired``; ``ERC20InsufficientAllowance`` →
    ``erc20_insufficient_allowance`` (a run of capitals and digits stays one word)."""
    words = re.findall(r"[A-Z0-9]+(?![a-z])|[A-Z]?[a-z0-9]+", name)
    return "_".join(w.lower() for w in words)


# name → (status, meaning). The code is derived from the name, so it is stable as long as the name is.
_ROWS: dict[str, tuple[int, str]] = {
    # --- the escrow (ITradeGuardEscrow) ---------------------------------------------------------------------
    "OrderAlreadyExists": (STATE, "an order with this id is already funded"),
    "UnknownOrder": (STATE, "no order with this id on chain (not funded yet, or funding still pending)"),
    "OrderDataMismatch": (STATE, "the terms or state word sent are stale: the order changed meanwhile"),
    "InvalidStatus": (STATE, "the order's status does not allow this action"),
    "Unauthorized": (INPUT, "the caller is not the party this action belongs to"),
    "InvalidSignature": (INPUT, "the signature does not recover to the expected signer"),
    "MalformedSignature": (INPUT, "the signature is malformed (length, malleable s, bad v)"),
    "SignatureExpired": (INPUT, "the signed message's validUntil is before the chain's time"),
    "SignatureReplayed": (STATE, "this signature was already used"),
    "TokenNotAllowed": (INPUT, "the token is not on the escrow's allowlist"),
    "InvalidAmount": (INPUT, "the amount is zero or above 2^128 - 1"),
    "InvalidParties": (INPUT, "buyer or seller is the zero address, or they are the same"),
    "CommissionMismatch": (INPUT, "the signed commission is not the platform's rate"),
    "TaxNotAllowed": (INPUT, "the tax rate or recipient is not allowed (above the recipient's cap)"),
    "InvalidSchedule": (INPUT, "shipBy, deliverBy or holdSeconds are out of bounds"),
    "TokenShortfall": (INPUT, "the token delivered less than the amount pulled (fee-on-transfer)"),
    "DeadlinePassed": (STATE, "the order's timer for this action has passed"),
    "DeadlineNotReached": (STATE, "the order's timer for this action has not been reached yet"),
    "OrderIsFrozen": (STATE, "a regulator froze the order; money does not move until it is unfrozen"),
    "OrderNotFrozen": (STATE, "the order is not frozen"),
    "FreezeTooLong": (STATE, "the freeze is zero or would exceed the order's 30-day total"),
    "NotOracle": (
        STATE,
        "the signer is not an oracle counting for this order (not registered, or not "
        "active yet when the order was funded: ROLE_DELAY)",
    ),
    "DuplicateAttestation": (STATE, "this oracle already attested this milestone of this order"),
    "InvalidMilestone": (INPUT, "unknown milestone, or milestones differ within one call"),
    "EventInFuture": (INPUT, "the attestation's event time is after the chain's time"),
    "NoAttestations": (INPUT, "no attestation was given"),
    "NotArbitrator": (
        STATE,
        "the account is not an arbitrator of this order (not registered, appointed after the order was "
        "funded, or the order names an ERC-792 arbitrator)",
    ),
    # --- escrow v2: ERC-792 arbitration and the smaller holes --------------------------------------------
    "InvalidArbitration": (
        STATE,
        "the order's ERC-792 arbitrator is not an appointed arbitrator active now, or an extraData hash "
        "was given without an arbitrator",
    ),
    "ExtraDataMismatch": (
        INPUT,
        "the extraData given does not hash to the order's signed arbitratorExtraDataHash",
    ),
    "UnexpectedValue": (
        INPUT,
        "native currency was sent where none is taken (only an ERC-792 dispute takes it)",
    ),
    "UnknownDispute": (STATE, "the calling arbitrator has no open dispute with this id"),
    "AlreadyRuled": (STATE, "the ERC-792 arbitrator already ruled on this dispute"),
    "InvalidRuling": (INPUT, "the ruling is not one of the dispute's choices (0..10)"),
    "NoRuling": (STATE, "the order's ERC-792 arbitrator has not ruled yet"),
    "InvalidRecipient": (INPUT, "a payout to the escrow itself is refused"),
    "InvalidDecision": (INPUT, "the buyer decision is neither 1 (confirm receipt) nor 2 (open dispute)"),
    "InvalidBps": (INPUT, "basis points above 10000 or above the configured bound"),
    "InsufficientCredit": (STATE, "the account's credit is less than the amount to withdraw"),
    "ZeroAddress": (INPUT, "a zero address where one is required"),
    "OracleConfig": (STATE, "the oracle is already registered, not registered, or the registry is full"),
    "InvalidThreshold": (STATE, "the oracle threshold is zero or above the number of active oracles"),
    "InvalidDuration": (INPUT, "a duration is out of bounds"),
    "InvalidBatch": (INPUT, "a batch is empty, too large, or its arrays differ in length"),
    "EmptyHash": (INPUT, "a content hash that must be set is zero"),
    "EnforcedPause": (STATE, "the escrow is paused: no new orders"),
    "ExpectedPause": (STATE, "the escrow is not paused"),
    # --- OpenZeppelin, inherited by the escrow --------------------------------------------------------------
    "AccessControlUnauthorizedAccount": (STATE, "the account lacks the on-chain role this call needs"),
    "AccessControlBadConfirmation": (INPUT, "renounceRole was called for another account"),
    "AccessControlEnforcedDefaultAdminRules": (
        INPUT,
        "the admin role moves only by beginDefaultAdminTransfer and acceptDefaultAdminTransfer",
    ),
    "AccessControlEnforcedDefaultAdminDelay": (STATE, "the admin transfer or delay change is not due yet"),
    "AccessControlInvalidDefaultAdmin": (INPUT, "the account is not the pending admin, or the admin is zero"),
    "SafeCastOverflowedUintDowncast": (INPUT, "a delay does not fit its type"),
    "ReentrancyGuardReentrantCall": (INPUT, "the token called back into the escrow (reentrancy refused)"),
    "SafeERC20FailedOperation": (
        STATE,
        "the token refused the transfer (balance, allowance or its own rules)",
    ),
    "InvalidShortString": (INPUT, "an EIP-712 name or version string is malformed"),
    "StringTooLong": (INPUT, "an EIP-712 name or version string is too long"),
    # --- ERC-20 tokens (tUSD and any OpenZeppelin token) ----------------------------------------------------
    "ERC20InsufficientAllowance": (
        STATE,
        "the buyer's allowance to the escrow is below the amount (approve first, or fund with a permit)",
    ),
    "ERC20InsufficientBalance": (STATE, "the buyer's token balance is below the amount"),
    "ERC20InvalidApprover": (INPUT, "the token approval names the zero address as owner"),
    "ERC20InvalidReceiver": (INPUT, "the token transfer names the zero address as receiver"),
    "ERC20InvalidSender": (INPUT, "the token transfer names the zero address as sender"),
    "ERC20InvalidSpender": (INPUT, "the token approval names the zero address as spender"),
    "ERC2612ExpiredSignature": (INPUT, "the permit's deadline has passed"),
    "ERC2612InvalidSigner": (INPUT, "the permit is not signed by the token owner"),
    "InvalidAccountNonce": (STATE, "the permit's nonce is not the owner's current nonce (already used)"),
    "ECDSAInvalidSignature": (INPUT, "the permit signature does not recover"),
    "ECDSAInvalidSignatureLength": (INPUT, "the permit signature has the wrong length"),
    "ECDSAInvalidSignatureS": (INPUT, "the permit signature has a malleable s value"),
    "FaucetLimit": (INPUT, "tUSD faucet: more than the limit per call"),
    "NotADevChain": (STATE, "tUSD faucet: this chain is not a dev chain"),
    # --- the ERC-792 test arbitrator (contracts/test/CentralizedArbitrator.sol) -----------------------------
    "NotOwner": (STATE, "only the arbitrator's owner rules (test double)"),
    "InsufficientPayment": (STATE, "less than the arbitrator's arbitration or appeal cost was paid"),
    "InvalidDisputeStatus": (
        STATE,
        "no such dispute at the arbitrator, or not in the status this call needs",
    ),
    "InvalidRulingChoice": (INPUT, "the ruling is not one of the dispute's choices (test arbitrator)"),
    "AppealPeriod": (STATE, "the arbitrator's appeal period has not ended, or has ended already"),
    "PayoutFailed": (STATE, "the arbitrator could not pay out its fees (test double)"),
    # --- test-only token doubles (contracts/test) ----------------------------------------------------------
    "Blacklisted": (STATE, "the token has blacklisted the account (test double)"),
    "InvalidMint": (INPUT, "the token refuses this mint (test double)"),
    "NoTarget": (INPUT, "the reentrant token has no target set (test double)"),
    "OwnableInvalidOwner": (INPUT, "the owner is the zero address"),
    "OwnableUnauthorizedAccount": (STATE, "the caller is not the token's owner"),
}

#: Solidity's built-in errors, whose names are not codes of their own.
_BUILTIN = {
    "Error": ContractErrorCode(
        "Error", "revert_reason", INPUT, "a contract reverted with a reason string (shown in `arguments`)"
    ),
    "Panic": ContractErrorCode(
        "Panic", "contract_panic", INPUT, "a contract failed an internal check (Panic code in `arguments`)"
    ),
}

#: Every custom error we know, by Solidity name.
CONTRACT_ERRORS: dict[str, ContractErrorCode] = {
    **{
        name: ContractErrorCode(name, snake_case(name), status, meaning)
        for name, (status, meaning) in _ROWS.items()
    },
    **_BUILTIN,
}

#: The answer for a decoded error that is not in the table (a contract we do not build): still a 422 that
#: names the error, under a code that says the table does not know it.
UNKNOWN = ContractErrorCode(
    "", "contract_revert", INPUT, "a custom error of a contract this service does not know"
)


def describe(name: str) -> ContractErrorCode:
    """The code and status of the custom error called ``name``."""
    return CONTRACT_ERRORS.get(name) or ContractErrorCode(name, UNKNOWN.code, UNKNOWN.status, UNKNOWN.meaning)


def code_of(name: str) -> str:
    """The code for a failure called ``name`` wherever it is shown (a failed intent's ``error_code``): a
    contract error's own code, else the name in snake_case (``Retracted`` → ``retracted``)."""
    known = CONTRACT_ERRORS.get(name)
    return known.code if known is not None else snake_case(name)


def markdown_table() -> str:
    """The README's table: code, status, Solidity error, meaning (sorted by status, then code)."""
    lines = ["| code | status | error | meaning |", "|---|---|---|---|"]
    for row in sorted(CONTRACT_ERRORS.values(), key=lambda r: (r.status, r.code)):
        lines.append(f"| `{row.code}` | {row.status} | `{row.name}` | {row.meaning} |")
    return "\n".join(lines)


__all__ = [
    "CONTRACT_ERRORS",
    "INPUT",
    "STATE",
    "UNKNOWN",
    "ContractErrorCode",
    "code_of",
    "describe",
    "markdown_table",
    "snake_case",
]
