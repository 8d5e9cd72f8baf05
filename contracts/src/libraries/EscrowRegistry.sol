// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ITradeGuardEscrow} from "../interfaces/ITradeGuardEscrow.sol";
import {IArbitrable} from "../interfaces/IArbitrable.sol";
import {IArbitrator} from "../interfaces/IArbitrator.sol";
import {OrderState} from "./OrderState.sol";

/// @title Escrow registry: platform settings, oracles, arbitrators, tokens and tax corridors; cold order paths
/// @notice The admin-side state of {TradeGuardEscrow}. Its setters are external library functions (linked and
///         reached by DELEGATECALL) so that the cold admin code does not count against the escrow's size limit;
///         they run in the escrow's storage and emit the escrow's events. Access control stays in the escrow.
///         The order paths no gas bar measures (regulator freeze, refunds, recording and executing an ERC-792
///         ruling) live here for the same reason; they get the escrow's order mappings as storage arguments.
library EscrowRegistry {
    using OrderState for uint256;

    uint256 internal constant MAX_FREEZE_SECONDS = 30 days;
    uint256 internal constant RULING_CHOICES = 10;
    uint256 internal constant MAX_ORACLES = 256;
    uint16 internal constant MAX_COMMISSION_BPS = 3000;
    uint16 internal constant MAX_TAX_BPS = 5000;

    /// @notice Everything the admin configures.
    struct Registry {
        ITradeGuardEscrow.Config config;
        mapping(address oracle => ITradeGuardEscrow.OracleInfo) oracles;
        address[] oracleList;
        mapping(address arbitrator => uint64 activeFrom) arbitrators;
        mapping(address token => bool) allowedTokens;
        mapping(address recipient => uint16 maxTaxBps) taxCaps;
    }

    /// @notice Oracles that count for an order funded at `nowTime`. Conservative: while any added oracle may
    ///         still be pending, every oracle added in that period is left out.
    function usableOracles(ITradeGuardEscrow.Config memory c, uint256 nowTime) internal pure returns (uint256) {
        if (nowTime >= c.pendingUntil) return c.activeOracles;
        // Removing an oracle that is already active leaves pendingOracles as is: floor at zero.
        return c.activeOracles > c.pendingOracles ? c.activeOracles - c.pendingOracles : 0;
    }

    /// @notice Initial settings; called once from the escrow's constructor.
    function initialize(
        Registry storage r,
        uint16 commissionBps,
        uint32 responseSeconds,
        uint32 arbitrationSeconds,
        string memory metaEvidenceURI
    ) external {
        setCommission(r, commissionBps);
        setDisputeWindows(r, responseSeconds, arbitrationSeconds);
        r.config.threshold = 1;
        emit ITradeGuardEscrow.ThresholdSet(1);
        emit ITradeGuardEscrow.MetaEvidence(0, metaEvidenceURI);
    }

    /// @notice Register an oracle that counts for orders funded from `now + delay` on.
    function addOracle(Registry storage r, address oracle, uint32 delay) external {
        if (oracle == address(0)) revert ITradeGuardEscrow.ZeroAddress();
        ITradeGuardEscrow.Config memory c = r.config;
        if (r.oracles[oracle].active || c.oracleCount >= MAX_ORACLES) revert ITradeGuardEscrow.OracleConfig(oracle);
        uint64 activeFrom = uint64(block.timestamp + delay);
        if (block.timestamp >= c.pendingUntil) c.pendingOracles = 0;
        if (delay != 0) {
            ++c.pendingOracles;
            c.pendingUntil = uint40(activeFrom);
        }
        // Cannot truncate: oracleCount < MAX_ORACLES = 256 was checked above.
        uint8 index = uint8(c.oracleCount);
        r.oracles[oracle] = ITradeGuardEscrow.OracleInfo({index: index, active: true, activeFrom: activeFrom});
        r.oracleList.push(oracle);
        ++c.oracleCount;
        ++c.activeOracles;
        r.config = c;
        emit ITradeGuardEscrow.OracleAdded(oracle, index, activeFrom);
    }

    /// @notice Remove an oracle; its attestations stop counting at once, for open orders too.
    function removeOracle(Registry storage r, address oracle) external {
        ITradeGuardEscrow.OracleInfo memory o = r.oracles[oracle];
        if (!o.active) revert ITradeGuardEscrow.OracleConfig(oracle);
        r.oracles[oracle].active = false;
        --r.config.activeOracles;
        if (o.activeFrom > block.timestamp && block.timestamp < r.config.pendingUntil) --r.config.pendingOracles;
        emit ITradeGuardEscrow.OracleRemoved(oracle);
    }

    /// @notice Set the oracle threshold k for new orders (1 ≤ k ≤ active oracles).
    function setThreshold(Registry storage r, uint8 threshold) external {
        uint16 active = r.config.activeOracles;
        if (threshold == 0 || threshold > active) revert ITradeGuardEscrow.InvalidThreshold(threshold, active);
        r.config.threshold = threshold;
        emit ITradeGuardEscrow.ThresholdSet(threshold);
    }

    /// @notice Appoint an arbitrator who counts for orders funded from `now + delay` on.
    function addArbitrator(Registry storage r, address arbitrator, uint32 delay) external {
        if (arbitrator == address(0)) revert ITradeGuardEscrow.ZeroAddress();
        uint64 activeFrom = uint64(block.timestamp + delay);
        r.arbitrators[arbitrator] = activeFrom;
        emit ITradeGuardEscrow.ArbitratorAdded(arbitrator, activeFrom);
    }

    /// @notice Remove an arbitrator at once.
    function removeArbitrator(Registry storage r, address arbitrator) external {
        if (r.arbitrators[arbitrator] == 0) revert ITradeGuardEscrow.NotArbitrator(arbitrator);
        delete r.arbitrators[arbitrator];
        emit ITradeGuardEscrow.ArbitratorRemoved(arbitrator);
    }

    /// @notice Allow or disallow a settlement token for new orders.
    function setToken(Registry storage r, address token, bool allowed) external {
        if (token == address(0)) revert ITradeGuardEscrow.ZeroAddress();
        r.allowedTokens[token] = allowed;
        emit ITradeGuardEscrow.TokenAllowed(token, allowed);
    }

    /// @notice Register a corridor's tax recipient with its highest rate, or remove it with 0.
    function setTaxRecipient(Registry storage r, address recipient, uint16 maxTaxBps) external {
        if (recipient == address(0)) revert ITradeGuardEscrow.ZeroAddress();
        if (maxTaxBps > MAX_TAX_BPS) revert ITradeGuardEscrow.InvalidBps(maxTaxBps);
        r.taxCaps[recipient] = maxTaxBps;
        emit ITradeGuardEscrow.TaxRecipientSet(recipient, maxTaxBps);
    }

    /// @notice Set the platform commission for new orders.
    function setCommission(Registry storage r, uint16 commissionBps) public {
        if (commissionBps > MAX_COMMISSION_BPS) revert ITradeGuardEscrow.InvalidBps(commissionBps);
        r.config.commissionBps = commissionBps;
        emit ITradeGuardEscrow.CommissionSet(commissionBps);
    }

    /// @notice Stop (true) or resume (false) accepting new orders; funded orders are never affected.
    function setPaused(Registry storage r, bool paused) external {
        if (r.config.paused == paused) {
            if (paused) revert ITradeGuardEscrow.EnforcedPause();
            revert ITradeGuardEscrow.ExpectedPause();
        }
        r.config.paused = paused;
        if (paused) emit ITradeGuardEscrow.Paused(msg.sender);
        else emit ITradeGuardEscrow.Unpaused(msg.sender);
    }

    /// @notice Set the dispute windows for new orders (response ≥ 1 hour, arbitration longer, both bounded).
    function setDisputeWindows(Registry storage r, uint32 responseSeconds, uint32 arbitrationSeconds) public {
        if (responseSeconds < 1 hours || responseSeconds > 90 days) {
            revert ITradeGuardEscrow.InvalidDuration(responseSeconds);
        }
        if (arbitrationSeconds <= responseSeconds || arbitrationSeconds > 180 days) {
            revert ITradeGuardEscrow.InvalidDuration(arbitrationSeconds);
        }
        (r.config.responseSeconds, r.config.arbitrationSeconds) = (responseSeconds, arbitrationSeconds);
        emit ITradeGuardEscrow.DisputeWindowsSet(responseSeconds, arbitrationSeconds);
    }

    /// @notice Publish new ERC-1497 meta-evidence for orders funded from now on.
    function setMetaEvidence(Registry storage r, string calldata uri) external {
        uint64 id = ++r.config.metaEvidenceId;
        emit ITradeGuardEscrow.MetaEvidence(id, uri);
    }

    // ------------------------------------------------------------------ cold order paths

    /// @notice Check an order reference against its commitment; returns the order's key.
    function _requireOrder(mapping(bytes32 => bytes32) storage orders, bytes32 id, ITradeGuardEscrow.Terms calldata t, uint256 s)
        private
        view
        returns (bytes32 k)
    {
        k = OrderState.key(id, t.buyer);
        bytes32 c = orders[k];
        if (c == bytes32(0)) revert ITradeGuardEscrow.UnknownOrder(id);
        if (c != OrderState.commit(t, s)) revert ITradeGuardEscrow.OrderDataMismatch(id);
    }

    function _requireNotFrozen(bytes32 id, uint256 s) private view {
        if (s.isFrozen(block.timestamp)) revert ITradeGuardEscrow.OrderIsFrozen(id, s.frozenUntil());
    }

    /// @notice A regulator freezes an order (see {ITradeGuardEscrow.freeze}); the role is checked by the escrow.
    function freeze(
        mapping(bytes32 => bytes32) storage orders,
        bytes32 id,
        ITradeGuardEscrow.Terms calldata t,
        uint256 s,
        uint32 duration,
        bytes32 reasonHash
    ) external {
        bytes32 k = _requireOrder(orders, id, t, s);
        if (s.isFinal()) revert ITradeGuardEscrow.InvalidStatus(id, ITradeGuardEscrow.Status(s.status()));
        _requireNotFrozen(id, s);
        if (reasonHash == bytes32(0)) revert ITradeGuardEscrow.EmptyHash();
        uint256 total = s.frozenSeconds() + duration;
        if (duration == 0 || total > MAX_FREEZE_SECONDS) revert ITradeGuardEscrow.FreezeTooLong(id, total);
        uint64 until = uint64(block.timestamp + duration);
        uint256 next = s.withFreeze(total, until);
        orders[k] = OrderState.commit(t, next);
        emit ITradeGuardEscrow.OrderFrozen(id, next, until, reasonHash);
    }

    /// @notice A regulator lifts a freeze early (see {ITradeGuardEscrow.unfreeze}).
    function unfreeze(mapping(bytes32 => bytes32) storage orders, bytes32 id, ITradeGuardEscrow.Terms calldata t, uint256 s)
        external
    {
        bytes32 k = _requireOrder(orders, id, t, s);
        uint64 until = s.frozenUntil();
        if (!s.isFrozen(block.timestamp)) revert ITradeGuardEscrow.OrderNotFrozen(id);
        // Give back the part of the freeze that did not happen: timers shrink by it.
        uint256 next = s.withFreeze(s.frozenSeconds() - (until - block.timestamp), block.timestamp);
        orders[k] = OrderState.commit(t, next);
        emit ITradeGuardEscrow.OrderUnfrozen(id, next);
    }

    /// @notice The seller gives the order up: full refund (see {ITradeGuardEscrow.refundBySeller}).
    function refundBySeller(
        mapping(bytes32 => bytes32) storage orders,
        mapping(address => mapping(address => uint256)) storage credits,
        bytes32 id,
        ITradeGuardEscrow.Terms calldata t,
        uint256 s
    ) external {
        bytes32 k = _requireOrder(orders, id, t, s);
        if (msg.sender != t.seller) revert ITradeGuardEscrow.Unauthorized(msg.sender);
        if (s.isFinal()) revert ITradeGuardEscrow.InvalidStatus(id, ITradeGuardEscrow.Status(s.status()));
        _requireNotFrozen(id, s);
        _refund(orders, credits, k, id, t, s, ITradeGuardEscrow.RefundReason.SellerRefund);
    }

    /// @notice Refund after a missed deadline (see {ITradeGuardEscrow.timeoutRefund}). A recorded ERC-792
    ///         ruling wins over every dispute timeout.
    function timeoutRefund(
        mapping(bytes32 => bytes32) storage orders,
        mapping(address => mapping(address => uint256)) storage credits,
        mapping(bytes32 => uint256) storage rulings,
        bytes32 id,
        ITradeGuardEscrow.Terms calldata t,
        uint256 s
    ) external {
        bytes32 k = _requireOrder(orders, id, t, s);
        _requireNotFrozen(id, s);
        uint8 st = s.status();
        uint256 ext = s.frozenSeconds();
        ITradeGuardEscrow.RefundReason reason = ITradeGuardEscrow.RefundReason.ShipTimeout;
        uint256 deadline = 0;
        if (st == OrderState.FUNDED) {
            (reason, deadline) = (ITradeGuardEscrow.RefundReason.ShipTimeout, t.shipBy + ext);
        } else if (st == OrderState.SHIPPED) {
            (reason, deadline) = (ITradeGuardEscrow.RefundReason.DeliveryTimeout, t.deliverBy + ext);
        } else if (st == OrderState.DISPUTED && rulings[k] == 0) {
            uint256 disputedAt = s.anchor() + ext;
            uint256 responseDeadline = disputedAt + t.responseSeconds;
            if (!s.responded() && block.timestamp > responseDeadline) {
                (reason, deadline) = (ITradeGuardEscrow.RefundReason.ResponseTimeout, responseDeadline);
            } else {
                (reason, deadline) =
                    (ITradeGuardEscrow.RefundReason.ArbitrationTimeout, disputedAt + t.arbitrationSeconds);
                if (!s.responded() && responseDeadline < deadline) deadline = responseDeadline;
            }
        } else {
            revert ITradeGuardEscrow.InvalidStatus(id, ITradeGuardEscrow.Status(st));
        }
        if (block.timestamp <= deadline) revert ITradeGuardEscrow.DeadlineNotReached(id, deadline);
        _refund(orders, credits, k, id, t, s, reason);
    }

    /// @dev Credits the whole amount back to the buyer; no commission, no tax.
    function _refund(
        mapping(bytes32 => bytes32) storage orders,
        mapping(address => mapping(address => uint256)) storage credits,
        bytes32 k,
        bytes32 id,
        ITradeGuardEscrow.Terms calldata t,
        uint256 s,
        ITradeGuardEscrow.RefundReason reason
    ) private {
        uint256 next = s.withStatus(OrderState.REFUNDED);
        orders[k] = OrderState.commit(t, next);
        credits[t.token][t.buyer] += t.amount;
        emit ITradeGuardEscrow.OrderRefunded(id, next, reason);
    }

    /// @notice ERC-792 `rule`: record the calling arbitrator's ruling of one of its disputes, once.
    /// @dev The dispute is looked up under `msg.sender`, so only the arbitrator the escrow created it with (the
    ///      order's signed arbitrator) finds it.
    function recordRuling(
        mapping(address => mapping(uint256 => bytes32)) storage disputes,
        mapping(bytes32 => uint256) storage rulings,
        uint256 disputeID,
        uint256 ruling
    ) external {
        bytes32 k = disputes[msg.sender][disputeID];
        if (k == bytes32(0)) revert ITradeGuardEscrow.UnknownDispute(msg.sender, disputeID);
        if (ruling > RULING_CHOICES) revert ITradeGuardEscrow.InvalidRuling(ruling);
        if (rulings[k] != 0) revert ITradeGuardEscrow.AlreadyRuled(k, disputeID);
        rulings[k] = ruling + 1;
        emit IArbitrable.Ruling(IArbitrator(msg.sender), disputeID, ruling);
        emit ITradeGuardEscrow.RulingRecorded(k, msg.sender, disputeID, ruling);
    }

    /// @notice Settle by the recorded ERC-792 ruling (see {ITradeGuardEscrow.executeRuling}). SPEC §4.1: ruling
    ///         r in 1..10 refunds (r - 1) * 1111 bps, 10 refunds all; 0 (refused to arbitrate) splits 5000.
    function executeRuling(
        mapping(bytes32 => bytes32) storage orders,
        mapping(address => mapping(address => uint256)) storage credits,
        mapping(bytes32 => uint256) storage rulings,
        ITradeGuardEscrow.Terms calldata t,
        bytes32 id,
        uint256 s,
        address treasury
    ) external {
        bytes32 k = _requireOrder(orders, id, t, s);
        uint256 ruled = rulings[k];
        if (t.arbitrator == address(0) || ruled == 0) revert ITradeGuardEscrow.NoRuling(id);
        _requireRuleable(id, s);
        uint256 ruling = ruled - 1;
        uint256 share = ruling == 0 ? 5000 : ruling == RULING_CHOICES ? 10_000 : (ruling - 1) * 1111;
        // Cannot truncate: share <= 10000.
        _resolve(orders, credits, k, id, t, s, t.arbitrator, uint16(share), bytes32(0), treasury);
    }

    function _requireRuleable(bytes32 id, uint256 s) private view {
        if (s.status() != OrderState.DISPUTED) {
            revert ITradeGuardEscrow.InvalidStatus(id, ITradeGuardEscrow.Status(s.status()));
        }
        _requireNotFrozen(id, s);
    }

    /// @dev Settles an ERC-792 ruling (the escrow settles platform rulings itself, the same way): the buyer's share
    ///      is refunded, the rest split as a release (SPEC §3) and credited.
    function _resolve(
        mapping(bytes32 => bytes32) storage orders,
        mapping(address => mapping(address => uint256)) storage credits,
        bytes32 k,
        bytes32 id,
        ITradeGuardEscrow.Terms calldata t,
        uint256 s,
        address arbitrator,
        uint16 shareBps,
        bytes32 rationale,
        address treasury
    ) private {
        uint256 next = s.withStatus(OrderState.RESOLVED);
        orders[k] = OrderState.commit(t, next);
        uint256 refund = t.amount * shareBps / 10_000;
        uint256 gross = t.amount - refund;
        uint256 commission = gross * t.commissionBps / 10_000;
        uint256 tax = gross * t.taxBps / 10_000;
        uint256 net = gross - commission - tax;
        mapping(address => uint256) storage c = credits[t.token];
        if (refund != 0) c[t.buyer] += refund;
        if (commission != 0) c[treasury] += commission;
        if (tax != 0) c[t.taxRecipient] += tax;
        if (net != 0) c[t.seller] += net;
        emit ITradeGuardEscrow.DisputeResolved(id, arbitrator, next, shareBps, rationale, refund, commission, tax, net);
    }
}
