// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IArbitrable} from "./IArbitrable.sol";

/// @title TradeGuard escrow v2: the external surface
/// @notice One escrow contract holds many orders. Each order occupies one storage slot holding a commitment
///         `keccak256(abi.encode(terms, state))`; callers pass the terms and the packed state back as calldata
///         (both are published in this contract's events, so anyone can rebuild them from the chain alone).
///         Orders are stored under `orderKey = keccak256(abi.encode(orderId, buyer))`: an order id is unique per
///         buyer, so nobody can squat another buyer's order id (see {orderKey}).
///         Disputes are decided by the platform's arbitrators (signed `Ruling`, SPEC §4) or, when the buyer's
///         OrderAuthorization names one, by an ERC-792 arbitrator (SPEC §4.1) through {IArbitrable.rule}.
/// @dev Packed order state (`uint256 state`), least significant bits first:
///      bits   0..7   status (see {Status})
///      bit    8      seller responded to the open dispute within the response window
///      bits  16..47  frozenSeconds: total regulator freeze time so far (every timer is extended by it)
///      bits  48..111 frozenUntil: unix time until which the order is frozen (0 = never frozen)
///      bits 112..175 anchor: timer base; `releaseAt = anchor + frozenSeconds` while delivered,
///                    `disputedAt = anchor + frozenSeconds` while disputed (deadlines add their window)
///      bits 176..255 buyer tag: the low 80 bits of the buyer's address, set at funding and never changed, so
///                    that every state-carrying event tells which buyer's order of an order id it belongs to
interface ITradeGuardEscrow is IArbitrable {
    // ------------------------------------------------------------------ types

    /// @notice Order status; values of 5 and above are final.
    enum Status {
        None,
        Funded,
        Shipped,
        Delivered,
        Disputed,
        Released,
        Refunded,
        Resolved
    }

    /// @notice Why an order was refunded in full.
    enum RefundReason {
        SellerRefund,
        ShipTimeout,
        DeliveryTimeout,
        ResponseTimeout,
        ArbitrationTimeout
    }

    /// @notice The buyer's signed order authorization, exactly as typed in SPEC §4.1 (14 fields).
    struct OrderAuthorization {
        /// @dev keccak256(abi.encode(seller, keccak256(bytes(orderRef))))
        bytes32 orderId;
        /// @dev the payer; signs this struct or sends the transaction itself
        address buyer;
        /// @dev the merchant receiving the net
        address seller;
        /// @dev allowlisted settlement token
        address token;
        /// @dev gross amount in token base units
        uint256 amount;
        /// @dev platform commission, must equal the platform rate at funding
        uint16 commissionBps;
        /// @dev cross-border tax, at most the tax recipient's cap
        uint16 taxBps;
        /// @dev the corridor's tax collection account (zero when taxBps is zero)
        address taxRecipient;
        /// @dev the shipment must be attested by this time, else anyone may refund the buyer
        uint64 shipBy;
        /// @dev delivery must be attested by this time, else anyone may refund the buyer
        uint64 deliverBy;
        /// @dev T+N hold window after delivery
        uint32 holdSeconds;
        /// @dev the signature is void after this time
        uint64 validUntil;
        /// @dev ERC-792 arbitrator of the order, or zero for the platform's arbitrators and the Ruling message
        address arbitrator;
        /// @dev keccak256 of the extraData passed to the arbitrator's createDispute (zero with no arbitrator)
        bytes32 arbitratorExtraDataHash;
    }

