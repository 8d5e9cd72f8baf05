// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {AccessControlDefaultAdminRules} from "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";

import {IArbitrator} from "./interfaces/IArbitrator.sol";
import {ITradeGuardEscrow} from "./interfaces/ITradeGuardEscrow.sol";
import {EscrowRegistry} from "./libraries/EscrowRegistry.sol";
import {OrderState} from "./libraries/OrderState.sol";

/// @title TradeGuard escrow v2
/// @notice Holds buyers' payments for cross-border orders until k-of-n logistics oracles attest delivery and the
///         T+N hold window passes, the buyer confirms receipt, or an arbitrator rules. Releases are split into
///         platform commission, cross-border tax and the seller's net and credited; recipients pull their credits.
/// @dev One storage slot per order holds `keccak256(abi.encode(terms, state))`, under
///      `orderKey = keccak256(abi.encode(orderId, buyer))`.
///      No admin path to escrowed money: releases need oracles registered before the order was funded, the buyer,
///      or an arbitrator bound to the order at funding (a platform arbitrator active before funding, or the
///      ERC-792 arbitrator the buyer signed); refunds need a timeout, the seller or such an arbitrator. Every admin
///      setting that bears on an order (commission, tax, threshold, dispute windows, meta-evidence, arbitrator,
///      oracles and arbitrators counting) is read into its terms at funding or bound to its funding time; the admin
///      role itself moves in two steps with a delay (AccessControlDefaultAdminRules).
///      Order-id squatting is impossible: the storage key includes the buyer, so an order id funded first by
///      someone else occupies another key and the buyer's own funding still goes through.
contract TradeGuardEscrow is ITradeGuardEscrow, AccessControlDefaultAdminRules, ReentrancyGuardTransient, EIP712 {
    using SafeERC20 for IERC20;
    using OrderState for uint256;
    using EscrowRegistry for EscrowRegistry.Registry;

    /// @notice Role that may freeze and unfreeze orders.
    bytes32 public constant REGULATOR_ROLE = keccak256("REGULATOR_ROLE");

    /// @notice EIP-712 type hashes, exactly as in SPEC §4 and §4.1.
    bytes32 public constant ORDER_AUTHORIZATION_TYPEHASH = keccak256(
        "OrderAuthorization(bytes32 orderId,address buyer,address seller,address token,uint256 amount,"
        "uint16 commissionBps,uint16 taxBps,address taxRecipient,uint64 shipBy,uint64 deliverBy,"
        "uint32 holdSeconds,uint64 validUntil,address arbitrator,bytes32 arbitratorExtraDataHash)"
    );
    bytes32 public constant DELIVERY_ATTESTATION_TYPEHASH = keccak256(
        "DeliveryAttestation(bytes32 orderId,uint8 milestone,uint64 eventTime,bytes32 trackingHash,bytes32 evidenceHash)"
    );
    bytes32 public constant BUYER_DECISION_TYPEHASH =
        keccak256("BuyerDecision(bytes32 orderId,uint8 decision,bytes32 evidenceHash,uint64 validUntil)");
    bytes32 public constant EVIDENCE_SUBMISSION_TYPEHASH =
        keccak256("EvidenceSubmission(bytes32 orderId,address party,bytes32 evidenceHash,uint64 validUntil)");
    bytes32 public constant RULING_TYPEHASH =
        keccak256("Ruling(bytes32 orderId,uint16 buyerShareBps,bytes32 rationaleHash,uint64 validUntil)");

    uint8 public constant MILESTONE_SHIPPED = 1;
    uint8 public constant MILESTONE_DELIVERED = 2;
    uint8 public constant DECISION_CONFIRM_RECEIPT = 1;
    uint8 public constant DECISION_OPEN_DISPUTE = 2;

    /// @notice ERC-792 ruling options of every dispute (SPEC §4.1): ruling r refunds (r - 1) * 1111 bps, 10 all.
    uint256 public constant RULING_CHOICES = 10;

    uint256 public constant BPS = 10_000;
    uint32 public constant MIN_HOLD_SECONDS = 1 hours;
    uint32 public constant MAX_HOLD_SECONDS = 90 days;
    uint256 public constant MAX_SCHEDULE = 365 days;
    uint256 public constant MAX_FREEZE_SECONDS = 30 days;
    uint256 public constant MAX_BATCH = 500;

    /// @notice Seconds a newly added oracle or arbitrator waits before it counts (also the initial delay of an
    ///         admin role transfer).
    uint32 public immutable ROLE_DELAY;

    /// @dev Receives commission credits. Fixed at deployment (use a multisig or splitter) so that a release
    ///      does not pay a cold storage read for it.
    address private immutable _TREASURY;

    /// @dev Credits of one release batched in memory so that a batch writes each recipient once.
    struct Pending {
        address token;
        uint256 commission;
        address taxRecipient;
        uint256 tax;
        address seller;
        uint256 net;
    }

    EscrowRegistry.Registry private _reg;
    mapping(bytes32 key => bytes32 commitment) private _orders;
    mapping(address token => mapping(address account => uint256 amount)) private _credits;
    mapping(bytes32 key => mapping(uint8 milestone => uint256 oracleBits)) private _partial;
    /// @dev Used EvidenceSubmission digests, per order key: a signature relayed onto another buyer's order with
    ///      the same id must not use it up for the real one.
    mapping(bytes32 key => mapping(bytes32 digest => bool)) private _usedDigests;
    /// @dev ERC-792 disputes: the arbitrator's dispute id to the order key.
    mapping(address arbitrator => mapping(uint256 disputeID => bytes32 key)) private _disputes;
    /// @dev ERC-792 rulings by order key, plus one (0 = not ruled).
    mapping(bytes32 key => uint256 rulingPlusOne) private _rulings;

    /// @param admin holder of the admin role (platform multisig); the role moves in two steps with a delay
    /// @param treasury_ receives commission credits (immutable)
    /// @param commissionBps platform commission for new orders
    /// @param roleDelay seconds before a new oracle or arbitrator counts (at most 30 days); also the initial delay
    ///        of an admin role transfer
    /// @param responseSeconds seller's dispute response window for new orders
    /// @param arbitrationSeconds arbitration deadline for new orders (longer than the response window)
    /// @param metaEvidenceURI ERC-1497 meta-evidence URI (dispute policy)
    constructor(
        address admin,
        address treasury_,
        uint16 commissionBps,
        uint32 roleDelay,
        uint32 responseSeconds,
        uint32 arbitrationSeconds,
        string memory metaEvidenceURI
    ) EIP712("TradeGuard", "2") AccessControlDefaultAdminRules(roleDelay, admin) {
        if (admin == address(0) || treasury_ == address(0)) revert ZeroAddress();
        if (roleDelay > MAX_FREEZE_SECONDS) revert InvalidDuration(roleDelay);
        ROLE_DELAY = roleDelay;
        _TREASURY = treasury_;
        _reg.initialize(commissionBps, responseSeconds, arbitrationSeconds, metaEvidenceURI);
        emit TreasurySet(treasury_);
    }

    // =========================================================================================== funding

    /// @inheritdoc ITradeGuardEscrow
    function fund(OrderAuthorization[] calldata auths, bytes[] calldata signatures, Permit calldata permit)
        external
        nonReentrant
    {
        uint256 n = auths.length;
        if (n == 0 || n > MAX_BATCH || signatures.length != n) revert InvalidBatch(n);
        for (uint256 i; i < n; ++i) {
            _open(auths[i], signatures[i]);
        }
        // Interactions after every order is recorded: one pull per run of orders with the same buyer and token.
        uint256 start = 0;
        uint256 sum = 0;
        address buyer = auths[0].buyer;
        address token = auths[0].token;
        for (uint256 i; i < n; ++i) {
            sum += auths[i].amount;
            if (i + 1 == n || auths[i + 1].buyer != buyer || auths[i + 1].token != token) {
                // Only the first run may use the permit: it was signed by that run's buyer.
                _pull(token, buyer, sum, permit, start == 0);
                if (i + 1 != n) (buyer, token) = (auths[i + 1].buyer, auths[i + 1].token);
                (start, sum) = (i + 1, 0);
            }
        }
    }

    // ====================================================================================== attestations

    /// @inheritdoc ITradeGuardEscrow
    function attest(AttestItem[] calldata items, bool strict) external returns (uint256 advanced) {
        uint256 n = items.length;
        if (n == 0 || n > MAX_BATCH) revert InvalidBatch(n);
        for (uint256 i; i < n; ++i) {
            AttestItem calldata it = items[i];
            (bytes memory err, bool moved) = _attest(it.order.orderId, it.order.terms, it.order.state, it.attestations);
            if (err.length != 0) _skip(it.order.orderId, err, strict);
            else if (moved) ++advanced;
        }
    }

    // ========================================================================================== releases

    /// @inheritdoc ITradeGuardEscrow
    function release(OrderRef[] calldata orders, bool strict) external returns (uint256 released) {
        uint256 n = orders.length;
        if (n == 0 || n > MAX_BATCH) revert InvalidBatch(n);
        // slither-disable-next-line uninitialized-local (an all-zero accumulator is the intended start)
        Pending memory p;
        for (uint256 i; i < n; ++i) {
            OrderRef calldata o = orders[i];
            bytes memory err = _release(o.orderId, o.terms, o.state, p);
            if (err.length != 0) _skip(o.orderId, err, strict);
            else ++released;
        }
        _flush(p);
    }

    // ================================================================================== buyer decisions

    /// @inheritdoc ITradeGuardEscrow
    function submitBuyerDecision(
        bytes32 orderId,
        Terms calldata terms,
        uint256 state,
        uint8 decision,
        bytes32 evidenceHash,
        uint64 validUntil,
        bytes calldata signature,
        bytes calldata extraData
    ) external payable nonReentrant {
        if (signature.length == 0) {
            if (msg.sender != terms.buyer) revert Unauthorized(msg.sender);
        } else {
            _checkValidUntil(validUntil);
            bytes32 digest = _hashTypedDataV4(
                keccak256(abi.encode(BUYER_DECISION_TYPEHASH, orderId, decision, evidenceHash, validUntil))
            );
            _requireSigner(digest, signature, terms.buyer);
        }
        // Replay is prevented by the status change each decision makes.
        if (decision == DECISION_CONFIRM_RECEIPT) {
            if (msg.value != 0) revert UnexpectedValue(msg.value);
            _confirm(orderId, terms, state, evidenceHash);
        } else if (decision == DECISION_OPEN_DISPUTE) {
            _openDispute(orderId, terms, state, evidenceHash, extraData);
        } else {
            revert InvalidDecision(decision);
        }
    }

    // ========================================================================================== evidence

    /// @inheritdoc ITradeGuardEscrow
    function submitEvidence(
        bytes32 orderId,
        Terms calldata terms,
        uint256 state,
        address party,
        bytes32 evidenceHash,
        uint64 validUntil,
        bytes calldata signature
    ) external {
        bytes32 key;
        if (signature.length == 0) {
            key = _requireOrder(orderId, terms, state);
            if (msg.sender != party) revert Unauthorized(msg.sender);
        } else {
            // The signature is checked first, as the order data is for a direct call (the v1 error order).
            _checkValidUntil(validUntil);
            bytes32 digest = _hashTypedDataV4(
                keccak256(abi.encode(EVIDENCE_SUBMISSION_TYPEHASH, orderId, party, evidenceHash, validUntil))
            );
            _requireSigner(digest, signature, party);
            key = OrderState.key(orderId, terms.buyer);
            if (_usedDigests[key][digest]) revert SignatureReplayed(digest);
            _usedDigests[key][digest] = true;
            _requireOrder(orderId, terms, state);
        }
        _evidence(key, orderId, terms, state, party, evidenceHash);
    }

    // =========================================================================================== rulings

    /// @inheritdoc ITradeGuardEscrow
    function submitRuling(
        bytes32 orderId,
        Terms calldata terms,
        uint256 state,
        uint16 buyerShareBps,
        bytes32 rationaleHash,
        uint64 validUntil,
        bytes calldata signature
    ) external {
        address arbitrator = msg.sender;
        if (signature.length != 0) {
            _checkValidUntil(validUntil);
            bytes32 digest = _hashTypedDataV4(
                keccak256(abi.encode(RULING_TYPEHASH, orderId, buyerShareBps, rationaleHash, validUntil))
            );
            bytes memory err;
            (arbitrator, err) = _recover(digest, signature);
            _bubble(err);
        }
        _rulePlatform(orderId, terms, state, arbitrator, buyerShareBps, rationaleHash);
    }

    /// @notice ERC-792: the order's own arbitrator rules, once. The ruling is recorded; {executeRuling} settles.
    /// @dev Only `msg.sender`'s own disputes are found: a dispute id is looked up under the calling arbitrator,
    ///      which the escrow recorded when it created the dispute with the order's signed arbitrator.
    /// @param _disputeID the arbitrator's dispute id
    /// @param _ruling 0 (refused: split 50/50) or 1..10 (buyer share (r - 1) * 1111 bps, 10 = full refund)
    function rule(uint256 _disputeID, uint256 _ruling) external {
        EscrowRegistry.recordRuling(_disputes, _rulings, _disputeID, _ruling);
    }

    /// @inheritdoc ITradeGuardEscrow
    function executeRuling(bytes32 orderId, Terms calldata terms, uint256 state) external {
        EscrowRegistry.executeRuling(_orders, _credits, _rulings, terms, orderId, state, _TREASURY);
    }

    // =========================================================================================== refunds

    /// @inheritdoc ITradeGuardEscrow
    function refundBySeller(bytes32 orderId, Terms calldata terms, uint256 state) external {
        EscrowRegistry.refundBySeller(_orders, _credits, orderId, terms, state);
    }

    /// @inheritdoc ITradeGuardEscrow
    function timeoutRefund(bytes32 orderId, Terms calldata terms, uint256 state) external {
        EscrowRegistry.timeoutRefund(_orders, _credits, _rulings, orderId, terms, state);
    }

    // ============================================================================================ freeze

    /// @inheritdoc ITradeGuardEscrow
    function freeze(bytes32 orderId, Terms calldata terms, uint256 state, uint32 duration, bytes32 reasonHash)
        external
        onlyRole(REGULATOR_ROLE)
    {
        EscrowRegistry.freeze(_orders, orderId, terms, state, duration, reasonHash);
    }

    /// @inheritdoc ITradeGuardEscrow
    function unfreeze(bytes32 orderId, Terms calldata terms, uint256 state) external onlyRole(REGULATOR_ROLE) {
        EscrowRegistry.unfreeze(_orders, orderId, terms, state);
    }

    // ========================================================================================== payouts

    /// @inheritdoc ITradeGuardEscrow
    function withdraw(address token, address to, uint256 amount) external nonReentrant {
        if (to == address(0)) revert ZeroAddress();
        // A payout to the escrow would leave its tokens credited to nobody (stranded).
        if (to == address(this)) revert InvalidRecipient(to);
        uint256 available = _credits[token][msg.sender];
        if (amount == 0 || amount > available) revert InsufficientCredit(token, msg.sender, available, amount);
        // Cannot underflow: amount <= available was checked above.
        unchecked {
            _credits[token][msg.sender] = available - amount;
        }
        emit Withdrawn(token, msg.sender, to, amount);
        IERC20(token).safeTransfer(to, amount);
    }

    // ============================================================================================= admin

    /// @inheritdoc ITradeGuardEscrow
    function addOracle(address oracle) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _reg.addOracle(oracle, ROLE_DELAY);
    }

    /// @inheritdoc ITradeGuardEscrow
    function removeOracle(address oracle) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _reg.removeOracle(oracle);
    }

    /// @inheritdoc ITradeGuardEscrow
    function setThreshold(uint8 threshold) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _reg.setThreshold(threshold);
    }

    /// @inheritdoc ITradeGuardEscrow
    function addArbitrator(address arbitrator) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _reg.addArbitrator(arbitrator, ROLE_DELAY);
    }

    /// @inheritdoc ITradeGuardEscrow
    function removeArbitrator(address arbitrator) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _reg.removeArbitrator(arbitrator);
    }

    /// @inheritdoc ITradeGuardEscrow
    function setToken(address token, bool allowed) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _reg.setToken(token, allowed);
    }

    /// @inheritdoc ITradeGuardEscrow
    function setTaxRecipient(address recipient, uint16 maxTaxBps) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _reg.setTaxRecipient(recipient, maxTaxBps);
    }

    /// @inheritdoc ITradeGuardEscrow
    function setCommission(uint16 commissionBps) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _reg.setCommission(commissionBps);
    }

    /// @inheritdoc ITradeGuardEscrow
    function setDisputeWindows(uint32 responseSeconds, uint32 arbitrationSeconds)
        external
        onlyRole(DEFAULT_ADMIN_ROLE)
    {
        _reg.setDisputeWindows(responseSeconds, arbitrationSeconds);
    }

    /// @inheritdoc ITradeGuardEscrow
    function setMetaEvidence(string calldata uri) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _reg.setMetaEvidence(uri);
    }

    /// @inheritdoc ITradeGuardEscrow
    function pause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _reg.setPaused(true);
    }

    /// @inheritdoc ITradeGuardEscrow
    function unpause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _reg.setPaused(false);
    }

    // ============================================================================================= views

    /// @notice ERC-5267: the EIP-712 domain (name "TradeGuard", version "2", this chain and contract).
    /// @return fields 0x0f: name, version, chainId and verifyingContract are set
    /// @return name "TradeGuard"
    /// @return version "2"
    /// @return chainId the current chain id
    /// @return verifyingContract this escrow
    /// @return salt unused (zero)
    /// @return extensions none
    function eip712Domain()
        public
        view
        override
        returns (
            bytes1 fields,
            string memory name,
            string memory version,
            uint256 chainId,
            address verifyingContract,
            bytes32 salt,
            uint256[] memory extensions
        )
    {
        return (hex"0f", "TradeGuard", "2", block.chainid, address(this), bytes32(0), new uint256[](0));
    }

    /// @inheritdoc ITradeGuardEscrow
    function orderKey(bytes32 orderId, address buyer) external pure returns (bytes32) {
        return OrderState.key(orderId, buyer);
    }

    /// @inheritdoc ITradeGuardEscrow
    function commitmentOf(bytes32 orderId, address buyer) external view returns (bytes32) {
        return _orders[OrderState.key(orderId, buyer)];
    }

    /// @inheritdoc ITradeGuardEscrow
    function creditOf(address token, address account) external view returns (uint256) {
        return _credits[token][account];
    }

    /// @inheritdoc ITradeGuardEscrow
    function config() external view returns (Config memory) {
        return _reg.config;
    }

    /// @inheritdoc ITradeGuardEscrow
    function treasury() external view returns (address) {
        return _TREASURY;
    }

    /// @inheritdoc ITradeGuardEscrow
    function paused() external view returns (bool) {
        return _reg.config.paused;
    }

    /// @inheritdoc ITradeGuardEscrow
    function oracleInfo(address oracle) external view returns (OracleInfo memory) {
        return _reg.oracles[oracle];
    }

    /// @inheritdoc ITradeGuardEscrow
    function oracleAt(uint256 index) external view returns (address) {
        return _reg.oracleList[index];
    }

    /// @inheritdoc ITradeGuardEscrow
    function arbitratorActiveFrom(address arbitrator) external view returns (uint64) {
        return _reg.arbitrators[arbitrator];
    }

    /// @inheritdoc ITradeGuardEscrow
    function isTokenAllowed(address token) external view returns (bool) {
        return _reg.allowedTokens[token];
    }

    /// @inheritdoc ITradeGuardEscrow
    function taxCap(address recipient) external view returns (uint16) {
        return _reg.taxCaps[recipient];
    }

    /// @inheritdoc ITradeGuardEscrow
    function partialAttestations(bytes32 key, uint8 milestone) external view returns (uint256) {
        return _partial[key][milestone];
    }

    /// @inheritdoc ITradeGuardEscrow
    function isDigestUsed(bytes32 key, bytes32 digest) external view returns (bool) {
        return _usedDigests[key][digest];
    }

    /// @inheritdoc ITradeGuardEscrow
    function disputeOf(address arbitrator, uint256 disputeID) external view returns (bytes32 key, uint256 ruling) {
        key = _disputes[arbitrator][disputeID];
        ruling = _rulings[key];
    }

    // ========================================================================================= internals

    /// @dev Checks an authorization and records the order. Reverts on any problem.
    function _open(OrderAuthorization calldata a, bytes calldata signature) private {
        // Each field is read (and range-checked by the ABI decoder) once, in the order the checks need it.
        address buyer = a.buyer;
        bytes32 key = OrderState.key(a.orderId, buyer);
        if (_orders[key] != bytes32(0)) revert OrderAlreadyExists(a.orderId);
        _checkValidUntil(a.validUntil);
        address token = a.token;
        if (!_reg.allowedTokens[token]) revert TokenNotAllowed(token);
        uint256 amount = a.amount;
        if (amount == 0 || amount > type(uint128).max) revert InvalidAmount(amount);
        address seller = a.seller;
        if (buyer == address(0) || seller == address(0) || buyer == seller) revert InvalidParties(buyer, seller);
        Config memory c = _reg.config;
        if (c.paused) revert EnforcedPause();
        uint16 commissionBps = a.commissionBps;
        if (commissionBps != c.commissionBps) revert CommissionMismatch(commissionBps, c.commissionBps);
        uint16 taxBps = a.taxBps;
        address taxRecipient = a.taxRecipient;
        if (taxBps == 0 ? taxRecipient != address(0) : taxBps > _reg.taxCaps[taxRecipient]) {
            revert TaxNotAllowed(taxRecipient, taxBps);
        }
        uint64 shipBy = a.shipBy;
        uint64 deliverBy = a.deliverBy;
        uint32 holdSeconds = a.holdSeconds;
        if (
            shipBy <= block.timestamp || deliverBy <= shipBy || deliverBy > block.timestamp + MAX_SCHEDULE
                || holdSeconds < MIN_HOLD_SECONDS || holdSeconds > MAX_HOLD_SECONDS
        ) revert InvalidSchedule(shipBy, deliverBy, holdSeconds);
        // An ERC-792 arbitrator must be one the platform appointed and that is active now; without one the
        // extraData hash must be zero (one canonical form of "platform arbitration").
        address arbitrator = a.arbitrator;
        bytes32 extraDataHash = a.arbitratorExtraDataHash;
        if (arbitrator == address(0)) {
            if (extraDataHash != bytes32(0)) revert InvalidArbitration(arbitrator, extraDataHash);
        } else {
            uint64 since = _reg.arbitrators[arbitrator];
            if (since == 0 || since > block.timestamp) revert InvalidArbitration(arbitrator, extraDataHash);
        }
        // k must be reachable by oracles that count for this order (active before it is funded).
        uint256 usable = EscrowRegistry.usableOracles(c, block.timestamp);
        if (c.threshold > usable) revert InvalidThreshold(c.threshold, usable);
        // Every field of `a` was read (and so range-checked by the ABI decoder) above: its calldata words are
        // clean, and the struct hash, the terms and the event are built straight from them.
        if (msg.sender != buyer) _requireSigner(_hashTypedDataV4(_authStructHash(a)), signature, buyer);
        uint256 state = OrderState.funded(buyer);
        (uint256 k, uint256 response, uint256 arbitration, uint256 meta) =
            (c.threshold, c.responseSeconds, c.arbitrationSeconds, c.metaEvidenceId);
        bytes32 topic = OrderFunded.selector;
        bytes32 commitment;
        // Memory holds abi.encode(Terms, state): the commitment is its hash and OrderFunded's data is the same
        // bytes (Terms is a static struct), so it is encoded once.
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            calldatacopy(ptr, add(a, 0x20), 320) // buyer .. holdSeconds
            mstore(add(ptr, 320), k)
            mstore(add(ptr, 352), response)
            mstore(add(ptr, 384), arbitration)
            mstore(add(ptr, 416), timestamp()) // fundedAt
            calldatacopy(add(ptr, 448), add(a, 384), 64) // arbitrator, arbitratorExtraDataHash
            mstore(add(ptr, 512), meta)
            mstore(add(ptr, 544), state)
            commitment := keccak256(ptr, 576)
            log2(ptr, 576, topic, calldataload(a))
        }
        _orders[key] = commitment;
    }

    /// @dev EIP-712 struct hash of an OrderAuthorization whose calldata words were already range-checked.
    function _authStructHash(OrderAuthorization calldata a) private pure returns (bytes32 h) {
        bytes32 typeHash = ORDER_AUTHORIZATION_TYPEHASH;
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, typeHash)
            calldatacopy(add(ptr, 0x20), a, 448)
            h := keccak256(ptr, 480)
        }
    }

    /// @dev Pulls `amount` from `buyer` (after the permit, if `usePermit` and it has a deadline) and refuses tokens
    ///      that deliver less.
    function _pull(address token, address buyer, uint256 amount, Permit calldata permit, bool usePermit) private {
        if (usePermit && permit.deadline != 0) {
            // A front-run permit (already used) is not an error as long as the allowance is there.
            try IERC20Permit(token).permit(
                buyer, address(this), permit.value, permit.deadline, permit.v, permit.r, permit.s
            ) {} catch {}
        }
        uint256 before = IERC20(token).balanceOf(address(this));
        // `buyer` is never caller-chosen here: every order in `amount` was authorized by this buyer's own
        // OrderAuthorization signature (or the buyer is the caller), checked in `_open` before this pull.
        // slither-disable-next-line arbitrary-send-erc20,arbitrary-send-erc20-permit
        IERC20(token).safeTransferFrom(buyer, address(this), amount);
        uint256 received = IERC20(token).balanceOf(address(this)) - before;
        if (received != amount) revert TokenShortfall(token, amount, received);
    }

    /// @dev Core of {attest}: returns an encoded custom error instead of reverting, and writes nothing then.
    function _attest(bytes32 id, Terms calldata t, uint256 s, Attestation[] calldata atts)
        private
        returns (bytes memory err, bool advanced)
    {
        bytes32 key;
        (key, err) = _verify(id, t, s);
        if (err.length != 0) return (err, false);
        uint256 n = atts.length;
        if (n == 0) return (abi.encodeWithSelector(NoAttestations.selector), false);
        uint8 milestone = atts[0].milestone;
        uint8 st = s.status();
        uint256 deadline;
        if (milestone == MILESTONE_SHIPPED || milestone == MILESTONE_DELIVERED) {
            if (st == OrderState.FUNDED) deadline = t.shipBy;
            else if (st == OrderState.SHIPPED && milestone == MILESTONE_DELIVERED) deadline = t.deliverBy;
            else return (abi.encodeWithSelector(InvalidStatus.selector, id, st), false);
        } else {
            return (abi.encodeWithSelector(InvalidMilestone.selector, milestone), false);
        }
        // A freeze stops attestations too: otherwise a freeze begun after a missed deadline would reopen it.
        if (s.isFrozen(block.timestamp)) {
            return (abi.encodeWithSelector(OrderIsFrozen.selector, id, s.frozenUntil()), false);
        }
        deadline += s.frozenSeconds();
        if (block.timestamp > deadline) return (abi.encodeWithSelector(DeadlinePassed.selector, id, deadline), false);

        uint256 bits = t.threshold > 1 ? _partial[key][milestone] : 0;
        uint256 count = bits == 0 ? 0 : _countCounting(bits, t.fundedAt);
        address[] memory signers = new address[](n);
        for (uint256 i; i < n; ++i) {
            Attestation calldata a = atts[i];
            if (a.milestone != milestone) return (abi.encodeWithSelector(InvalidMilestone.selector, a.milestone), false);
            if (a.eventTime > block.timestamp) {
                return (abi.encodeWithSelector(EventInFuture.selector, a.eventTime), false);
            }
            address signer = msg.sender;
            if (a.signature.length != 0) {
                (signer, err) = _recover(
                    _hashTypedDataV4(
                        keccak256(
                            abi.encode(
                                DELIVERY_ATTESTATION_TYPEHASH, id, milestone, a.eventTime, a.trackingHash, a.evidenceHash
                            )
                        )
                    ),
                    a.signature
                );
                if (err.length != 0) return (err, false);
            }
            OracleInfo memory o = _reg.oracles[signer];
            if (!o.active || o.activeFrom > t.fundedAt) {
                return (abi.encodeWithSelector(NotOracle.selector, signer), false);
            }
            uint256 bit = 1 << o.index;
            if (bits & bit != 0) return (abi.encodeWithSelector(DuplicateAttestation.selector, id, signer), false);
            bits |= bit;
            signers[i] = signer;
            ++count;
        }

        for (uint256 i; i < n; ++i) {
            Attestation calldata a = atts[i];
            emit Attested(id, signers[i], milestone, a.eventTime, a.trackingHash, a.evidenceHash);
        }
        if (count < t.threshold) {
            _partial[key][milestone] = bits;
            return (err, false);
        }
        if (t.threshold > 1) delete _partial[key][milestone];
        uint256 next;
        if (milestone == MILESTONE_SHIPPED) {
            next = s.withStatus(OrderState.SHIPPED);
            _orders[key] = OrderState.commit(t, next);
            emit OrderShipped(id, next);
        } else {
            uint256 releaseAt = s.timerStart(block.timestamp) + t.holdSeconds;
            next = s.withStatus(OrderState.DELIVERED).withAnchor(releaseAt - s.frozenSeconds());
            _orders[key] = OrderState.commit(t, next);
            emit OrderDelivered(id, next, uint64(releaseAt));
        }
        return (err, true);
    }

    /// @dev Counts the bits of oracles that still count for an order funded at `fundedAt`.
    function _countCounting(uint256 bits, uint64 fundedAt) private view returns (uint256 count) {
        for (uint256 i; bits != 0; ++i) {
            if (bits & 1 != 0) {
                OracleInfo memory o = _reg.oracles[_reg.oracleList[i]];
                if (o.active && o.index == i && o.activeFrom <= fundedAt) ++count;
            }
            bits >>= 1;
        }
    }

    /// @dev Core of {release}: returns an encoded custom error instead of reverting, and writes nothing then.
    function _release(bytes32 id, Terms calldata t, uint256 s, Pending memory p) private returns (bytes memory err) {
        bytes32 key;
        (key, err) = _verify(id, t, s);
        if (err.length != 0) return err;
        if (s.status() != OrderState.DELIVERED) return abi.encodeWithSelector(InvalidStatus.selector, id, s.status());
        if (s.isFrozen(block.timestamp)) return abi.encodeWithSelector(OrderIsFrozen.selector, id, s.frozenUntil());
        uint256 releaseAt = s.anchor() + s.frozenSeconds();
        if (block.timestamp < releaseAt) return abi.encodeWithSelector(DeadlineNotReached.selector, id, releaseAt);
        _settleRelease(key, id, t, s, p);
    }

    /// @dev Buyer confirmation (direct or signed): release now.
    function _confirm(bytes32 id, Terms calldata t, uint256 s, bytes32 evidenceHash) private {
        bytes32 key = _requireOrder(id, t, s);
        uint8 st = s.status();
        if (st != OrderState.SHIPPED && st != OrderState.DELIVERED) revert InvalidStatus(id, Status(st));
        _requireNotFrozen(id, s);
        emit ReceiptConfirmed(id, evidenceHash);
        // slither-disable-next-line uninitialized-local (an all-zero accumulator is the intended start)
        Pending memory p;
        _settleRelease(key, id, t, s, p);
        _flush(p);
    }

    /// @dev Marks the order released and adds its split to the pending credits.
    function _settleRelease(bytes32 key, bytes32 id, Terms calldata t, uint256 s, Pending memory p) private {
        uint256 next = s.withStatus(OrderState.RELEASED);
        _orders[key] = OrderState.commit(t, next);
        (uint256 commission, uint256 tax, uint256 net) = _split(t.amount, t.commissionBps, t.taxBps);
        _addPending(p, t, commission, tax, net);
        emit OrderReleased(id, next, commission, tax, net);
    }

    /// @dev A platform arbitrator's ruling; `arbitrator` is the caller or the signer recovered. Only orders without
    ///      an ERC-792 arbitrator, and only arbitrators appointed before the order was funded: one appointed while a
    ///      dispute is open cannot rule on it. Settled here rather than in EscrowRegistry: no DELEGATECALL to a
    ///      cold library account and no re-encoding of the terms.
    function _rulePlatform(
        bytes32 id,
        Terms calldata t,
        uint256 s,
        address arbitrator,
        uint16 shareBps,
        bytes32 rationale
    ) private {
        bytes32 key = _requireOrder(id, t, s);
        uint64 since = _reg.arbitrators[arbitrator];
        if (t.arbitrator != address(0) || since == 0 || since > t.fundedAt) revert NotArbitrator(arbitrator);
        if (s.status() != OrderState.DISPUTED) revert InvalidStatus(id, Status(s.status()));
        _requireNotFrozen(id, s);
        if (shareBps > BPS) revert InvalidBps(shareBps);
        uint256 deadline = s.anchor() + s.frozenSeconds() + t.arbitrationSeconds;
        if (block.timestamp > deadline) revert DeadlinePassed(id, deadline);
        // Replay is prevented by the status change the ruling makes.
        _resolve(key, id, t, s, arbitrator, shareBps, rationale);
    }

    /// @dev Settles a platform ruling: the buyer's share is refunded, the rest split as a release (SPEC §3) and
    ///      credited.
    function _resolve(
        bytes32 key,
        bytes32 id,
        Terms calldata t,
        uint256 s,
        address arbitrator,
        uint16 shareBps,
        bytes32 rationale
    ) private {
        uint256 next = s.withStatus(OrderState.RESOLVED);
        _orders[key] = OrderState.commit(t, next);
        uint256 refund = t.amount * shareBps / BPS;
        // SPEC §3 on the rest, as {_split} (written out: a second call site would stop {_split} being inlined
        // into the release path).
        uint256 gross = t.amount - refund;
        uint256 commission = gross * t.commissionBps / BPS;
        uint256 tax = gross * t.taxBps / BPS;
        uint256 net = gross - commission - tax;
        mapping(address => uint256) storage c = _credits[t.token];
        if (refund != 0) c[t.buyer] += refund;
        if (commission != 0) c[_TREASURY] += commission;
        if (tax != 0) c[t.taxRecipient] += tax;
        if (net != 0) c[t.seller] += net;
        emit DisputeResolved(id, arbitrator, next, shareBps, rationale, refund, commission, tax, net);
    }

    /// @dev Buyer opens a dispute (direct or signed); every order timer stops, the dispute timers start. With an
    ///      ERC-792 arbitrator the dispute is created there, paid with all of `msg.value`.
    // slither-disable-next-line msg-value-in-nonpayable (reached only from the payable submitBuyerDecision)
    function _openDispute(bytes32 id, Terms calldata t, uint256 s, bytes32 evidenceHash, bytes calldata extraData)
        private
    {
        bytes32 key = _requireOrder(id, t, s);
        uint8 st = s.status();
        // Windows are checked with the freeze time elapsed so far: a freeze does not reopen a closed window.
        uint256 ext = s.elapsedFrozen(block.timestamp);
        if (st == OrderState.FUNDED) {
            if (block.timestamp > t.shipBy + ext) revert DeadlinePassed(id, t.shipBy + ext);
        } else if (st == OrderState.SHIPPED) {
            if (block.timestamp > t.deliverBy + ext) revert DeadlinePassed(id, t.deliverBy + ext);
        } else if (st == OrderState.DELIVERED) {
            uint256 releaseAt = s.anchor() + ext;
            if (block.timestamp >= releaseAt) revert DeadlinePassed(id, releaseAt);
        } else {
            revert InvalidStatus(id, Status(st));
        }
        address arbitrator = t.arbitrator;
        if (arbitrator == address(0)) {
            if (msg.value != 0) revert UnexpectedValue(msg.value);
        } else if (keccak256(extraData) != t.arbitratorExtraDataHash) {
            revert ExtraDataMismatch(t.arbitratorExtraDataHash, keccak256(extraData));
        }
        uint256 next =
            s.withStatus(OrderState.DISPUTED).withAnchor(s.timerStart(block.timestamp) - s.frozenSeconds());
        _orders[key] = OrderState.commit(t, next);
        emit DisputeOpened(id, next, evidenceHash);
        // Platform arbitration (SPEC §4): DisputeOpened says it all. ERC-1497's Dispute and Evidence events are for
        // an ERC-792 arbitrator's readers (SPEC §4.1), so only such an order emits them.
        if (arbitrator == address(0)) return;
        // The order's arbitrator was appointed by the platform and signed by the buyer; the call comes after every
        // state change, and the caller is guarded against reentrancy.
        uint256 disputeID = IArbitrator(arbitrator).createDispute{value: msg.value}(RULING_CHOICES, extraData);
        if (_disputes[arbitrator][disputeID] != bytes32(0)) revert UnknownDispute(arbitrator, disputeID);
        _disputes[arbitrator][disputeID] = key;
        emit Dispute(arbitrator, disputeID, t.metaEvidenceId, uint256(id));
        // DisputeOpened carries the buyer's evidence hash; ERC-1497 readers get it as Evidence too.
        if (evidenceHash != bytes32(0)) emit Evidence(arbitrator, uint256(id), t.buyer, _evidenceURI(evidenceHash));
    }

    /// @dev Anchors a party's evidence; a seller's evidence inside the response window answers the dispute.
    function _evidence(bytes32 key, bytes32 id, Terms calldata t, uint256 s, address party, bytes32 evidenceHash)
        private
    {
        if (party != t.buyer && party != t.seller) revert Unauthorized(party);
        if (evidenceHash == bytes32(0)) revert EmptyHash();
        if (s.isFinal()) revert InvalidStatus(id, Status(s.status()));
        uint256 next = s;
        if (
            party == t.seller && s.status() == OrderState.DISPUTED && !s.responded()
                && block.timestamp <= s.anchor() + s.elapsedFrozen(block.timestamp) + t.responseSeconds
        ) {
            next = s.withResponded();
            _orders[key] = OrderState.commit(t, next);
        }
        emit EvidenceSubmitted(id, party, evidenceHash, next);
        // As in {_openDispute}: ERC-1497 Evidence only for an ERC-792 arbitrator's readers.
        address arbitrator = t.arbitrator;
        if (arbitrator != address(0)) emit Evidence(arbitrator, uint256(id), party, _evidenceURI(evidenceHash));
    }

    /// @dev SPEC §3: floor each fee leg; the seller's net is the rest, so the legs always sum to `gross`.
    function _split(uint256 gross, uint16 commissionBps, uint16 taxBps)
        private
        pure
        returns (uint256 commission, uint256 tax, uint256 net)
    {
        commission = gross * commissionBps / BPS;
        tax = gross * taxBps / BPS;
        net = gross - commission - tax;
    }

    /// @dev Adds one settlement to the pending credits, writing out whatever belongs to another recipient.
    function _addPending(Pending memory p, Terms calldata t, uint256 commission, uint256 tax, uint256 net) private {
        if (p.token != t.token) {
            _flush(p);
            p.token = t.token;
        }
        if (tax != 0) {
            if (p.taxRecipient != t.taxRecipient) {
                _flushTax(p);
                p.taxRecipient = t.taxRecipient;
            }
            p.tax += tax;
        }
        if (p.seller != t.seller) {
            _flushSeller(p);
            p.seller = t.seller;
        }
        p.commission += commission;
        p.net += net;
    }

    /// @dev Writes all pending credits.
    function _flush(Pending memory p) private {
        if (p.commission != 0) {
            _credits[p.token][_TREASURY] += p.commission;
            p.commission = 0;
        }
        _flushTax(p);
        _flushSeller(p);
    }

    function _flushTax(Pending memory p) private {
        if (p.tax != 0) {
            _credits[p.token][p.taxRecipient] += p.tax;
            p.tax = 0;
        }
    }

    function _flushSeller(Pending memory p) private {
        if (p.net != 0) {
            _credits[p.token][p.seller] += p.net;
            p.net = 0;
        }
    }

    /// @dev The order's key, and the empty error if `terms`/`state` open the order's commitment, else the
    ///      encoded error.
    function _verify(bytes32 id, Terms calldata t, uint256 s) private view returns (bytes32 key, bytes memory) {
        key = OrderState.key(id, t.buyer);
        bytes32 c = _orders[key];
        if (c == bytes32(0)) return (key, abi.encodeWithSelector(UnknownOrder.selector, id));
        if (c != OrderState.commit(t, s)) return (key, abi.encodeWithSelector(OrderDataMismatch.selector, id));
        return (key, "");
    }

    function _requireOrder(bytes32 id, Terms calldata t, uint256 s) private view returns (bytes32 key) {
        bytes memory err;
        (key, err) = _verify(id, t, s);
        _bubble(err);
    }

    function _requireNotFrozen(bytes32 id, uint256 s) private view {
        if (s.isFrozen(block.timestamp)) revert OrderIsFrozen(id, s.frozenUntil());
    }

    function _checkValidUntil(uint64 validUntil) private view {
        if (validUntil < block.timestamp) revert SignatureExpired(validUntil, block.timestamp);
    }

    /// @dev Recovers an EIP-712 signer; malformed or malleable signatures give an encoded error.
    function _recover(bytes32 digest, bytes calldata signature)
        private
        pure
        returns (address signer, bytes memory err)
    {
        // As ECDSA.tryRecover(bytes32, bytes) does, read straight from calldata (no copy into memory).
        if (signature.length != 65) {
            return (
                address(0),
                abi.encodeWithSelector(MalformedSignature.selector, uint8(ECDSA.RecoverError.InvalidSignatureLength))
            );
        }
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly ("memory-safe") {
            r := calldataload(signature.offset)
            s := calldataload(add(signature.offset, 0x20))
            v := byte(0, calldataload(add(signature.offset, 0x40)))
        }
        // The third return value only details the error kind we already report through `e`.
        // slither-disable-next-line unused-return
        (address recovered, ECDSA.RecoverError e,) = ECDSA.tryRecover(digest, v, r, s);
        if (e != ECDSA.RecoverError.NoError) {
            return (address(0), abi.encodeWithSelector(MalformedSignature.selector, uint8(e)));
        }
        return (recovered, "");
    }

    function _requireSigner(bytes32 digest, bytes calldata signature, address expected) private pure {
        (address signer, bytes memory err) = _recover(digest, signature);
        _bubble(err);
        if (signer != expected) revert InvalidSignature(expected, signer);
    }

    /// @dev RFC 6920 named-information URI of a SHA-256 content hash, for ERC-1497 `Evidence`:
    ///      "ni:///sha-256;" and the 43 characters of unpadded base64url that `Base64.encodeURL` gives for the
    ///      hash's 32 bytes, computed 32 characters at a time (a 2k-gas loop otherwise).
    function _evidenceURI(bytes32 hash) private pure returns (string memory uri) {
        uint256 hi = uint256(hash) >> 64; // bytes 0..23: characters 0..31
        uint256 lo = (uint256(hash) & type(uint64).max) << 128; // bytes 24..31 and a zero byte: characters 32..42
        (uint256 w1, uint256 w2) = (_base64URLWord(hi), _base64URLWord(lo));
        assembly ("memory-safe") {
            uri := mload(0x40)
            mstore(0x40, add(uri, 0x80)) // length word, 57 bytes, and room for the second word's spill
            mstore(uri, 57)
            mstore(add(uri, 0x20), "ni:///sha-256;")
            mstore(add(uri, 0x2e), w1)
            mstore(add(uri, 0x4e), w2)
            mstore(add(uri, 0x59), 0) // zero everything after the 57th byte
        }
    }

    /// @dev The 32 base64url characters of the 24 bytes in the low 192 bits of `x`: each 6-bit group is spread
    ///      into its own byte, then mapped to its character in every byte at once.
    function _base64URLWord(uint256 x) private pure returns (uint256 c) {
        x = ((x >> 96) << 128) | (x & 0xffffffffffffffffffffffff);
        x = ((x & 0xffffffffffff00000000000000000000ffffffffffff000000000000) << 16)
            | (x & 0xffffffffffff00000000000000000000ffffffffffff);
        x = ((x & 0xffffff0000000000ffffff0000000000ffffff0000000000ffffff000000) << 8)
            | (x & 0xffffff0000000000ffffff0000000000ffffff0000000000ffffff);
        x = ((x & 0xfff00000fff00000fff00000fff00000fff00000fff00000fff00000fff000) << 4)
            | (x & 0xfff00000fff00000fff00000fff00000fff00000fff00000fff00000fff);
        x = ((x & 0xfc00fc00fc00fc00fc00fc00fc00fc00fc00fc00fc00fc00fc00fc00fc00fc0) << 2)
            | (x & 0x3f003f003f003f003f003f003f003f003f003f003f003f003f003f003f003f);
        // Every byte of x is now a value v < 64. Flag bytes with v >= 26, 52, 62, 63 (bit 7 of v + 128 - bound),
        // then v + 'A' (65) becomes 'a'.. (+6), '0'.. (-75), '-' (-13) and '_' (+49). No byte carries or borrows:
        // v + 65 + 6 + 49 <= 183 and every result is at least 45.
        uint256 ones = 0x0101010101010101010101010101010101010101010101010101010101010101;
        uint256 high = ones << 7;
        unchecked {
            uint256 m26 = ((x + 0x66 * ones) & high) >> 7;
            uint256 m52 = ((x + 0x4c * ones) & high) >> 7;
            uint256 m62 = ((x + 0x42 * ones) & high) >> 7;
            uint256 m63 = ((x + 0x41 * ones) & high) >> 7;
            c = x + 0x41 * ones + m26 * 6 + m63 * 49 - m52 * 75 - m62 * 13;
        }
    }

    /// @dev A batch entry that cannot proceed: revert in strict mode, else report it and go on.
    function _skip(bytes32 id, bytes memory err, bool strict) private {
        if (strict) _bubble(err);
        emit OrderSkipped(id, err);
    }

    /// @dev Reverts with `err` (an ABI-encoded custom error) unless it is empty.
    function _bubble(bytes memory err) private pure {
        if (err.length != 0) {
            assembly ("memory-safe") {
                revert(add(err, 0x20), mload(err))
            }
        }
    }
}
