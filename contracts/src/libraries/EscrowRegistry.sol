// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ITradeGuardEscrow} from "../interfaces/ITradeGuardEscrow.sol";

/// @title Escrow registry: platform settings, oracles, arbitrators, tokens and tax corridors
/// @notice The admin-side state of {TradeGuardEscrow}. Its setters are external library functions (linked and
///         reached by DELEGATECALL) so that the cold admin code does not count against the escrow's size limit;
///         they run in the escrow's storage and emit the escrow's events. Access control stays in the escrow.
library EscrowRegistry {
    uint256 internal constant MAX_ORACLES = 256;
    uint16 internal constant MAX_COMMISSION_BPS = 3000;
    uint16 internal constant MAX_TAX_BPS = 5000;

    /// @notice Settings read on every funding, packed in one slot.
    struct Config {
        /// @dev platform commission for new orders
        uint16 commissionBps;
        /// @dev oracle threshold k for new orders
        uint8 threshold;
        /// @dev oracles not removed (pending ones included)
        uint16 activeOracles;
        /// @dev oracles ever registered; the next index
        uint16 oracleCount;
        /// @dev seller's dispute response window for new orders
        uint32 responseSeconds;
        /// @dev arbitration deadline for new orders
        uint32 arbitrationSeconds;
        /// @dev current ERC-1497 meta-evidence id
        uint64 metaEvidenceId;
        /// @dev new orders refused while set (kept here so funding reads one settings slot)
        bool paused;
        /// @dev oracles added but possibly not yet active (counted until `pendingUntil`)
        uint16 pendingOracles;
        /// @dev the latest `activeFrom` of an added oracle
        uint40 pendingUntil;
    }

    /// @notice A registered oracle; `index` is its bit in partial-attestation bitmaps and is never reused.
    struct OracleInfo {
        /// @dev bit index
        uint8 index;
        /// @dev false once removed
        bool active;
        /// @dev counts only for orders funded at or after this time
        uint64 activeFrom;
    }

    /// @notice Everything the admin configures.
    struct Registry {
        Config config;
        mapping(address oracle => OracleInfo) oracles;
        address[] oracleList;
        mapping(address arbitrator => uint64 activeFrom) arbitrators;
        mapping(address token => bool) allowedTokens;
        mapping(address recipient => uint16 maxTaxBps) taxCaps;
    }

    /// @notice Oracles that count for an order funded at `nowTime`. Conservative: while any added oracle may
    ///         still be pending, every oracle added in that period is left out.
    function usableOracles(Config memory c, uint256 nowTime) internal pure returns (uint256) {
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
        Config memory c = r.config;
        if (r.oracles[oracle].active || c.oracleCount >= MAX_ORACLES) revert ITradeGuardEscrow.OracleConfig(oracle);
        uint64 activeFrom = uint64(block.timestamp + delay);
        if (block.timestamp >= c.pendingUntil) c.pendingOracles = 0;
        if (delay != 0) {
            ++c.pendingOracles;
            c.pendingUntil = uint40(activeFrom);
        }
        // Cannot truncate: oracleCount < MAX_ORACLES = 256 was checked above.
        uint8 index = uint8(c.oracleCount);
        r.oracles[oracle] = OracleInfo({index: index, active: true, activeFrom: activeFrom});
        r.oracleList.push(oracle);
        ++c.oracleCount;
        ++c.activeOracles;
        r.config = c;
        emit ITradeGuardEscrow.OracleAdded(oracle, index, activeFrom);
    }

    /// @notice Remove an oracle; its attestations stop counting at once, for open orders too.
    function removeOracle(Registry storage r, address oracle) external {
        OracleInfo memory o = r.oracles[oracle];
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

    /// @notice Appoint an arbitrator who may rule from `now + delay`.
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

    /// @notice Publish new ERC-1497 meta-evidence for disputes opened from now on.
    function setMetaEvidence(Registry storage r, string calldata uri) external {
        uint64 id = ++r.config.metaEvidenceId;
        emit ITradeGuardEscrow.MetaEvidence(id, uri);
    }
}