    /// @notice The terms an order was funded with; committed at funding and never changed.
    struct Terms {
        /// @dev payer, receives refunds
        address buyer;
        /// @dev receives the net on release
        address seller;
        /// @dev settlement token
        address token;
        /// @dev gross amount in token base units (at most 2^128 - 1)
        uint256 amount;
        /// @dev platform commission locked at funding
        uint16 commissionBps;
        /// @dev tax rate locked at funding
        uint16 taxBps;
        /// @dev tax recipient locked at funding
        address taxRecipient;
        /// @dev ship-by deadline (before freeze extensions)
        uint64 shipBy;
        /// @dev deliver-by deadline (before freeze extensions)
        uint64 deliverBy;
        /// @dev hold window after delivery
        uint32 holdSeconds;
        /// @dev oracle threshold k locked at funding
        uint8 threshold;
        /// @dev seller's dispute response window locked at funding
        uint32 responseSeconds;
        /// @dev arbitration deadline after a dispute opens, locked at funding
        uint32 arbitrationSeconds;
        /// @dev block time of funding; only oracles and platform arbitrators active by then count for this order
        uint64 fundedAt;
        /// @dev ERC-792 arbitrator (zero: platform arbitrators), as signed
        address arbitrator;
        /// @dev keccak256 of the arbitrator's extraData, as signed
        bytes32 arbitratorExtraDataHash;
        /// @dev ERC-1497 meta-evidence (dispute policy) id in force at funding
        uint64 metaEvidenceId;
    }

    /// @notice Platform settings applied to new orders, packed in one slot.
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

    /// @notice An EIP-2612 permit; `deadline == 0` means "no permit, use the existing allowance".
    struct Permit {
        /// @dev allowance to grant the escrow
        uint256 value;
        /// @dev permit deadline; zero skips the permit
        uint256 deadline;
        /// @dev signature v
        uint8 v;
        /// @dev signature r
        bytes32 r;
        /// @dev signature s
        bytes32 s;
    }

    /// @notice One oracle's DeliveryAttestation; an empty signature means the caller itself attests.
    struct Attestation {
        /// @dev 1 SHIPPED, 2 DELIVERED
        uint8 milestone;
        /// @dev when the logistics event happened (not after the block time)
        uint64 eventTime;
        /// @dev keccak256(bytes(carrier + ":" + trackingNumber))
        bytes32 trackingHash;
        /// @dev SHA-256 of the canonical event bytes kept off-chain
        bytes32 evidenceHash;
        /// @dev 65-byte EIP-712 signature of a registered oracle, or empty for a direct call
        bytes signature;
    }

    /// @notice An order reference: id, terms and current packed state.
    struct OrderRef {
        /// @dev order id
        bytes32 orderId;
        /// @dev terms as committed
        Terms terms;
        /// @dev current packed state
        uint256 state;
    }

    /// @notice One entry of an attestation batch.
    struct AttestItem {
        /// @dev the order
        OrderRef order;
        /// @dev attestations for one milestone
        Attestation[] attestations;
    }

    // ------------------------------------------------------------------ errors

