"""The platform side of the escrow, as a pure value: settings for new orders, oracles, arbitrators, tokens.

Test-only reference model (the service reads these settings from the chain). This is the admin state that
:mod:`tests.model.lifecycle` consults: which oracles count for an order (only
those registered, not removed, and active by the time the order was funded), who may rule (an arbitrator
whose role delay has run out), which tokens and tax corridors new orders may use. Every setter returns a new
:class:`Registry` or raises :class:`~app.errors.DomainError` whose ``code`` is the escrow's custom error
name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from app.domain.money import MAX_COMMISSION_BPS, MAX_TAX_BPS
from app.domain.order_rules import DAY, HOUR, ZERO_ADDRESS, usable_oracles
from app.errors import DomainError

MAX_ORACLES = 256
MAX_ROLE_DELAY = 30 * DAY
MIN_RESPONSE_SECONDS = HOUR
MAX_RESPONSE_SECONDS = 90 * DAY
MAX_ARBITRATION_SECONDS = 180 * DAY


@dataclass(frozen=True)
class OracleInfo:
    """A registered oracle: its bit in attestation bitmaps (never reused) and when it starts to count."""

    index: int
    active: bool
    active_from: int


@dataclass(frozen=True)
class Registry:
    """Platform settings and roles. Changes apply to orders funded afterwards, except removals (at once).

    ``treasury`` receives every commission and is fixed at deployment.
    """

    treasury: str
    commission_bps: int
    response_seconds: int
    arbitration_seconds: int
    role_delay: int
    threshold: int = 1
    oracles: Mapping[str, OracleInfo] = field(default_factory=dict)
    oracle_list: tuple[str, ...] = ()
    arbitrators: Mapping[str, int] = field(default_factory=dict)
    allowed_tokens: frozenset[str] = frozenset()
    tax_caps: Mapping[str, int] = field(default_factory=dict)
    paused: bool = False
    pending_oracles: int = 0
    pending_until: int = 0

    @classmethod
    def initial(
        cls,
        *,
        treasury: str,
        commission_bps: int,
        role_delay: int,
        response_seconds: int,
        arbitration_seconds: int,
    ) -> Registry:
        """The registry as the escrow's constructor leaves it (threshold 1, nothing registered).

        The treasury is fixed for the escrow's life; the rest can change for new orders.
        """
        if treasury == ZERO_ADDRESS:
            raise DomainError("ZeroAddress", "treasury is the zero address")
        if role_delay > MAX_ROLE_DELAY:
            raise DomainError("InvalidDuration", "role delay above 30 days", seconds_=role_delay)
        reg = cls(
            treasury=treasury,
            commission_bps=0,
            response_seconds=MIN_RESPONSE_SECONDS,
            arbitration_seconds=MIN_RESPONSE_SECONDS + 1,
            role_delay=role_delay,
        )
        return reg.set_commission(commission_bps).set_dispute_windows(response_seconds, arbitration_seconds)

    # ------------------------------------------------------------------ queries

    @property
    def active_oracles(self) -> int:
        """Oracles not removed, those still inside their role delay included."""
        return sum(1 for info in self.oracles.values() if info.active)

    def usable_oracles(self, now: int) -> int:
        """How many oracles an order funded at ``now`` may count on (:func:`usable_oracles`)."""
        return usable_oracles(self.active_oracles, self.pending_oracles, self.pending_until, now)

    def counts_for(self, oracle: str, funded_at: int) -> bool:
        """Whether ``oracle``'s attestation counts for an order funded at ``funded_at``."""
        info = self.oracles.get(oracle)
        return info is not None and info.active and info.active_from <= funded_at

    def index_counts_for(self, index: int, funded_at: int) -> bool:
        """Whether the oracle holding bit ``index`` today still counts for an order funded at ``funded_at``.

        A removed oracle's bit stops counting, and so does the old bit of an oracle registered again (it got
        a new index).
        """
        if index >= len(self.oracle_list):
            return False
        oracle = self.oracle_list[index]
        info = self.oracles[oracle]
        return info.index == index and self.counts_for(oracle, funded_at)

    def oracle_index(self, oracle: str) -> int:
        """The bit of a registered oracle."""
        return self.oracles[oracle].index

    def is_arbitrator(self, account: str, now: int) -> bool:
        """Whether ``account`` may rule at ``now`` (appointed, and its role delay over)."""
        since = self.arbitrators.get(account, 0)
        return since != 0 and since <= now

    # ------------------------------------------------------------------ oracles

    def add_oracle(self, oracle: str, now: int) -> Registry:
        """Register an oracle (again after a removal: with a new index) counting from ``now + role_delay``."""
        if oracle == ZERO_ADDRESS:
            raise DomainError("ZeroAddress", "oracle is the zero address")
        current = self.oracles.get(oracle)
        if (current is not None and current.active) or len(self.oracle_list) >= MAX_ORACLES:
            raise DomainError("OracleConfig", "oracle already registered or registry full", oracle=oracle)
        info = OracleInfo(index=len(self.oracle_list), active=True, active_from=now + self.role_delay)
        pending = 0 if now >= self.pending_until else self.pending_oracles
        pending_until = self.pending_until
        if self.role_delay:
            pending, pending_until = pending + 1, info.active_from
        return replace(
            self,
            oracles={**self.oracles, oracle: info},
            oracle_list=(*self.oracle_list, oracle),
            pending_oracles=pending,
            pending_until=pending_until,
        )

    def remove_oracle(self, oracle: str, now: int) -> Registry:
        """Remove an oracle: its attestations stop counting at once, for open orders too."""
        current = self.oracles.get(oracle)
        if current is None or not current.active:
            raise DomainError("OracleConfig", "oracle not registered", oracle=oracle)
        pending = self.pending_oracles
        if current.active_from > now and now < self.pending_until:
            pending -= 1
        return replace(
            self, oracles={**self.oracles, oracle: replace(current, active=False)}, pending_oracles=pending
        )

    def set_threshold(self, threshold: int) -> Registry:
        """Set k for new orders: 1 <= k <= active oracles."""
        if threshold == 0 or threshold > self.active_oracles:
            raise DomainError(
                "InvalidThreshold",
                "threshold must be between 1 and the number of active oracles",
                threshold=threshold,
                activeOracles=self.active_oracles,
            )
        return replace(self, threshold=threshold)

    # ------------------------------------------------------------------ arbitrators

    def add_arbitrator(self, arbitrator: str, now: int) -> Registry:
        """Appoint (or re-appoint) an arbitrator who may rule from ``now + role_delay``."""
        if arbitrator == ZERO_ADDRESS:
            raise DomainError("ZeroAddress", "arbitrator is the zero address")
        return replace(self, arbitrators={**self.arbitrators, arbitrator: now + self.role_delay})

    def remove_arbitrator(self, arbitrator: str) -> Registry:
        """Remove an arbitrator at once."""
        if self.arbitrators.get(arbitrator, 0) == 0:
            raise DomainError("NotArbitrator", "not an arbitrator", account=arbitrator)
        rest = {a: t for a, t in self.arbitrators.items() if a != arbitrator}
        return replace(self, arbitrators=rest)

    # ------------------------------------------------------------------ money settings

    def set_token(self, token: str, allowed: bool) -> Registry:
        """Allow or disallow a settlement token for new orders."""
        if token == ZERO_ADDRESS:
            raise DomainError("ZeroAddress", "token is the zero address")
        tokens = self.allowed_tokens | {token} if allowed else self.allowed_tokens - {token}
        return replace(self, allowed_tokens=tokens)

    def set_tax_recipient(self, recipient: str, max_tax_bps: int) -> Registry:
        """Register a corridor's tax recipient with its highest rate (0 removes it)."""
        if recipient == ZERO_ADDRESS:
            raise DomainError("ZeroAddress", "tax recipient is the zero address")
        if max_tax_bps > MAX_TAX_BPS:
            raise DomainError("InvalidBps", "tax cap above the bound", bps=max_tax_bps)
        return replace(self, tax_caps={**self.tax_caps, recipient: max_tax_bps})

    def set_commission(self, commission_bps: int) -> Registry:
        """Set the platform commission for new orders."""
        if commission_bps > MAX_COMMISSION_BPS:
            raise DomainError("InvalidBps", "commission above the bound", bps=commission_bps)
        return replace(self, commission_bps=commission_bps)

    def set_dispute_windows(self, response_seconds: int, arbitration_seconds: int) -> Registry:
        """Set the dispute windows for new orders (arbitration strictly longer than the response window)."""
        if not MIN_RESPONSE_SECONDS <= response_seconds <= MAX_RESPONSE_SECONDS:
            raise DomainError("InvalidDuration", "response window out of bounds", seconds_=response_seconds)
        if not response_seconds < arbitration_seconds <= MAX_ARBITRATION_SECONDS:
            raise DomainError(
                "InvalidDuration", "arbitration window out of bounds", seconds_=arbitration_seconds
            )
        return replace(self, response_seconds=response_seconds, arbitration_seconds=arbitration_seconds)

    def set_paused(self, paused: bool) -> Registry:
        """Stop (or resume) accepting new orders; funded orders keep every exit."""
        if paused == self.paused:
            raise DomainError("ExpectedPause" if not paused else "EnforcedPause", "no change")
        return replace(self, paused=paused)