    /// @notice An order with this id already exists.
    error OrderAlreadyExists(bytes32 orderId);
    /// @notice No order with this id.
    error UnknownOrder(bytes32 orderId);
    /// @notice The terms or state passed do not match the order's commitment.
    error OrderDataMismatch(bytes32 orderId);
    /// @notice The action is not allowed in the order's current status.
    error InvalidStatus(bytes32 orderId, Status status);
    /// @notice The caller is not the party this action belongs to.
    error Unauthorized(address caller);
    /// @notice A signature did not recover to the expected signer.
    error InvalidSignature(address expected, address recovered);
    /// @notice A signature was malformed (wrong length, malleable s, bad v).
    error MalformedSignature(uint8 reason);
    /// @notice The signed message's validUntil lies in the past.
    error SignatureExpired(uint64 validUntil, uint256 nowTime);
    /// @notice This signature was already used.
    error SignatureReplayed(bytes32 digest);
    /// @notice The token is not on the allowlist.
    error TokenNotAllowed(address token);
    /// @notice Amount is zero or above 2^128 - 1.
    error InvalidAmount(uint256 amount);
    /// @notice Buyer or seller is zero, or they are the same address.
    error InvalidParties(address buyer, address seller);
    /// @notice The signed commission is not the platform's rate.
    error CommissionMismatch(uint16 signed, uint16 expected);
    /// @notice The tax rate or recipient is not allowed.
    error TaxNotAllowed(address taxRecipient, uint16 taxBps);
    /// @notice shipBy, deliverBy or holdSeconds are out of bounds.
    error InvalidSchedule(uint64 shipBy, uint64 deliverBy, uint32 holdSeconds);
    /// @notice The token delivered less than the amount pulled (fee-on-transfer).
    error TokenShortfall(address token, uint256 expected, uint256 received);
    /// @notice The order's timer for this action has passed.
    error DeadlinePassed(bytes32 orderId, uint256 deadline);
    /// @notice The order's timer for this action has not been reached yet.
    error DeadlineNotReached(bytes32 orderId, uint256 deadline);
    /// @notice The order is frozen by a regulator.
    error OrderIsFrozen(bytes32 orderId, uint64 frozenUntil);
    /// @notice The order is not frozen.
    error OrderNotFrozen(bytes32 orderId);
    /// @notice The freeze is zero or would exceed the 30-day total.
    error FreezeTooLong(bytes32 orderId, uint256 totalSeconds);
    /// @notice The signer is not an oracle counting for this order.
    error NotOracle(address signer);
    /// @notice The oracle already attested this milestone of this order.
    error DuplicateAttestation(bytes32 orderId, address oracle);
    /// @notice The attestation carries an unknown milestone, or milestones differ within one call.
    error InvalidMilestone(uint8 milestone);
    /// @notice The attestation's event time lies in the future.
    error EventInFuture(uint64 eventTime);
    /// @notice No attestation was given.
    error NoAttestations();
    /// @notice The caller is not an active arbitrator.
    error NotArbitrator(address account);
    /// @notice The buyer decision is unknown.
    error InvalidDecision(uint8 decision);
    /// @notice Basis points above 10000 or above the configured bound.
    error InvalidBps(uint256 bps);
    /// @notice The order names an ERC-792 arbitrator that is not an arbitrator active at funding, or gives an
    ///         extraData hash without an arbitrator.
    error InvalidArbitration(address arbitrator, bytes32 extraDataHash);
    /// @notice The extraData given does not hash to the order's signed arbitratorExtraDataHash.
    error ExtraDataMismatch(bytes32 expected, bytes32 actual);
    /// @notice Native currency was sent where none is taken (only an ERC-792 dispute opening takes it).
    error UnexpectedValue(uint256 value);
    /// @notice No open dispute of the calling arbitrator has this id.
    error UnknownDispute(address arbitrator, uint256 disputeID);
    /// @notice The dispute was already ruled.
    error AlreadyRuled(bytes32 orderId, uint256 disputeID);
    /// @notice The ruling is not one of the dispute's choices (0..10).
    error InvalidRuling(uint256 ruling);
    /// @notice The order's ERC-792 arbitrator has not ruled yet.
    error NoRuling(bytes32 orderId);
    /// @notice A payout to the escrow itself, which would strand the credit.
    error InvalidRecipient(address to);
    /// @notice Not enough credit to withdraw.
    error InsufficientCredit(address token, address account, uint256 available, uint256 requested);
    /// @notice A zero address where one is required.
    error ZeroAddress();
    /// @notice Oracle configuration problem (already registered, not registered, registry full).
    error OracleConfig(address oracle);
    /// @notice Threshold is zero or larger than the number of active oracles.
    error InvalidThreshold(uint8 threshold, uint256 activeOracles);
    /// @notice A duration is out of bounds.
    error InvalidDuration(uint256 seconds_);
    /// @notice A batch is empty, too large, or its arrays differ in length.
    error InvalidBatch(uint256 length);
    /// @notice A content hash that must be set is zero.
    error EmptyHash();
    /// @notice New orders are paused (same selector as OpenZeppelin's Pausable).
    error EnforcedPause();
    /// @notice The escrow is not paused (same selector as OpenZeppelin's Pausable).
    error ExpectedPause();

    // ------------------------------------------------------------------ events

    /// @notice An order was funded; `terms` and `state` open its commitment.
    event OrderFunded(bytes32 indexed orderId, Terms terms, uint256 state);
    /// @notice One oracle's attestation was counted.
    event Attested(
        bytes32 indexed orderId,
        address indexed oracle,
        uint8 milestone,
        uint64 eventTime,
        bytes32 trackingHash,
        bytes32 evidenceHash
    );
    /// @notice The oracle threshold was met for SHIPPED.
    event OrderShipped(bytes32 indexed orderId, uint256 state);
    /// @notice The oracle threshold was met for DELIVERED; the hold window runs until `releaseAt`.
    event OrderDelivered(bytes32 indexed orderId, uint256 state, uint64 releaseAt);
    /// @notice The buyer confirmed receipt (the order is released in the same transaction).
    event ReceiptConfirmed(bytes32 indexed orderId, bytes32 evidenceHash);
    /// @notice The order was released: the gross split into commission, tax and seller net, all credited.
    event OrderReleased(bytes32 indexed orderId, uint256 state, uint256 commission, uint256 tax, uint256 sellerNet);
    /// @notice The buyer opened a dispute.
    event DisputeOpened(bytes32 indexed orderId, uint256 state, bytes32 evidenceHash);
    /// @notice A party anchored an evidence hash.
    event EvidenceSubmitted(bytes32 indexed orderId, address indexed party, bytes32 evidenceHash, uint256 state);
    /// @notice An arbitrator ruled; the buyer's share is credited to the buyer, the rest settled as a release.
    event DisputeResolved(
        bytes32 indexed orderId,
        address indexed arbitrator,
        uint256 state,
        uint16 buyerShareBps,
        bytes32 rationaleHash,
        uint256 buyerRefund,
        uint256 commission,
        uint256 tax,
        uint256 sellerNet
    );
    /// @notice The full amount was credited back to the buyer.
    event OrderRefunded(bytes32 indexed orderId, uint256 state, RefundReason reason);
    /// @notice A regulator froze the order until `frozenUntil`; every timer is extended by the freeze.
    event OrderFrozen(bytes32 indexed orderId, uint256 state, uint64 frozenUntil, bytes32 reasonHash);
    /// @notice A regulator lifted a freeze early.
    event OrderUnfrozen(bytes32 indexed orderId, uint256 state);
    /// @notice A batch entry was skipped; `reason` is the ABI-encoded custom error.
    event OrderSkipped(bytes32 indexed orderId, bytes reason);
    /// @notice A credit was paid out.
    event Withdrawn(address indexed token, address indexed account, address to, uint256 amount);

    /// @notice An oracle was registered; it counts for orders funded at or after `activeFrom`.
    event OracleAdded(address indexed oracle, uint8 index, uint64 activeFrom);
    /// @notice An oracle was removed; its attestations stop counting at once, for open orders too.
    event OracleRemoved(address indexed oracle);
    /// @notice The oracle threshold for new orders changed.
    event ThresholdSet(uint8 threshold);
    /// @notice An arbitrator was appointed; it may rule from `activeFrom`.
    event ArbitratorAdded(address indexed arbitrator, uint64 activeFrom);
    /// @notice An arbitrator was removed.
    event ArbitratorRemoved(address indexed arbitrator);
    /// @notice A settlement token was allowed or disallowed for new orders.
    event TokenAllowed(address indexed token, bool allowed);
    /// @notice A tax recipient's cap was set (0 removes it).
    event TaxRecipientSet(address indexed recipient, uint16 maxTaxBps);
    /// @notice The platform commission for new orders changed.
    event CommissionSet(uint16 commissionBps);
    /// @notice The treasury receiving commission (fixed at deployment).
    event TreasurySet(address treasury);
    /// @notice New orders were paused (same signature as OpenZeppelin's Pausable).
    event Paused(address account);
    /// @notice New orders are accepted again (same signature as OpenZeppelin's Pausable).
    event Unpaused(address account);
    /// @notice Dispute windows for new orders changed.
    event DisputeWindowsSet(uint32 responseSeconds, uint32 arbitrationSeconds);
    /// @notice The order's ERC-792 arbitrator ruled (see also {IArbitrable.Ruling}); anyone may now execute the
    ///         ruling with {executeRuling}.
    event RulingRecorded(
        bytes32 indexed orderId, address indexed arbitrator, uint256 indexed disputeID, uint256 ruling
    );

    // ------------------------------------------------------------------ ERC-1497

    /// @notice ERC-1497: the meta-evidence (dispute policy) for disputes.
    event MetaEvidence(uint256 indexed _metaEvidenceID, string _evidence);
    /// @notice ERC-1497: evidence; `_evidence` is an RFC 6920 `ni:///sha-256;` URI of the evidence bytes. Emitted
    ///         for an order with an ERC-792 arbitrator only (SPEC §4.1): a platform-arbitrated order's evidence is
    ///         its `DisputeOpened` and `EvidenceSubmitted` events.
    event Evidence(
        address indexed _arbitrator, uint256 indexed _evidenceGroupID, address indexed _party, string _evidence
    );
    /// @notice ERC-1497: a dispute was created at the order's ERC-792 arbitrator (not emitted under platform
    ///         arbitration); `_disputeID` is the arbitrator's, `_evidenceGroupID` the order id.
    event Dispute(
        address indexed _arbitrator, uint256 indexed _disputeID, uint256 _metaEvidenceID, uint256 _evidenceGroupID
    );

    // ------------------------------------------------------------------ party actions

    /// @notice Fund one or more orders, all or nothing. Each order needs its buyer's OrderAuthorization
    ///         signature, or the buyer as the caller (empty signature). Consecutive orders with the same buyer and
    ///         token are pulled in one transfer; the token must deliver exactly what was pulled.
    /// @param auths the order authorizations as signed
    /// @param signatures one 65-byte EIP-712 signature per authorization (empty where the caller is the buyer)
    /// @param permit an EIP-2612 permit for the first order's buyer and token, or deadline 0 to use an allowance
    function fund(OrderAuthorization[] calldata auths, bytes[] calldata signatures, Permit calldata permit) external;

    /// @notice Count k-of-n delivery attestations, one milestone per order; an order advances once k is met.
    /// @param items orders with their attestations
    /// @param strict revert with the entry's custom error (true), or skip the entry with {OrderSkipped} (false)
    /// @return advanced how many orders changed status
    function attest(AttestItem[] calldata items, bool strict) external returns (uint256 advanced);

    /// @notice Release delivered orders whose hold window is over. Anyone may call.
    /// @param orders the orders with their terms and state
    /// @param strict revert with the entry's custom error (true), or skip the entry with {OrderSkipped} (false)
    /// @return released how many orders were released
    function release(OrderRef[] calldata orders, bool strict) external returns (uint256 released);

    /// @notice The buyer's decision: confirm receipt (release now) or open a dispute. The buyer sends it, or
    ///         anyone relays the buyer's signed BuyerDecision. On an order with an ERC-792 arbitrator, opening a
    ///         dispute calls the arbitrator's `createDispute(10, extraData)` with all of `msg.value` (the
    ///         arbitration cost, paid by whoever sends the transaction; the escrow keeps and refunds none).
    /// @param orderId the order id
    /// @param terms the order's terms
    /// @param state the order's current packed state
    /// @param decision 1 confirm receipt, 2 open dispute
    /// @param evidenceHash SHA-256 of the buyer's evidence (zero for none)
    /// @param validUntil the signed message's expiry (ignored without a signature)
    /// @param signature the buyer's 65-byte signature, or empty when the buyer sends the transaction
    /// @param extraData the arbitrator's options; must hash to the order's arbitratorExtraDataHash when an
    ///        ERC-792 dispute is opened, ignored otherwise
    function submitBuyerDecision(
        bytes32 orderId,
        Terms calldata terms,
        uint256 state,
        uint8 decision,
        bytes32 evidenceHash,
        uint64 validUntil,
        bytes calldata signature,
        bytes calldata extraData
    ) external payable;

    /// @notice The buyer or the seller anchors an evidence hash, sending it or through a relayed signed
    ///         EvidenceSubmission. A seller's evidence inside the response window answers an open dispute.
    /// @param orderId the order id
    /// @param terms the order's terms
    /// @param state the order's current packed state
    /// @param party the buyer or the seller of the order
    /// @param evidenceHash SHA-256 of the evidence bytes kept off-chain
    /// @param validUntil the signed message's expiry (ignored without a signature)
    /// @param signature the party's 65-byte signature (acts once per order), or empty when the party sends
    function submitEvidence(
        bytes32 orderId,
        Terms calldata terms,
        uint256 state,
        address party,
        bytes32 evidenceHash,
        uint64 validUntil,
        bytes calldata signature
    ) external;

    /// @notice A platform arbitrator rules on a disputed order without an ERC-792 arbitrator, sending it or
    ///         through a relayed signed Ruling. The arbitrator must have been active when the order was funded.
    /// @param orderId the order id
    /// @param terms the order's terms
    /// @param state the order's current packed state
    /// @param buyerShareBps share of the amount refunded to the buyer (10000 full refund, 0 full release)
    /// @param rationaleHash SHA-256 of the written ruling
    /// @param validUntil the signed message's expiry (ignored without a signature)
    /// @param signature the arbitrator's 65-byte signature, or empty when the arbitrator sends
    function submitRuling(
        bytes32 orderId,
        Terms calldata terms,
        uint256 state,
        uint16 buyerShareBps,
        bytes32 rationaleHash,
        uint64 validUntil,
        bytes calldata signature
    ) external;

    /// @notice Settle a disputed order by the ruling its ERC-792 arbitrator gave through {IArbitrable.rule}.
    ///         Anyone may call; a recorded ruling is executed even after the arbitration deadline (it wins over
    ///         a timeout refund that was not executed first).
    /// @param orderId the order id
    /// @param terms the order's terms
    /// @param state the order's current packed state
    function executeRuling(bytes32 orderId, Terms calldata terms, uint256 state) external;

    /// @notice The seller gives the order up: full refund to the buyer.
    /// @param orderId the order id
    /// @param terms the order's terms
    /// @param state the order's current packed state
    function refundBySeller(bytes32 orderId, Terms calldata terms, uint256 state) external;

    /// @notice Refund the buyer after a missed deadline (ship-by, deliver-by, dispute response, arbitration).
    /// @param orderId the order id
    /// @param terms the order's terms
    /// @param state the order's current packed state
    function timeoutRefund(bytes32 orderId, Terms calldata terms, uint256 state) external;

    /// @notice A regulator freezes an order for `duration` seconds (at most 30 days in total per order).
    /// @param orderId the order id
    /// @param terms the order's terms
    /// @param state the order's current packed state
    /// @param duration seconds from now
    /// @param reasonHash hash of the published reason (non-zero)
    function freeze(bytes32 orderId, Terms calldata terms, uint256 state, uint32 duration, bytes32 reasonHash)
        external;

    /// @notice A regulator lifts a freeze early.
    /// @param orderId the order id
    /// @param terms the order's terms
    /// @param state the order's current packed state
    function unfreeze(bytes32 orderId, Terms calldata terms, uint256 state) external;

    /// @notice Pay out the caller's credit in `token` to `to` (not zero, not the escrow itself).
    /// @param token the settlement token
    /// @param to the receiving address
    /// @param amount base units to pay (at most the credit)
    function withdraw(address token, address to, uint256 amount) external;

    // ------------------------------------------------------------------ admin (DEFAULT_ADMIN_ROLE)

    /// @notice Register an oracle; it counts for orders funded from `now + ROLE_DELAY` on.
    /// @param oracle the oracle's signing address
    function addOracle(address oracle) external;

    /// @notice Remove an oracle; its attestations stop counting at once, for open orders too (a removal can
    ///         only delay an order towards its timeout refund, never move money to anyone).
    /// @param oracle the oracle's signing address
    function removeOracle(address oracle) external;

    /// @notice Set the oracle threshold k for new orders (1 ≤ k ≤ active oracles); open orders keep theirs.
    /// @param threshold k
    function setThreshold(uint8 threshold) external;

    /// @notice Appoint an arbitrator (a platform arbitrator's address, or an ERC-792 arbitrator contract); it
    ///         counts only for orders funded from `now + ROLE_DELAY` on.
    /// @param arbitrator the arbitrator
    function addArbitrator(address arbitrator) external;

    /// @notice Remove an arbitrator at once: a platform arbitrator stops ruling; orders already funded with an
    ///         ERC-792 arbitrator keep it (it is part of their signed terms).
    /// @param arbitrator the arbitrator
    function removeArbitrator(address arbitrator) external;

    /// @notice Allow or disallow a settlement token for new orders (open orders are never affected).
    /// @param token the token
    /// @param allowed whether new orders may use it
    function setToken(address token, bool allowed) external;

    /// @notice Register a corridor's tax recipient with its highest rate, or remove it with 0 (new orders only).
    /// @param recipient the tax collection account
    /// @param maxTaxBps the highest tax rate a buyer may sign for it
    function setTaxRecipient(address recipient, uint16 maxTaxBps) external;

    /// @notice Set the platform commission for new orders (at most 3000 bps).
    /// @param commissionBps the commission
    function setCommission(uint16 commissionBps) external;

    /// @notice Set the dispute windows for new orders.
    /// @param responseSeconds seller's response window (1 hour to 90 days)
    /// @param arbitrationSeconds arbitration deadline (longer than the response window, at most 180 days)
    function setDisputeWindows(uint32 responseSeconds, uint32 arbitrationSeconds) external;

    /// @notice Publish new ERC-1497 meta-evidence for orders funded from now on.
    /// @param uri the meta-evidence document's URI
    function setMetaEvidence(string calldata uri) external;

    /// @notice Stop new orders. Funded orders keep every exit.
    function pause() external;

    /// @notice Accept new orders again.
    function unpause() external;

    // ------------------------------------------------------------------ views

    /// @notice The storage key of an order: its id made unique per buyer. Funding an order id first with
    ///         another buyer creates another order under another key, so it cannot block the buyer's own.
    /// @param orderId the order id
    /// @param buyer the order's buyer
    /// @return key keccak256(abi.encode(orderId, buyer))
    function orderKey(bytes32 orderId, address buyer) external pure returns (bytes32 key);

    /// @notice The commitment stored for an order.
    /// @param orderId the order id
    /// @param buyer the order's buyer
    /// @return commitment keccak256(abi.encode(terms, state)), zero if unknown
    function commitmentOf(bytes32 orderId, address buyer) external view returns (bytes32 commitment);

    /// @notice Unpaid credit of `account` in `token`.
    /// @param token the token
    /// @param account the account
    /// @return amount base units
    function creditOf(address token, address account) external view returns (uint256 amount);

    /// @notice The platform settings applied to new orders.
    /// @return settings the packed settings
    function config() external view returns (Config memory settings);

    /// @notice The treasury receiving commission (fixed at deployment).
    /// @return account the treasury
    function treasury() external view returns (address account);

    /// @notice Whether new orders are paused.
    /// @return isPaused true while paused
    function paused() external view returns (bool isPaused);

    /// @notice An oracle's registry entry.
    /// @param oracle the oracle
    /// @return info its index, whether active, and from when it counts
    function oracleInfo(address oracle) external view returns (OracleInfo memory info);

    /// @notice The oracle registered under `index`.
    /// @param index the bit index
    /// @return oracle its address
    function oracleAt(uint256 index) external view returns (address oracle);

    /// @notice From when an arbitrator counts: for orders funded at or after this time (0 if none).
    /// @param arbitrator the arbitrator
    /// @return activeFrom unix time
    function arbitratorActiveFrom(address arbitrator) external view returns (uint64 activeFrom);

    /// @notice Whether a token may fund new orders.
    /// @param token the token
    /// @return allowed true if allowlisted
    function isTokenAllowed(address token) external view returns (bool allowed);

    /// @notice A tax recipient's highest rate (0 if not registered).
    /// @param recipient the tax recipient
    /// @return maxTaxBps its cap
    function taxCap(address recipient) external view returns (uint16 maxTaxBps);

    /// @notice Bitmap of oracle indices whose attestation of `milestone` is recorded but below threshold.
    /// @param key the order's {orderKey}
    /// @param milestone 1 shipped, 2 delivered
    /// @return bits the bitmap
    function partialAttestations(bytes32 key, uint8 milestone) external view returns (uint256 bits);

    /// @notice Whether a signed EvidenceSubmission was used for an order.
    /// @param key the order's {orderKey}
    /// @param digest the EIP-712 digest of the EvidenceSubmission
    /// @return used true once relayed
    function isDigestUsed(bytes32 key, bytes32 digest) external view returns (bool used);

    /// @notice The order an ERC-792 dispute belongs to, and its ruling.
    /// @param arbitrator the arbitrator
    /// @param disputeID the arbitrator's dispute id
    /// @return key the order's {orderKey} (zero if unknown)
    /// @return ruling the ruling plus one (0 while not ruled)
    function disputeOf(address arbitrator, uint256 disputeID) external view returns (bytes32 key, uint256 ruling);
}
