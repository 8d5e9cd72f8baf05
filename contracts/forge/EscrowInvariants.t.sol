// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IArbitrable} from "../src/interfaces/IArbitrable.sol";
import {ITradeGuardEscrow} from "../src/interfaces/ITradeGuardEscrow.sol";
import {BlacklistToken} from "../test/BlacklistToken.sol";
import {CentralizedArbitrator} from "../test/CentralizedArbitrator.sol";
import {EscrowTestBase, Vm} from "./EscrowTestBase.sol";

/// @title Stateful handler for the escrow invariant campaign
/// @notice Drives every escrow action over many orders with bounded, boundary-aware random inputs, and keeps its
///         own model of each order (terms, packed state, partial attestations), of the oracle registry, of every
///         credit and of every payout. Each action predicts from the model whether the contract must accept the
///         call, makes the call, and records a violation when the contract disagrees (so a wrongly accepted or a
///         wrongly refused call is caught although the campaign runs with `fail_on_revert = false`). After every
///         state change the stored commitment is compared with the modelled terms and state.
/// @dev Ghost variables: open amounts per token, credits per (token, recipient), payout legs per order (observed
///      from credit deltas and events, never from the model), and success counters per action.
contract EscrowHandler is EscrowTestBase {
    /// @notice An address the handler did not create as a buyer or seller.
    error UnknownParty(address account);
    /// @notice The escrow still holds `amount` of `token` after every order was closed and every credit paid.
    error EscrowNotDrained(address token, uint256 amount);

    // ------------------------------------------------------------------------- success counters

    uint256 internal constant FUND_DIRECT = 0;
    uint256 internal constant FUND_SIGNED = 1;
    uint256 internal constant FUND_BATCH = 2;
    uint256 internal constant FUND_K2 = 3;
    uint256 internal constant ATTEST_PARTIAL = 4;
    uint256 internal constant ATTEST_SHIPPED = 5;
    uint256 internal constant ATTEST_DELIVERED = 6;
    uint256 internal constant REMOVED_ORACLE_IGNORED = 7;
    uint256 internal constant RELEASED_BY_RELEASE = 8;
    uint256 internal constant RELEASE_BATCH = 9;
    uint256 internal constant CONFIRM = 10;
    uint256 internal constant CONFIRM_SIGNED = 11;
    uint256 internal constant DISPUTE = 12;
    uint256 internal constant DISPUTE_SIGNED = 13;
    uint256 internal constant EVIDENCE_BUYER = 14;
    uint256 internal constant EVIDENCE_SELLER = 15;
    uint256 internal constant EVIDENCE_SIGNED = 16;
    uint256 internal constant SELLER_RESPONDED = 17;
    uint256 internal constant RULE_FULL_REFUND = 18;
    uint256 internal constant RULE_FULL_RELEASE = 19;
    uint256 internal constant RULE_SPLIT = 20;
    uint256 internal constant RULE_SIGNED = 21;
    uint256 internal constant REFUND_BY_SELLER = 22;
    uint256 internal constant TIMEOUT_SHIP = 23;
    uint256 internal constant TIMEOUT_DELIVERY = 24;
    uint256 internal constant TIMEOUT_RESPONSE = 25;
    uint256 internal constant TIMEOUT_ARBITRATION = 26;
    uint256 internal constant FREEZE = 27;
    uint256 internal constant UNFREEZE = 28;
    uint256 internal constant WITHDRAW_FULL = 29;
    uint256 internal constant WITHDRAW_LEAVE_ONE = 30;
    uint256 internal constant WITHDRAW_PARTIAL = 31;
    uint256 internal constant ORACLE_REMOVED = 32;
    uint256 internal constant ORACLE_ADDED = 33;
    uint256 internal constant BLACKLIST_SET = 34;
    uint256 internal constant WARP_BOUNDARY = 35;
    uint256 internal constant WARP = 36;
    uint256 internal constant EXPECTED_REVERT = 37;
    uint256 internal constant REPLAY_BLOCKED = 38;
    uint256 internal constant THRESHOLD_SET = 39;
    uint256 internal constant DRAIN_EXIT = 40;
    uint256 internal constant DISPUTE_ERC792 = 41;
    uint256 internal constant COURT_RULED = 42;
    uint256 internal constant RULING_EXECUTED = 43;
    uint256 internal constant FOREIGN_RULE_REFUSED = 44;
    uint256 internal constant N_COUNTERS = 45;

    uint256 internal constant MAX_FREEZE = 30 days;
    uint256 internal constant FAUCET_LIMIT = 1_000_000 * 10 ** 6;

    /// @notice Successful calls per action (see the constants above).
    uint256[N_COUNTERS] public okCount;
    /// @notice Handler calls so far in this run.
    uint256 public calls;
    /// @notice Disagreements between the model and the contract; must stay 0.
    uint256 public violations;
    /// @notice The first disagreement, for the failure message.
    string public firstViolation;

    // ------------------------------------------------------------------------------- the model

    /// @dev An order as the handler knows it, plus the payout legs observed when it ended.
    struct Ord {
        bytes32 id;
        ITradeGuardEscrow.Terms t;
        uint256 s;
        uint256 partialShip;
        uint256 partialDeliver;
        uint16 ruleBps;
        /// @dev ERC-792 orders: the arbitrator's dispute id, and its ruling plus one once given (0 before)
        uint256 disputeId;
        uint256 courtRuled;
        uint256 paidBuyer;
        uint256 paidCommission;
        uint256 paidTax;
        uint256 paidSeller;
    }

    /// @dev The oracle registry as the handler knows it.
    struct OracleM {
        uint8 index;
        bool active;
        uint64 activeFrom;
    }

    Ord[] internal _ords;
    uint256[] internal _open;
    mapping(uint256 index => uint256 posPlusOne) internal _openPos;
    mapping(bytes32 orderId => uint256 indexPlusOne) internal _idxOf;

    mapping(address oracle => OracleM) internal _orc;
    uint256 internal _oracleCount;
    uint256 internal _activeOracles;
    uint256 internal _pendingOracles;
    uint256 internal _pendingUntil;
    uint8 internal _threshold = 1;
    uint16 internal _commission = COMMISSION;
    mapping(address recipient => uint16 cap) internal _taxCap;
    mapping(bytes32 digest => bool) internal _usedDigest;

    /// @notice Second settlement token, whose owner (this handler) can blacklist recipients.
    BlacklistToken public blt;
    address[2] internal _tokens;
    address[4] internal _buyers;
    uint256[4] internal _buyerPks;
    address[4] internal _sellers;
    uint256[4] internal _sellerPks;
    uint256[6] internal _poolPk;
    address[6] internal _pool;
    address[] internal _accounts;
    address[3] internal _cold;
    mapping(address account => bool) public blacklisted;

    /// @notice Ghost: modelled unpaid credit per token and recipient.
    mapping(address token => mapping(address account => uint256)) public ghostCredit;
    /// @notice Ghost: sum of modelled unpaid credits per token.
    mapping(address token => uint256) public ghostCreditSum;
    /// @notice Ghost: sum of the amounts of non-final orders per token.
    mapping(address token => uint256) public ghostOpen;
    /// @notice The handler's clock (re-applied at every call, so time never depends on the fuzzer).
    uint256 public now_;
    uint256 internal _nonce;

    constructor() {
        _deployFixture();
        blt = new BlacklistToken();
        vm.prank(admin);
        escrow.setToken(address(blt), true);
        _tokens = [address(usd), address(blt)];
        for (uint256 i; i < 4; ++i) {
            _buyerPks[i] = 0xB0B1 + i;
            _buyers[i] = vm.addr(_buyerPks[i]);
            _sellerPks[i] = 0x5E11 + i;
            _sellers[i] = vm.addr(_sellerPks[i]);
            vm.prank(_buyers[i]);
            usd.approve(address(escrow), type(uint256).max);
            vm.prank(_buyers[i]);
            blt.approve(address(escrow), type(uint256).max);
            _accounts.push(_buyers[i]);
            _accounts.push(_sellers[i]);
            _cold[i % 3] = address(uint160(0xC01D0000 + i));
        }
        _accounts.push(treasury);
        _accounts.push(tax1);
        _accounts.push(tax2);
        for (uint256 i; i < 6; ++i) {
            _poolPk[i] = 0x0A01 + i;
            _pool[i] = vm.addr(_poolPk[i]);
        }
        for (uint256 i; i < 3; ++i) {
            _orc[_pool[i]] = OracleM({index: uint8(i), active: true, activeFrom: uint64(T0 + ROLE_DELAY)});
        }
        (_oracleCount, _activeOracles, _pendingOracles, _pendingUntil) = (3, 3, 3, T0 + ROLE_DELAY);
        _taxCap[tax1] = 5000;
        _taxCap[tax2] = 1200;
        now_ = block.timestamp;
    }

    modifier step() {
        vm.warp(now_);
        ++calls;
        _;
    }

    // =============================================================================== funding

    /// @notice Fund 1..3 orders: by the buyer directly or relayed with OrderAuthorization signatures, with
    ///         boundary amounts, commission, tax and schedules; sometimes with k = 2 or 3 set first, sometimes
    ///         with one deliberately invalid field.
    function fund(uint256 seed, uint256 amountSeed, uint256 schedSeed) external step {
        (seed, amountSeed, schedSeed) = (_mix(seed, 1), _mix(amountSeed, 2), _mix(schedSeed, 3));
        uint256 k = (seed >> 16) % 10; // k = 1 (40%), 2 (40%), 3 (10%), unchanged (10%)
        k = k < 4 ? 1 : k < 8 ? 2 : k < 9 ? 3 : 0;
        if (k != 0 && k != _threshold) _setThreshold(uint8(k));
        if ((seed >> 20) % 8 == 0) _setCommission((seed >> 23) % 6);

        uint256 sel = (seed >> 4) % 8;
        uint256 n = sel < 6 ? 1 : sel - 4;
        uint256 mode = (seed >> 8) % 4; // 0 buyer calls; 1, 3 relayer; 2 buyer calls with others' orders
        address caller = (mode == 0 || mode == 2) ? _buyers[(seed >> 28) % 4] : stranger;
        ITradeGuardEscrow.OrderAuthorization[] memory auths = new ITradeGuardEscrow.OrderAuthorization[](n);
        bytes[] memory sigs = new bytes[](n);
        bool valid = _threshold <= _usableOracles();
        uint256 inject = (seed >> 40) % 16 == 0 ? 1 + (seed >> 44) % 11 : 0;
        for (uint256 j; j < n; ++j) {
            address b = (mode == 0 || (mode == 2 && j == 0)) ? caller : _buyers[(seed >> (48 + 2 * j)) % 4];
            auths[j] = _genAuth(b, uint256(keccak256(abi.encode(amountSeed, j))), schedSeed >> (16 * j), seed >> (56 + j));
            if (j == 0 && inject != 0) _inject(auths[j], inject);
            bool sigOk = true;
            if (caller != b) {
                uint256 pk = _buyerPks[_buyerIndex(b)];
                if (j == 0 && inject == 7) (pk, sigOk) = (_sellerPks[0], false);
                sigs[j] = _sign(pk, _authHash(auths[j]));
            }
            valid = valid && sigOk && _authValid(auths[j]);
            if (auths[j].token == address(blt) && blacklisted[b]) valid = false;
            _mintFor(auths[j]);
        }
        ITradeGuardEscrow.Permit memory permit;
        if (mode == 3 && auths[0].token == address(usd)) permit = _permit(auths[0].buyer);
        (bool ok, bytes memory ret) =
            _call(caller, abi.encodeCall(ITradeGuardEscrow.fund, (auths, sigs, permit)));
        if (!_expect(valid, ok, ret, "fund")) return;
        for (uint256 j; j < n; ++j) {
            _record(auths[j]);
        }
        ++okCount[caller == stranger ? FUND_SIGNED : FUND_DIRECT];
        if (n > 1) ++okCount[FUND_BATCH];
        if (_threshold > 1) ++okCount[FUND_K2];
    }

    function _genAuth(address b, uint256 r, uint256 sched, uint256 tokenBit)
        internal
        returns (ITradeGuardEscrow.OrderAuthorization memory a)
    {
        address token = _tokens[tokenBit & 1];
        address sel = _sellers[(r >> 200) % 4];
        a.orderId = _orderId(sel, string.concat("PO-", _str(++_nonce)));
        a.buyer = b;
        a.seller = sel;
        a.token = token;
        a.amount = _genAmount(r, token);
        a.commissionBps = _commission;
        uint256 tc = (r >> 64) % 6;
        if (tc == 1) (a.taxRecipient, a.taxBps) = (tax1, 1);
        else if (tc == 2) (a.taxRecipient, a.taxBps) = (tax1, 5000);
        else if (tc == 3) (a.taxRecipient, a.taxBps) = (tax2, 1200);
        else if (tc == 4) (a.taxRecipient, a.taxBps) = (tax1, uint16(1 + (r >> 72) % 5000));
        else if (tc == 5) (a.taxRecipient, a.taxBps) = (tax2, uint16(1 + (r >> 72) % 1200));
        uint256 c = sched % 8;
        uint256 shipIn = c == 0 ? 1 : c == 1 ? 1 hours : c < 5 ? 2 days + (sched >> 8) % 5 days : 1 + (sched >> 8) % 30 days;
        c = (sched >> 3) % 8;
        uint256 deliverIn = c == 0 ? 1 : c == 1 ? 1 days : c < 5 ? 5 days + (sched >> 40) % 10 days : 1 + (sched >> 40) % 60 days;
        c = (sched >> 6) % 8;
        uint256 hold = c == 0 ? 1 hours : c < 4 ? 3 days : c < 7 ? 1 hours + (sched >> 80) % 10 days : 90 days;
        a.shipBy = uint64(now_ + shipIn);
        a.deliverBy = uint64(now_ + shipIn + deliverIn);
        a.holdSeconds = uint32(hold);
        a.validUntil = uint64(now_ + ((sched >> 9) % 2 == 0 ? 0 : 1 hours));
        if ((r >> 100) % 4 == 0) (a.arbitrator, a.arbitratorExtraDataHash) = (address(court), keccak256(COURT_EXTRA));
    }

    function _genAmount(uint256 r, address token) internal view returns (uint256) {
        uint256 c = r % 10;
        uint256 x = r >> 8;
        if (c == 0) return 1;
        if (c == 1) return 9999;
        if (c == 2) return 10_000;
        if (c == 3) return 10_001;
        if (c == 4) return 1 + x % 1_000_000;
        if (c == 5) return 1 + x % FAUCET_LIMIT;
        if (c == 6) return token == address(blt) ? type(uint128).max - x % 1000 : FAUCET_LIMIT;
        if (c == 7) return 10_000 * (1 + x % 1000);
        if (c == 8) return 1 + x % 1_000_000_000;
        return 3;
    }

    /// @dev One deliberately invalid field (the model judges validity from the fields, not from this code).
    function _inject(ITradeGuardEscrow.OrderAuthorization memory a, uint256 kind) internal view {
        if (kind == 1) a.validUntil = uint64(now_ - 1);
        else if (kind == 2) a.commissionBps = _commission == 3000 ? 2999 : _commission + 1;
        else if (kind == 3) (a.taxRecipient, a.taxBps) = (tax2, 1201);
        else if (kind == 4) a.shipBy = uint64(now_);
        else if (kind == 5) a.holdSeconds = 1 hours - 1;
        else if (kind == 6) a.deliverBy = a.shipBy;
        else if (kind == 8) a.amount = 0;
        else if (kind == 9) (a.taxRecipient, a.taxBps) = (tax1, 0);
        else if (kind == 10) a.deliverBy = uint64(now_ + 365 days + 1);
        else if (kind == 11) a.holdSeconds = 90 days + 1;
    }

    function _authValid(ITradeGuardEscrow.OrderAuthorization memory a) internal view returns (bool) {
        bool taxOk = a.taxBps == 0 ? a.taxRecipient == address(0) : a.taxBps <= _taxCap[a.taxRecipient];
        return a.validUntil >= now_ && a.amount != 0 && a.amount <= type(uint128).max
            && a.commissionBps == _commission && taxOk && a.shipBy > now_ && a.deliverBy > a.shipBy
            && a.deliverBy <= now_ + 365 days && a.holdSeconds >= 1 hours && a.holdSeconds <= 90 days;
    }

    function _mintFor(ITradeGuardEscrow.OrderAuthorization memory a) internal {
        if (a.amount == 0) return;
        if (a.token == address(usd)) {
            if (a.amount <= FAUCET_LIMIT) usd.faucet(a.buyer, a.amount);
        } else if (!blacklisted[a.buyer]) {
            blt.mint(a.buyer, a.amount);
        }
    }

    /// @dev An EIP-2612 permit from `owner` for the escrow (the allowance is already there: the escrow must
    ///      accept a permit that changes nothing, and its failure must not matter).
    function _permit(address owner) internal view returns (ITradeGuardEscrow.Permit memory p) {
        uint256 deadline = now_ + 1 hours;
        bytes32 structHash = keccak256(
            abi.encode(
                keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"),
                owner,
                address(escrow),
                type(uint256).max,
                usd.nonces(owner),
                deadline
            )
        );
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(
            _buyerPks[_buyerIndex(owner)], keccak256(abi.encodePacked("\x19\x01", usd.DOMAIN_SEPARATOR(), structHash))
        );
        p = ITradeGuardEscrow.Permit({value: type(uint256).max, deadline: deadline, v: v, r: r, s: s});
    }

    function _record(ITradeGuardEscrow.OrderAuthorization memory a) internal {
        Ord storage o = _ords.push();
        o.id = a.orderId;
        o.t = ITradeGuardEscrow.Terms({
            buyer: a.buyer,
            seller: a.seller,
            token: a.token,
            amount: a.amount,
            commissionBps: a.commissionBps,
            taxBps: a.taxBps,
            taxRecipient: a.taxRecipient,
            shipBy: a.shipBy,
            deliverBy: a.deliverBy,
            holdSeconds: a.holdSeconds,
            threshold: _threshold,
            responseSeconds: RESPONSE,
            arbitrationSeconds: ARBITRATION,
            fundedAt: uint64(now_),
            arbitrator: a.arbitrator,
            arbitratorExtraDataHash: a.arbitratorExtraDataHash,
            metaEvidenceId: escrow.config().metaEvidenceId
        });
        o.s = _fundedState(a.buyer);
        uint256 i = _ords.length - 1;
        _idxOf[a.orderId] = i + 1;
        _open.push(i);
        _openPos[i] = _open.length;
        ghostOpen[a.token] += a.amount;
        _checkCommit(i);
    }

    /// @dev Oracles the escrow counts as usable for an order funded now: while an added oracle may still be
    ///      pending, every oracle added in that period is left out (conservative). Zero when the escrow's own
    ///      subtraction would underflow (it then refuses funding too).
    function _usableOracles() internal view returns (uint256) {
        if (now_ >= _pendingUntil) return _activeOracles;
        return _pendingOracles > _activeOracles ? 0 : _activeOracles - _pendingOracles;
    }

    function _setThreshold(uint8 k) internal {
        (bool ok, bytes memory ret) = _call(admin, abi.encodeCall(escrow.setThreshold, (k)));
        if (_expect(k >= 1 && k <= _activeOracles, ok, ret, "setThreshold")) {
            _threshold = k;
            ++okCount[THRESHOLD_SET];
        }
    }

    function _setCommission(uint256 c) internal {
        uint16[6] memory choices = [uint16(0), 1, 250, 2999, 3000, 3001];
        uint16 bps = choices[c];
        (bool ok, bytes memory ret) = _call(admin, abi.encodeCall(escrow.setCommission, (bps)));
        if (_expect(bps <= 3000, ok, ret, "setCommission")) _commission = bps;
    }

    // ========================================================================== attestations

    /// @notice Attest SHIPPED or DELIVERED with 1..3 oracles (signed and relayed, or one oracle calling itself),
    ///         sometimes as a non-strict batch of two items, sometimes with a non-oracle, a removed oracle, a
    ///         duplicate, a future event time, a wrong milestone or stale state.
    function attest(uint256 orderSeed, uint256 oracleSeed, uint256 flags) external step {
        (orderSeed, oracleSeed, flags) = (_mix(orderSeed, 1), _mix(oracleSeed, 2), _mix(flags, 3));
        _attestAction(orderSeed, oracleSeed, flags, false);
    }

    /// @notice As {attest}, but always the DELIVERED milestone (a funded order may skip SHIPPED).
    function attestDelivery(uint256 orderSeed, uint256 oracleSeed, uint256 flags) external step {
        (orderSeed, oracleSeed, flags) = (_mix(orderSeed, 1), _mix(oracleSeed, 2), _mix(flags, 3));
        _attestAction(orderSeed, oracleSeed, flags, true);
    }

    function _attestAction(uint256 orderSeed, uint256 oracleSeed, uint256 flags, bool delivery) internal {
        if (_ords.length == 0) return;
        uint256 nItems = (flags >> 5) % 4 == 0 ? 2 : 1;
        ITradeGuardEscrow.AttestItem[] memory items = new ITradeGuardEscrow.AttestItem[](nItems);
        uint256[] memory idx = new uint256[](nItems);
        address[][] memory signers = new address[][](nItems);
        bool direct = (flags >> 3) & 1 == 1 && nItems == 1;
        for (uint256 k; k < nItems; ++k) {
            idx[k] = _pickOpen(orderSeed >> (32 * k), (1 << FUNDED) | (1 << SHIPPED), 4);
            (items[k], signers[k]) = _buildAttest(idx[k], oracleSeed >> (64 * k), flags >> (8 * k), direct, delivery);
        }
        bool strict = nItems == 1;
        address caller = direct ? signers[0][0] : stranger;
        (bool ok, bytes memory ret) = _call(caller, abi.encodeCall(ITradeGuardEscrow.attest, (items, strict)));
        if (!ok) {
            (bool pOk,,) = _simAttest(idx[0], items[0].order.state, items[0].attestations, signers[0]);
            _expect(strict ? pOk : true, ok, ret, "attest");
            return;
        }
        uint256 advanced;
        for (uint256 k; k < nItems; ++k) {
            (bool pOk, bool adv, uint256 bits) =
                _simAttest(idx[k], items[k].order.state, items[k].attestations, signers[k]);
            if (strict && !pOk) {
                (uint256 why,,) = _whyAttest(idx[k], items[k].order.state, items[k].attestations, signers[k]);
                _violate(string.concat("attest: accepted an item the model refuses, reason ", _str(why), ", threshold ", _str(_ords[idx[k]].t.threshold), ", signers ", _str(signers[k].length)), ret);
                return;
            }
            if (!pOk) continue;
            _applyAttest(idx[k], items[k].attestations[0].milestone, adv, bits);
            if (adv) ++advanced;
        }
        uint256 got = abi.decode(ret, (uint256));
        if (got != advanced) _violate("attest: advanced count", ret);
        for (uint256 k; k < nItems; ++k) {
            _checkCommit(idx[k]);
            _checkPartial(idx[k]);
        }
    }

    function _buildAttest(uint256 i, uint256 oSeed, uint256 flags, bool direct, bool delivery)
        internal
        view
        returns (ITradeGuardEscrow.AttestItem memory item, address[] memory signers)
    {
        Ord storage o = _ords[i];
        uint8 st = _status(o.s);
        uint8 milestone = st == SHIPPED || delivery ? 2 : (flags % 4 == 3 ? 2 : 1);
        if ((flags >> 8) % 16 == 0) milestone = st == SHIPPED ? 1 : 3; // wrong milestone
        uint256 n = 1 + (flags >> 2) % 3;
        signers = new address[](n);
        item.attestations = new ITradeGuardEscrow.Attestation[](n);
        uint256 used; // bitmap over the pool
        for (uint256 k; k < n; ++k) {
            uint256 r = oSeed >> (8 * k);
            uint256 pick = _pickOracle(i, milestone, r, used);
            used |= 1 << pick;
            signers[k] = pick == 6 ? stranger : _pool[pick];
            uint64 eventTime = uint64(now_ - (r >> 4) % 1 days);
            if ((flags >> 12) % 16 == 0 && k == 0) eventTime = uint64(now_ + 1);
            bytes32 tracking = keccak256(abi.encode("UPS:1Z", i));
            bytes32 ev = keccak256(abi.encode(o.id, milestone, r));
            item.attestations[k] = ITradeGuardEscrow.Attestation({
                milestone: milestone,
                eventTime: eventTime,
                trackingHash: tracking,
                evidenceHash: ev,
                signature: (direct && k == 0)
                    ? bytes("")
                    : _sign(pick == 6 ? STRANGER_PK : _poolPk[pick], _attHash(o.id, milestone, eventTime, tracking, ev))
            });
        }
        item.order = ITradeGuardEscrow.OrderRef({orderId: o.id, terms: o.t, state: _maybeStale(o.s, flags >> 16)});
    }

    /// @dev Mostly an oracle that can still count for this order and has not attested yet; sometimes anyone in
    ///      the pool (removed, too new, duplicate) or a stranger (index 6).
    function _pickOracle(uint256 i, uint8 milestone, uint256 r, uint256 used) internal view returns (uint256) {
        Ord storage o = _ords[i];
        if (r % 8 == 7) return 6;
        uint256 start = (r >> 3) % 6;
        if (r % 8 >= 2) {
            uint256 bits = milestone == 2 ? o.partialDeliver : o.partialShip;
            for (uint256 k; k < 6; ++k) {
                uint256 p = (start + k) % 6;
                OracleM memory m = _orc[_pool[p]];
                if (used & (1 << p) != 0 || !m.active || m.activeFrom > o.t.fundedAt) continue;
                if (o.t.threshold > 1 && bits & (1 << m.index) != 0) continue;
                return p;
            }
        }
        return start;
    }

    /// @dev The model of one attestation item: accepted?, advanced?, and the new partial bitmap.
    function _simAttest(
        uint256 i,
        uint256 passedState,
        ITradeGuardEscrow.Attestation[] memory atts,
        address[] memory signers
    ) internal view returns (bool ok, bool advance, uint256 bits) {
        uint256 why;
        (why, advance, bits) = _whyAttest(i, passedState, atts, signers);
        ok = why == 0;
    }

    /// @dev 0 when the model accepts the item, else the first reason it refuses (for violation reports).
    function _whyAttest(
        uint256 i,
        uint256 passedState,
        ITradeGuardEscrow.Attestation[] memory atts,
        address[] memory signers
    ) internal view returns (uint256 why, bool advance, uint256 bits) {
        Ord storage o = _ords[i];
        if (passedState != o.s) return (1, false, 0);
        uint8 st = _status(o.s);
        uint8 m = atts[0].milestone;
        uint256 deadline;
        if (m != 1 && m != 2) return (2, false, 0);
        if (st == FUNDED) deadline = o.t.shipBy;
        else if (st == SHIPPED && m == 2) deadline = o.t.deliverBy;
        else return (3, false, 0);
        if (now_ < _frozenUntil(o.s)) return (5, false, 0); // a freeze stops attestations too
        if (now_ > deadline + _frozenSeconds(o.s)) return (4, false, 0);
        bits = o.t.threshold > 1 ? (m == 1 ? o.partialShip : o.partialDeliver) : 0;
        uint256 count = _counting(bits, o.t.fundedAt);
        for (uint256 k; k < atts.length; ++k) {
            if (atts[k].milestone != m || atts[k].eventTime > now_) return (10 + k, false, 0);
            OracleM memory om = _orc[signers[k]];
            if (!om.active || om.activeFrom > o.t.fundedAt) return (20 + k, false, 0);
            if (bits & (1 << om.index) != 0) return (30 + k, false, 0);
            bits |= 1 << om.index;
            ++count;
        }
        advance = count >= o.t.threshold;
    }

    /// @dev Oracles in `bits` that still count for an order funded at `fundedAt` (removed ones do not).
    function _counting(uint256 bits, uint64 fundedAt) internal view returns (uint256 count) {
        for (uint256 p; p < 6; ++p) {
            OracleM memory m = _orc[_pool[p]];
            if (m.active && bits & (1 << m.index) != 0 && m.activeFrom <= fundedAt) ++count;
        }
    }

    function _popcount(uint256 x) internal pure returns (uint256 c) {
        for (; x != 0; x &= x - 1) {
            ++c;
        }
    }

    function _applyAttest(uint256 i, uint8 m, bool adv, uint256 bits) internal {
        Ord storage o = _ords[i];
        uint256 before = m == 1 ? o.partialShip : o.partialDeliver;
        if (o.t.threshold > 1 && _counting(before, o.t.fundedAt) < _popcount(before)) {
            ++okCount[REMOVED_ORACLE_IGNORED];
        }
        if (!adv) {
            if (m == 1) o.partialShip = bits;
            else o.partialDeliver = bits;
            ++okCount[ATTEST_PARTIAL];
            return;
        }
        if (o.t.threshold > 1) {
            if (m == 1) o.partialShip = 0;
            else o.partialDeliver = 0;
        }
        if (m == 1) {
            o.s = _withStatus(o.s, SHIPPED);
            ++okCount[ATTEST_SHIPPED];
        } else {
            uint256 releaseAt = _timerStart(o.s, now_) + o.t.holdSeconds;
            o.s = _withAnchor(_withStatus(o.s, DELIVERED), releaseAt - _frozenSeconds(o.s));
            ++okCount[ATTEST_DELIVERED];
        }
    }

    function _checkPartial(uint256 i) internal {
        Ord storage o = _ords[i];
        if (escrow.partialAttestations(_key(o.id, o.t.buyer), 1) != o.partialShip) _violate("partial SHIPPED bits", "");
        if (escrow.partialAttestations(_key(o.id, o.t.buyer), 2) != o.partialDeliver) _violate("partial DELIVERED bits", "");
    }

    // ============================================================================== releases

    /// @notice Release 1..4 orders in one call (strict for a single order sometimes, else non-strict), mostly
    ///         delivered orders past their hold window, sometimes not yet due, frozen, duplicated or stale.
    function release(uint256 seed, uint256 flags) external step {
        (seed, flags) = (_mix(seed, 1), _mix(flags, 2));
        if (_ords.length == 0) return;
        uint256 n = 1 + flags % 4;
        ITradeGuardEscrow.OrderRef[] memory refs = new ITradeGuardEscrow.OrderRef[](n);
        uint256[] memory idx = new uint256[](n);
        for (uint256 k; k < n; ++k) {
            idx[k] = _pickOpen(seed >> (24 * k), 1 << DELIVERED, 1);
            // Mostly distinct orders (a duplicate entry must be skipped as stale: kept 1 time in 8).
            for (uint256 tries; tries < 4 && (flags >> (40 + 3 * k)) % 8 != 0 && _seen(idx, k); ++tries) {
                idx[k] = _pickOpen(uint256(keccak256(abi.encode(seed, k, tries))), 1 << DELIVERED, 1);
            }
            Ord storage o = _ords[idx[k]];
            refs[k] = ITradeGuardEscrow.OrderRef({orderId: o.id, terms: o.t, state: _maybeStale(o.s, flags >> (8 + 4 * k))});
        }
        bool strict = n == 1 && (flags >> 4) & 1 == 1;
        vm.recordLogs();
        vm.getRecordedLogs();
        (bool ok, bytes memory ret) = _call(_anyone(seed), abi.encodeCall(ITradeGuardEscrow.release, (refs, strict)));
        Vm.Log[] memory logs = vm.getRecordedLogs();
        if (!ok) {
            _expect(!(strict && !_releasable(idx[0], refs[0].state)), ok, ret, "release");
            return;
        }
        uint256 predicted;
        for (uint256 k; k < n; ++k) {
            if (!_releasable(idx[k], refs[k].state)) {
                if (strict) _violate("release: strict accepted a non-releasable order", ret);
                continue;
            }
            _finalize(idx[k], RELEASED, 0);
            ++predicted;
        }
        if (abi.decode(ret, (uint256)) != predicted) _violate("release: released count", ret);
        uint256 seen;
        for (uint256 k; k < logs.length; ++k) {
            if (logs[k].emitter != address(escrow) || logs[k].topics[0] != ITradeGuardEscrow.OrderReleased.selector) {
                continue;
            }
            ++seen;
            uint256 i = _idxOf[logs[k].topics[1]] - 1;
            (uint256 st, uint256 c, uint256 t, uint256 net) = abi.decode(logs[k].data, (uint256, uint256, uint256, uint256));
            Ord storage o = _ords[i];
            if (st != o.s) _violate("release: event state", "");
            (o.paidCommission, o.paidTax, o.paidSeller) = (c, t, net);
            _checkPayout(i);
        }
        if (seen != predicted) _violate("release: OrderReleased events", "");
        okCount[RELEASED_BY_RELEASE] += predicted;
        if (predicted >= 2) ++okCount[RELEASE_BATCH];
        for (uint256 k; k < n; ++k) {
            _checkCommit(idx[k]);
        }
        _checkCredits();
    }

    /// @dev Whether an attestation may still move order `i` (shipped or funded, not frozen, deadline ahead).
    function _attestable(uint256 i) internal view returns (bool) {
        Ord storage o = _ords[i];
        uint8 st = _status(o.s);
        uint256 deadline = st == FUNDED ? o.t.shipBy : st == SHIPPED ? o.t.deliverBy : 0;
        return now_ >= _frozenUntil(o.s) && now_ <= deadline + _frozenSeconds(o.s);
    }

    /// @dev Whether an arbitrator may rule on order `i` now.
    function _ruleable(uint256 i) internal view returns (bool) {
        Ord storage o = _ords[i];
        return _status(o.s) == DISPUTED && now_ >= _frozenUntil(o.s)
            && now_ <= _anchor(o.s) + _frozenSeconds(o.s) + o.t.arbitrationSeconds;
    }

    function _seen(uint256[] memory idx, uint256 k) internal pure returns (bool) {
        for (uint256 j; j < k; ++j) {
            if (idx[j] == idx[k]) return true;
        }
        return false;
    }

    function _releasable(uint256 i, uint256 passedState) internal view returns (bool) {
        uint256 s = _ords[i].s;
        return passedState == s && _status(s) == DELIVERED && now_ >= _frozenUntil(s)
            && now_ >= _anchor(s) + _frozenSeconds(s);
    }

    // ======================================================================= buyer decisions

    /// @notice The buyer confirms receipt, directly or by a relayed BuyerDecision signature (sometimes signed by
    ///         the wrong key, expired, sent by the seller, or on a frozen or unshipped order).
    function confirmReceipt(uint256 seed, uint256 flags) external step {
        (seed, flags) = (_mix(seed, 1), _mix(flags, 2));
        if (_ords.length == 0) return;
        uint256 i = _pickOpen(seed, (1 << SHIPPED) | (1 << DELIVERED), 0);
        Ord storage o = _ords[i];
        uint256 passS = _maybeStale(o.s, flags >> 16);
        bytes32 ev = (flags >> 24) % 2 == 0 ? bytes32(0) : keccak256(abi.encode("receipt", seed));
        bool wrongParty = (flags >> 1) % 8 == 0;
        bool signed = flags & 1 == 1;
        bytes memory data;
        address caller;
        bool authOk = !wrongParty;
        if (signed) {
            uint64 validUntil = _validUntil(flags >> 4);
            authOk = authOk && validUntil >= now_;
            bytes memory sig = _sign(
                wrongParty ? _sellerPks[_sellerIndex(o.t.seller)] : _buyerPks[_buyerIndex(o.t.buyer)],
                keccak256(abi.encode(BD_TYPEHASH, o.id, uint8(1), ev, validUntil))
            );
            data = abi.encodeCall(ITradeGuardEscrow.submitBuyerDecision, (o.id, o.t, passS, 1, ev, validUntil, sig, ""));
            caller = stranger;
        } else {
            data = abi.encodeCall(ITradeGuardEscrow.submitBuyerDecision, (o.id, o.t, passS, 1, ev, 0, "", ""));
            caller = wrongParty ? o.t.seller : o.t.buyer;
        }
        uint8 st = _status(o.s);
        bool expected = authOk && passS == o.s && (st == SHIPPED || st == DELIVERED) && now_ >= _frozenUntil(o.s);
        uint256[4] memory before = _snap(i);
        (bool ok, bytes memory ret) = _call(caller, data);
        if (!_expect(expected, ok, ret, signed ? "confirm (signed)" : "confirm")) return;
        _finalize(i, RELEASED, 0);
        _observe(i, before);
        ++okCount[signed ? CONFIRM_SIGNED : CONFIRM];
    }

    /// @notice The buyer opens a dispute, directly or by a relayed BuyerDecision, at any point of the order's
    ///         life (the model knows the windows: ship-by, deliver-by, strictly before releaseAt).
    function openDispute(uint256 seed, uint256 flags) external step {
        (seed, flags) = (_mix(seed, 1), _mix(flags, 2));
        if (_ords.length == 0) return;
        uint256 i = _pickOpen(seed, (1 << FUNDED) | (1 << SHIPPED) | (1 << DELIVERED), 5);
        Ord storage o = _ords[i];
        uint256 passS = _maybeStale(o.s, flags >> 16);
        bytes32 ev = (flags >> 24) % 2 == 0 ? bytes32(0) : sha256(abi.encode("why", seed));
        bool wrongParty = (flags >> 1) % 8 == 0;
        bool signed = flags & 1 == 1;
        bytes memory data;
        address caller;
        bool authOk = !wrongParty;
        if (signed) {
            uint64 validUntil = _validUntil(flags >> 4);
            authOk = authOk && validUntil >= now_;
            bytes memory sig = _sign(
                wrongParty ? STRANGER_PK : _buyerPks[_buyerIndex(o.t.buyer)],
                keccak256(abi.encode(BD_TYPEHASH, o.id, uint8(2), ev, validUntil))
            );
            data = abi.encodeCall(
                ITradeGuardEscrow.submitBuyerDecision, (o.id, o.t, passS, 2, ev, validUntil, sig, _extraFor(o, flags))
            );
            caller = o.t.seller; // anyone may relay
        } else {
            data = abi.encodeCall(
                ITradeGuardEscrow.submitBuyerDecision, (o.id, o.t, passS, 2, ev, 0, "", _extraFor(o, flags))
            );
            caller = wrongParty ? stranger : o.t.buyer;
        }
        // ERC-792 orders: the signed extraData and at least the arbitration cost (paid by the sender, all of it
        // to the arbitrator); platform orders take no native currency.
        bool erc792 = o.t.arbitrator != address(0);
        uint256 value = erc792 ? ((flags >> 31) % 8 == 0 ? COURT_FEE - 1 : COURT_FEE) : 0;
        bool expected = authOk && passS == o.s && _disputeOpen(o.t, o.s)
            && (!erc792 || (value == COURT_FEE && (flags >> 28) % 8 != 0));
        uint256 courtBalance = address(court).balance;
        vm.deal(caller, value);
        vm.prank(caller);
        (bool ok, bytes memory ret) = address(escrow).call{value: value}(data);
        if (!_expect(expected, ok, ret, signed ? "dispute (signed)" : "dispute")) return;
        if (address(escrow).balance != 0) _violate("escrow kept native currency", "");
        if (address(court).balance != courtBalance + value) _violate("arbitration fee not forwarded", "");
        if (erc792) {
            o.disputeId = court.disputeCount() - 1;
            (bytes32 key,) = escrow.disputeOf(address(court), o.disputeId);
            if (key != _key(o.id, o.t.buyer)) _violate("dispute not linked to the order", "");
            ++okCount[DISPUTE_ERC792];
        }
        uint256 ext = _frozenSeconds(o.s);
        o.s = _withAnchor(_withStatus(o.s, DISPUTED), _timerStart(o.s, now_) - ext);
        _checkCommit(i);
        ++okCount[signed ? DISPUTE_SIGNED : DISPUTE];
    }

    /// @dev The extraData a dispute opening passes: the signed one, or (sometimes, on ERC-792 orders) another.
    function _extraFor(Ord storage o, uint256 flags) internal view returns (bytes memory) {
        if (o.t.arbitrator == address(0)) return "";
        return (flags >> 28) % 8 == 0 ? bytes(hex"01") : COURT_EXTRA;
    }

    /// @dev Frozen seconds that have gone by (a running freeze's remainder excluded), as the escrow's
    ///      dispute and response-window checks count them.
    function _elapsedFrozen(uint256 s) internal view returns (uint256) {
        uint256 until = _frozenUntil(s);
        return now_ < until ? _frozenSeconds(s) - (until - now_) : _frozenSeconds(s);
    }

    function _disputeOpen(ITradeGuardEscrow.Terms storage t, uint256 s) internal view returns (bool) {
        uint8 st = _status(s);
        uint256 ext = _elapsedFrozen(s);
        if (st == FUNDED) return now_ <= t.shipBy + ext;
        if (st == SHIPPED) return now_ <= t.deliverBy + ext;
        if (st == DELIVERED) return now_ < _anchor(s) + ext;
        return false;
    }

    // ============================================================================== evidence

    /// @notice Buyer or seller anchors evidence, directly or by a relayed EvidenceSubmission; a signed
    ///         submission is replayed at once and must be refused. The seller's evidence inside the response
    ///         window answers a dispute.
    function submitEvidence(uint256 seed, uint256 flags) external step {
        (seed, flags) = (_mix(seed, 1), _mix(flags, 2));
        if (_ords.length == 0) return;
        uint256 i = flags % 8 == 0 ? seed % _ords.length : _pickOpen(seed, 1 << DISPUTED, 0);
        Ord storage o = _ords[i];
        uint256 who = (flags >> 3) % 8;
        address party = who == 0 ? stranger : who <= 3 ? o.t.buyer : o.t.seller;
        bytes32 ev = (flags >> 6) % 16 == 0 ? bytes32(0) : sha256(abi.encode("evidence", seed, flags));
        uint256 passS = _maybeStale(o.s, flags >> 16);
        bool signed = (flags >> 10) & 1 == 1;
        bytes memory data;
        address caller = party;
        bool expected = passS == o.s && (party == o.t.buyer || party == o.t.seller) && ev != bytes32(0) && _status(o.s) < RELEASED;
        bytes32 digest;
        if (signed) {
            uint64 validUntil = _validUntil(flags >> 11);
            uint256 pk = who == 0 ? STRANGER_PK : who <= 3 ? _buyerPks[_buyerIndex(party)] : _sellerPks[_sellerIndex(party)];
            bytes32 structHash = keccak256(abi.encode(ES_TYPEHASH, o.id, party, ev, validUntil));
            digest = _digest(structHash);
            bytes memory sig = _sign(pk, structHash);
            data = abi.encodeCall(ITradeGuardEscrow.submitEvidence, (o.id, o.t, passS, party, ev, validUntil, sig));
            caller = stranger;
            expected = expected && validUntil >= now_ && !_usedDigest[digest];
        } else {
            data = abi.encodeCall(ITradeGuardEscrow.submitEvidence, (o.id, o.t, passS, party, ev, 0, ""));
        }
        (bool ok, bytes memory ret) = _call(caller, data);
        if (!_expect(expected, ok, ret, signed ? "evidence (signed)" : "evidence")) return;
        if (
            party == o.t.seller && _status(o.s) == DISPUTED && !_responded(o.s)
                && now_ <= _anchor(o.s) + _elapsedFrozen(o.s) + o.t.responseSeconds
        ) {
            o.s |= 1 << 8;
            ++okCount[SELLER_RESPONDED];
        }
        _checkCommit(i);
        ++okCount[party == o.t.buyer ? EVIDENCE_BUYER : EVIDENCE_SELLER];
        if (!signed) return;
        _usedDigest[digest] = true;
        ++okCount[EVIDENCE_SIGNED];
        if (o.s == passS) {
            // Same order state: only the replay protection can refuse the second submission.
            (ok, ret) = _call(stranger, data);
            if (ok || bytes4(ret) != ITradeGuardEscrow.SignatureReplayed.selector) {
                _violate("evidence signature replayed", ret);
            } else {
                ++okCount[REPLAY_BLOCKED];
            }
        }
    }

    // =============================================================================== rulings

    /// @notice An arbitrator rules on a disputed order (directly or by a relayed Ruling signature) with a random
    ///         buyer share including 0 and 10000 and the bps edges; sometimes the admin or a stranger tries.
    function rule(uint256 seed, uint256 bpsSeed, uint256 flags) external step {
        (seed, bpsSeed, flags) = (_mix(seed, 1), _mix(bpsSeed, 2), _mix(flags, 3));
        if (_ords.length == 0) return;
        uint256 i = _pickOpen(seed, 1 << DISPUTED, 6);
        Ord storage o = _ords[i];
        uint16 bps = _genShare(bpsSeed);
        uint256 who = flags % 8;
        uint256 pk = who == 0 ? ADMIN_PK : who == 1 ? STRANGER_PK : ARBITRATOR_PK;
        address signer = vm.addr(pk);
        uint256 passS = _maybeStale(o.s, flags >> 16);
        bytes32 rationale = sha256(abi.encode("rationale", seed));
        bool signed = (flags >> 3) & 1 == 1;
        bytes memory data;
        address caller = signer;
        bool expected = signer == arbitrator && o.t.arbitrator == address(0) && passS == o.s
            && _status(o.s) == DISPUTED && now_ >= _frozenUntil(o.s)
            && bps <= BPS && now_ <= _anchor(o.s) + _frozenSeconds(o.s) + o.t.arbitrationSeconds;
        if (signed) {
            uint64 validUntil = _validUntil(flags >> 4);
            expected = expected && validUntil >= now_;
            bytes memory sig = _sign(pk, keccak256(abi.encode(RULING_TYPEHASH, o.id, bps, rationale, validUntil)));
            data = abi.encodeCall(ITradeGuardEscrow.submitRuling, (o.id, o.t, passS, bps, rationale, validUntil, sig));
            caller = o.t.buyer; // anyone may relay
        } else {
            data = abi.encodeCall(ITradeGuardEscrow.submitRuling, (o.id, o.t, passS, bps, rationale, 0, ""));
        }
        uint256[4] memory before = _snap(i);
        (bool ok, bytes memory ret) = _call(caller, data);
        if (!_expect(expected, ok, ret, signed ? "rule (signed)" : "rule")) return;
        o.ruleBps = bps;
        _finalize(i, RESOLVED, o.t.amount * bps / BPS);
        _observe(i, before);
        ++okCount[bps == BPS ? RULE_FULL_REFUND : bps == 0 ? RULE_FULL_RELEASE : RULE_SPLIT];
        if (signed) ++okCount[RULE_SIGNED];
    }

    /// @notice ERC-792: the order's arbitrator rules (0..10, sometimes the out-of-range 11; the arbitrator's
    ///         own check refuses it), which reaches the escrow's rule() in the same transaction; sometimes a
    ///         stranger or the platform arbitrator calls rule() directly and must find no dispute of its own.
    function courtRule(uint256 seed, uint256 rSeed, uint256 flags) external step {
        (seed, rSeed, flags) = (_mix(seed, 1), _mix(rSeed, 2), _mix(flags, 3));
        if (_ords.length == 0) return;
        uint256 i = _pickOpen(seed, 1 << DISPUTED, 7);
        Ord storage o = _ords[i];
        uint256 r = rSeed % 12;
        bool ok;
        bytes memory ret;
        if (o.t.arbitrator == address(0) || _status(o.s) != DISPUTED || flags % 8 == 0) {
            address caller = flags % 2 == 0 ? stranger : arbitrator;
            (ok, ret) = _call(caller, abi.encodeCall(IArbitrable.rule, (o.disputeId, r)));
            if (ok || bytes4(ret) != ITradeGuardEscrow.UnknownDispute.selector) {
                _violate("rule() accepted from a foreign arbitrator", ret);
            } else {
                ++okCount[FOREIGN_RULE_REFUSED];
            }
            return;
        }
        bool expected = r <= 10 && o.courtRuled == 0;
        vm.prank(courtOwner);
        (ok, ret) = address(court).call(abi.encodeCall(CentralizedArbitrator.giveRuling, (o.disputeId, r)));
        if (!_expect(expected, ok, ret, "court ruling")) return;
        o.courtRuled = r + 1;
        (, uint256 recorded) = escrow.disputeOf(address(court), o.disputeId);
        if (recorded != r + 1) _violate("ruling not recorded", "");
        ++okCount[COURT_RULED];
    }

    /// @notice Anyone executes the recorded ERC-792 ruling (sometimes before there is one, with a stale state,
    ///         on a frozen or a platform order): SPEC §4.1 shares, settled per §3.
    function executeRuling(uint256 seed, uint256 flags) external step {
        (seed, flags) = (_mix(seed, 1), _mix(flags, 2));
        if (_ords.length == 0) return;
        uint256 i = _pickOpen(seed, 1 << DISPUTED, 8);
        Ord storage o = _ords[i];
        uint256 passS = _maybeStale(o.s, flags >> 16);
        bool expected = o.t.arbitrator != address(0) && o.courtRuled != 0 && passS == o.s
            && _status(o.s) == DISPUTED && now_ >= _frozenUntil(o.s);
        uint256[4] memory before = _snap(i);
        (bool ok, bytes memory ret) =
            _call(_anyone(flags), abi.encodeCall(ITradeGuardEscrow.executeRuling, (o.id, o.t, passS)));
        if (!_expect(expected, ok, ret, "executeRuling")) return;
        o.ruleBps = _rulingShare(o.courtRuled - 1);
        _finalize(i, RESOLVED, o.t.amount * o.ruleBps / BPS);
        _observe(i, before);
        ++okCount[RULING_EXECUTED];
    }

    function _genShare(uint256 r) internal pure returns (uint16) {
        uint256 c = r % 9;
        if (c == 0) return 0;
        if (c == 1) return 10_000;
        if (c == 2) return 1;
        if (c == 3) return 9999;
        if (c == 4) return 5000;
        if (c == 8) return (r >> 8) % 8 == 0 ? 10_001 : 3333;
        return uint16((r >> 8) % 10_001);
    }

    // =============================================================================== refunds

    /// @notice The seller gives an order up (sometimes the buyer tries instead).
    function refundBySeller(uint256 seed, uint256 flags) external step {
        (seed, flags) = (_mix(seed, 1), _mix(flags, 2));
        if (_ords.length == 0) return;
        uint256 i = flags % 16 == 0 ? seed % _ords.length : _pickOpen(seed, 0xff, 0);
        Ord storage o = _ords[i];
        uint256 passS = _maybeStale(o.s, flags >> 16);
        address caller = (flags >> 4) % 8 == 0 ? o.t.buyer : o.t.seller;
        bool expected = caller == o.t.seller && passS == o.s && _status(o.s) < RELEASED && now_ >= _frozenUntil(o.s);
        uint256[4] memory before = _snap(i);
        (bool ok, bytes memory ret) =
            _call(caller, abi.encodeCall(ITradeGuardEscrow.refundBySeller, (o.id, o.t, passS)));
        if (!_expect(expected, ok, ret, "refundBySeller")) return;
        _finalize(i, REFUNDED, o.t.amount);
        _observe(i, before);
        ++okCount[REFUND_BY_SELLER];
    }

    /// @notice Anyone refunds an order whose deadline passed (mostly such an order; sometimes one not yet due).
    function timeoutRefund(uint256 seed, uint256 flags) external step {
        (seed, flags) = (_mix(seed, 1), _mix(flags, 2));
        if (_ords.length == 0) return;
        uint256 m = (flags >> 8) % 4;
        uint256 mask = m == 0 ? 1 << SHIPPED : m == 1 ? 1 << DISPUTED : (1 << FUNDED) | (1 << SHIPPED) | (1 << DISPUTED);
        uint256 i = _pickOpen(seed, mask, 2);
        Ord storage o = _ords[i];
        uint256 passS = _maybeStale(o.s, flags >> 16);
        (bool due, uint256 reason) = _timeoutDue(i);
        bool expected = passS == o.s && due;
        uint256[4] memory before = _snap(i);
        (bool ok, bytes memory ret) =
            _call(_anyone(flags), abi.encodeCall(ITradeGuardEscrow.timeoutRefund, (o.id, o.t, passS)));
        if (!_expect(expected, ok, ret, "timeoutRefund")) return;
        _finalize(i, REFUNDED, o.t.amount);
        _observe(i, before);
        ++okCount[reason];
    }

    /// @dev Whether a timeout refund is due now, and which counter it falls under.
    function _timeoutDue(uint256 i) internal view returns (bool, uint256) {
        Ord storage o = _ords[i];
        uint256 s = o.s;
        if (now_ < _frozenUntil(s)) return (false, 0);
        uint8 st = _status(s);
        uint256 ext = _frozenSeconds(s);
        if (st == FUNDED) return (now_ > o.t.shipBy + ext, TIMEOUT_SHIP);
        if (st == SHIPPED) return (now_ > o.t.deliverBy + ext, TIMEOUT_DELIVERY);
        if (st == DISPUTED) {
            if (o.courtRuled != 0) return (false, 0); // a recorded ERC-792 ruling wins over every timeout
            uint256 at = _anchor(s) + ext;
            if (!_responded(s)) return (now_ > at + o.t.responseSeconds, TIMEOUT_RESPONSE);
            return (now_ > at + o.t.arbitrationSeconds, TIMEOUT_ARBITRATION);
        }
        return (false, 0);
    }

    // ================================================================================ freeze

    /// @notice A regulator freezes an open order (durations at the 30-day total bound and one past it; zero
    ///         reason; a stranger trying).
    function freeze(uint256 seed, uint256 durSeed, uint256 flags) external step {
        (seed, durSeed, flags) = (_mix(seed, 1), _mix(durSeed, 2), _mix(flags, 3));
        if (_ords.length == 0) return;
        uint256 i = _pickOpen(seed, 0xff, 0);
        Ord storage o = _ords[i];
        uint256 fs = _frozenSeconds(o.s);
        uint256 rem = MAX_FREEZE - fs;
        uint256 c = durSeed % 8;
        uint256 d = c == 0 ? 1 : c == 1 ? 1 hours : c == 2 ? 1 days : c == 3 ? 7 days : c == 4 ? rem : c == 5
            ? rem + 1
            : c == 6 ? 0 : 1 + (durSeed >> 8) % 3 days;
        address caller = flags % 8 == 0 ? stranger : regulator;
        bytes32 reason = (flags >> 3) % 16 == 0 ? bytes32(0) : keccak256(abi.encode("aml-case", seed));
        uint256 passS = _maybeStale(o.s, flags >> 16);
        bool expected = caller == regulator && passS == o.s && _status(o.s) < RELEASED && now_ >= _frozenUntil(o.s)
            && reason != bytes32(0) && d != 0 && fs + d <= MAX_FREEZE;
        (bool ok, bytes memory ret) =
            _call(caller, abi.encodeCall(ITradeGuardEscrow.freeze, (o.id, o.t, passS, uint32(d), reason)));
        if (!_expect(expected, ok, ret, "freeze")) return;
        o.s = _withFreeze(o.s, fs + d, now_ + d);
        _checkCommit(i);
        ++okCount[FREEZE];
    }

    /// @notice A regulator lifts a freeze early (timers give back the unused part).
    function unfreeze(uint256 seed, uint256 flags) external step {
        (seed, flags) = (_mix(seed, 1), _mix(flags, 2));
        if (_ords.length == 0) return;
        uint256 i = _pickOpen(seed, 0xff, 3);
        Ord storage o = _ords[i];
        address caller = flags % 8 == 0 ? stranger : regulator;
        uint256 passS = _maybeStale(o.s, flags >> 16);
        uint256 until = _frozenUntil(o.s);
        bool expected = caller == regulator && passS == o.s && now_ < until;
        (bool ok, bytes memory ret) = _call(caller, abi.encodeCall(ITradeGuardEscrow.unfreeze, (o.id, o.t, passS)));
        if (!_expect(expected, ok, ret, "unfreeze")) return;
        o.s = _withFreeze(o.s, _frozenSeconds(o.s) - (until - now_), now_);
        _checkCommit(i);
        ++okCount[UNFREEZE];
    }

    // ============================================================================== payouts

    /// @notice Any party withdraws its credit: all of it, all but 1 unit, part of it, zero or too much; to
    ///         itself or to a cold wallet (the way around its own blacklisting).
    function withdraw(uint256 acctSeed, uint256 amtSeed, uint256 flags) external step {
        (acctSeed, amtSeed, flags) = (_mix(acctSeed, 1), _mix(amtSeed, 2), _mix(flags, 3));
        address token = _tokens[(acctSeed >> 8) & 1];
        address acct = _accounts[acctSeed % _accounts.length];
        if ((flags >> 6) % 4 != 0) {
            for (uint256 k; k < _accounts.length; ++k) {
                address a = _accounts[(acctSeed % _accounts.length + k) % _accounts.length];
                if (ghostCredit[token][a] != 0) {
                    acct = a;
                    break;
                }
            }
        }
        uint256 credit = ghostCredit[token][acct];
        uint256 mode = flags % 8;
        uint256 amount = mode <= 2 ? credit : mode <= 4 ? (credit >= 2 ? credit - 1 : credit) : mode == 5
            ? (credit == 0 ? 1 : 1 + amtSeed % credit)
            : mode == 6 ? 0 : credit + 1;
        address to = (flags >> 3) % 4 == 0 ? _cold[(flags >> 5) % 3] : acct;
        if ((flags >> 8) % 64 == 0) to = address(0);
        bool expected = amount != 0 && amount <= credit && to != address(0) && !(token == address(blt) && blacklisted[to]);
        uint256 balBefore = to == address(0) ? 0 : _balance(token, to);
        (bool ok, bytes memory ret) = _call(acct, abi.encodeCall(ITradeGuardEscrow.withdraw, (token, to, amount)));
        if (!_expect(expected, ok, ret, "withdraw")) return;
        ghostCredit[token][acct] -= amount;
        ghostCreditSum[token] -= amount;
        if (_balance(token, to) != balBefore + amount) _violate("withdraw: recipient not paid", "");
        ++okCount[amount == credit ? WITHDRAW_FULL : amount + 1 == credit ? WITHDRAW_LEAVE_ONE : WITHDRAW_PARTIAL];
        _checkCredits();
    }

    /// @notice The token owner blacklists (rarely) or clears an account on the second token.
    function setBlacklist(uint256 acctSeed) external step {
        acctSeed = _mix(acctSeed, 1);
        address acct = _accounts[acctSeed % _accounts.length];
        bool on = (acctSeed >> 8) % 8 == 0;
        blt.setBlacklisted(acct, on);
        blacklisted[acct] = on;
        ++okCount[BLACKLIST_SET];
    }

    // =============================================================================== oracles

    /// @notice The admin removes an oracle (its partial attestations stop counting at once).
    function removeOracle(uint256 seed) external step {
        seed = _mix(seed, 1);
        address o = (seed >> 8) % 2 == 0 ? _oracleWithPartial(seed) : _pool[seed % 6];
        (bool ok, bytes memory ret) = _call(admin, abi.encodeCall(escrow.removeOracle, (o)));
        if (!_expect(_orc[o].active, ok, ret, "removeOracle")) return;
        _orc[o].active = false;
        --_activeOracles;
        if (_orc[o].activeFrom > now_ && now_ < _pendingUntil) --_pendingOracles;
        ++okCount[ORACLE_REMOVED];
    }

    /// @dev Half the time, remove an oracle whose attestation sits in an open k >= 2 order's partial bitmap.
    function _oracleWithPartial(uint256 seed) internal view returns (address) {
        uint256 n = _open.length;
        for (uint256 k; k < n; ++k) {
            Ord storage o = _ords[_open[(seed % n + k) % n]];
            uint256 bits = o.partialShip | o.partialDeliver;
            if (o.t.threshold < 2 || bits == 0) continue;
            for (uint256 p; p < 6; ++p) {
                OracleM memory m = _orc[_pool[p]];
                if (m.active && bits & (1 << m.index) != 0) return _pool[p];
            }
        }
        return _pool[seed % 6];
    }

    /// @notice The admin (re-)registers an oracle: a fresh index, counting only for orders funded after its delay.
    function addOracle(uint256 seed) external step {
        seed = _mix(seed, 1);
        address o = _pool[seed % 6];
        (bool ok, bytes memory ret) = _call(admin, abi.encodeCall(escrow.addOracle, (o)));
        if (!_expect(!_orc[o].active && _oracleCount < 256, ok, ret, "addOracle")) return;
        _orc[o] = OracleM({index: uint8(_oracleCount), active: true, activeFrom: uint64(now_ + ROLE_DELAY)});
        if (now_ >= _pendingUntil) _pendingOracles = 0;
        ++_pendingOracles;
        _pendingUntil = now_ + ROLE_DELAY;
        ++_oracleCount;
        ++_activeOracles;
        ++okCount[ORACLE_ADDED];
    }

    // ================================================================================== time

    /// @notice Jump to exactly one second before, at, or one second after a boundary of an open order:
    ///         releaseAt, ship-by, deliver-by, the response and arbitration deadlines, the end of a freeze.
    function warpToBoundary(uint256 seed, uint256 which) external step {
        (seed, which) = (_mix(seed, 1), _mix(which, 2));
        if (_open.length == 0) {
            _warpTo(now_ + 1 + which % 1 days);
            return;
        }
        Ord storage o = _ords[_open[seed % _open.length]];
        uint256 ext = _frozenSeconds(o.s);
        uint256[4] memory b;
        uint256 nb;
        uint8 st = _status(o.s);
        if (st == FUNDED) b[nb++] = o.t.shipBy + ext;
        if (st == SHIPPED) b[nb++] = o.t.deliverBy + ext;
        if (st == DELIVERED) b[nb++] = _anchor(o.s) + ext;
        if (st == DISPUTED) {
            b[nb++] = _anchor(o.s) + ext + o.t.responseSeconds;
            b[nb++] = _anchor(o.s) + ext + o.t.arbitrationSeconds;
        }
        if (_frozenUntil(o.s) > now_) b[nb++] = _frozenUntil(o.s);
        uint256 target = b[which % nb] - 1 + (which >> 8) % 3;
        if (target <= now_) {
            // Past this boundary: take the next one still ahead, else move on by one second.
            target = now_ + 1;
            for (uint256 k; k < nb; ++k) {
                if (b[k] > now_) {
                    target = b[k] - 1 + (which >> 8) % 3;
                    if (target <= now_) target = now_ + 1;
                    break;
                }
            }
        }
        _warpTo(target);
        ++okCount[WARP_BOUNDARY];
    }

    /// @notice Let time pass: mostly up to a day, sometimes up to 10 days.
    function warp(uint256 secs) external step {
        secs = _mix(secs, 1);
        _warpTo(now_ + 1 + ((secs >> 128) % 4 == 0 ? secs % 10 days : secs % 1 days));
        ++okCount[WARP];
    }

    /// @dev Spreads a fuzzer input over all 256 bits: the generators read independent bit fields, and the
    ///      fuzzer's favourite small values would otherwise always select the same (often invalid) branches.
    function _mix(uint256 x, uint256 salt) internal pure returns (uint256) {
        return uint256(keccak256(abi.encode(x, salt)));
    }

    function _warpTo(uint256 t) internal {
        now_ = t;
        vm.warp(t);
    }

    // ======================================================================= model internals

    /// @dev Marks order `i` final with `refund` credited to the buyer and the rest settled per SPEC §3, in the
    ///      ghost credits only (the observed legs come from the contract).
    function _finalize(uint256 i, uint8 status, uint256 refund) internal {
        Ord storage o = _ords[i];
        o.s = _withStatus(o.s, status);
        address token = o.t.token;
        ghostOpen[token] -= o.t.amount;
        (uint256 c, uint256 t, uint256 n) = _split(o.t.amount - refund, o.t.commissionBps, o.t.taxBps);
        _credit(token, o.t.buyer, refund);
        _credit(token, treasury, c);
        _credit(token, o.t.taxRecipient, t);
        _credit(token, o.t.seller, n);
        uint256 pos = _openPos[i];
        uint256 last = _open[_open.length - 1];
        _open[pos - 1] = last;
        _openPos[last] = pos;
        _open.pop();
        delete _openPos[i];
    }

    function _credit(address token, address account, uint256 amount) internal {
        if (amount == 0) return;
        ghostCredit[token][account] += amount;
        ghostCreditSum[token] += amount;
    }

    /// @dev Credits of (buyer, treasury, tax recipient, seller) in the order's token.
    function _snap(uint256 i) internal view returns (uint256[4] memory v) {
        ITradeGuardEscrow.Terms storage t = _ords[i].t;
        v[0] = escrow.creditOf(t.token, t.buyer);
        v[1] = escrow.creditOf(t.token, treasury);
        v[2] = escrow.creditOf(t.token, t.taxRecipient);
        v[3] = escrow.creditOf(t.token, t.seller);
    }

    /// @dev Records the payout legs the contract credited for order `i` (the four roles are distinct addresses).
    function _observe(uint256 i, uint256[4] memory before) internal {
        uint256[4] memory a = _snap(i);
        Ord storage o = _ords[i];
        (o.paidBuyer, o.paidCommission, o.paidTax, o.paidSeller) =
            (a[0] - before[0], a[1] - before[1], a[2] - before[2], a[3] - before[3]);
        _checkPayout(i);
        _checkCommit(i);
        _checkCredits();
    }

    /// @dev Invariant (b) for one final order: the legs add up to the amount and follow SPEC §3 exactly.
    function _payoutError(uint256 i) internal view returns (string memory) {
        Ord storage o = _ords[i];
        uint8 st = _status(o.s);
        uint256 paid = o.paidBuyer + o.paidCommission + o.paidTax + o.paidSeller;
        if (st < RELEASED) return paid == 0 ? "" : "open order paid out";
        if (paid != o.t.amount) return "legs do not add up to the amount";
        uint256 refund = st == REFUNDED ? o.t.amount : st == RESOLVED ? o.t.amount * o.ruleBps / BPS : 0;
        (uint256 c, uint256 t, uint256 n) = _split(o.t.amount - refund, o.t.commissionBps, o.t.taxBps);
        if (o.paidBuyer != refund || o.paidCommission != c || o.paidTax != t || o.paidSeller != n) {
            return "legs differ from SPEC 3 rounding";
        }
        return "";
    }

    function _checkPayout(uint256 i) internal {
        string memory e = _payoutError(i);
        if (bytes(e).length != 0) _violate(string.concat("payout order ", _str(i), ": ", e), "");
    }

    function _checkCommit(uint256 i) internal {
        Ord storage o = _ords[i];
        if (escrow.commitmentOf(o.id, o.t.buyer) != keccak256(abi.encode(o.t, o.s))) {
            _violate(string.concat("commitment of order ", _str(i), " differs from the model"), "");
        }
    }

    function _checkCredits() internal {
        for (uint256 k; k < 2; ++k) {
            for (uint256 j; j < _accounts.length; ++j) {
                if (escrow.creditOf(_tokens[k], _accounts[j]) != ghostCredit[_tokens[k]][_accounts[j]]) {
                    _violate(string.concat("credit of account ", _str(j), " differs from the model"), "");
                }
            }
        }
    }

    /// @dev An open order with a status in `mask` (bit per status), preferring (3 times in 4) one where `kind`
    ///      applies (1 releasable, 2 timeout due, 3 frozen, 4 attestable, 5 disputable, 6 ruleable); else any
    ///      order, so that refusals are exercised too.
    function _pickOpen(uint256 seed, uint256 mask, uint256 kind) internal view returns (uint256) {
        uint256 n = _open.length;
        if (n != 0) {
            uint256 start = seed % n;
            uint256 fallback_ = type(uint256).max;
            for (uint256 k; k < n; ++k) {
                uint256 i = _open[(start + k) % n];
                if (mask & (1 << _status(_ords[i].s)) == 0) continue;
                if (kind == 0 || (seed >> 64) % 4 == 0) return i;
                if (fallback_ == type(uint256).max) fallback_ = i;
                if (kind == 1 && _releasable(i, _ords[i].s)) return i;
                if (kind == 2) {
                    (bool due,) = _timeoutDue(i);
                    if (due) return i;
                }
                if (kind == 3 && now_ < _frozenUntil(_ords[i].s)) return i;
                if (kind == 4 && _attestable(i)) return i;
                if (kind == 5 && _disputeOpen(_ords[i].t, _ords[i].s)) return i;
                if (kind == 6 && _ruleable(i)) return i;
                if (kind == 7 && _ords[i].t.arbitrator != address(0) && _ords[i].courtRuled == 0) return i;
                if (kind == 8 && _ords[i].courtRuled != 0 && now_ >= _frozenUntil(_ords[i].s)) return i;
            }
            if (fallback_ != type(uint256).max) return fallback_;
        }
        return (seed >> 128) % _ords.length;
    }

    /// @dev The state to pass: the modelled one, or (1 in 16) a stale one the contract must refuse.
    function _maybeStale(uint256 s, uint256 r) internal pure returns (uint256) {
        return r % 16 == 15 ? s ^ (1 << 9) : s;
    }

    function _validUntil(uint256 r) internal view returns (uint64) {
        uint256 c = r % 16;
        return uint64(c == 0 ? now_ - 1 : c < 8 ? now_ : now_ + 1 hours);
    }

    function _anyone(uint256 r) internal view returns (address) {
        uint256 c = r % 4;
        return c == 0 ? stranger : c == 1 ? _buyers[(r >> 2) % 4] : c == 2 ? _sellers[(r >> 2) % 4] : admin;
    }

    function _buyerIndex(address a) internal view returns (uint256) {
        for (uint256 k; k < 4; ++k) {
            if (_buyers[k] == a) return k;
        }
        revert UnknownParty(a);
    }

    function _sellerIndex(address a) internal view returns (uint256) {
        for (uint256 k; k < 4; ++k) {
            if (_sellers[k] == a) return k;
        }
        revert UnknownParty(a);
    }

    function _balance(address token, address a) internal view returns (uint256) {
        return BlacklistToken(token).balanceOf(a);
    }

    function _call(address caller, bytes memory data) internal returns (bool ok, bytes memory ret) {
        vm.prank(caller);
        (ok, ret) = address(escrow).call(data);
    }

    /// @dev Compares the contract's verdict with the model's; true when both accepted (then apply the model).
    function _expect(bool expected, bool ok, bytes memory ret, string memory what) internal returns (bool) {
        if (expected != ok) {
            _violate(string.concat(what, expected ? ": refused a valid call" : ": accepted an invalid call"), ret);
            return false;
        }
        if (!ok) ++okCount[EXPECTED_REVERT];
        return ok;
    }

    function _violate(string memory what, bytes memory ret) internal {
        if (violations++ == 0) {
            firstViolation = string.concat(what, " (call ", _str(calls), ", time ", _str(now_), ", revert data 0x", _hex(ret), ")");
        }
    }

    function _hex(bytes memory b) internal pure returns (string memory) {
        uint256 n = b.length > 68 ? 68 : b.length;
        bytes memory out = new bytes(2 * n);
        bytes16 digits = "0123456789abcdef";
        for (uint256 k; k < n; ++k) {
            out[2 * k] = digits[uint8(b[k]) >> 4];
            out[2 * k + 1] = digits[uint8(b[k]) & 15];
        }
        return string(out);
    }

    // ============================================================================ invariants

    /// @notice All invariants; reverts with the first broken one.
    function checkInvariants() external view {
        // The model agreed with the contract on every call (accept/refuse, states, partial bits, payouts).
        if (violations != 0) revert(string.concat("model violation: ", firstViolation));
        // (a) conservation, exactly: balance == open amounts + unpaid credits, and every credit as modelled.
        for (uint256 k; k < 2; ++k) {
            address token = _tokens[k];
            uint256 bal = _balance(token, address(escrow));
            if (bal != ghostOpen[token] + ghostCreditSum[token]) {
                revert(string.concat("(a) conservation: balance ", _str(bal), " != open ", _str(ghostOpen[token]), " + credits ", _str(ghostCreditSum[token])));
            }
            for (uint256 j; j < _accounts.length; ++j) {
                if (escrow.creditOf(token, _accounts[j]) != ghostCredit[token][_accounts[j]]) {
                    revert(string.concat("(a) credit of account ", _str(j)));
                }
            }
        }
        // (c) no trap: every open order has an exit open to someone other than the admin, at a bounded time.
        for (uint256 k; k < _open.length; ++k) {
            string memory e = _trapError(_open[k]);
            if (bytes(e).length != 0) revert(string.concat("(c) order ", _str(_open[k]), ": ", e));
        }
    }

    /// @notice Invariant (b) over every order: final orders paid exactly their amount per SPEC §3; open ones
    ///         paid nothing. (Also checked for each order at the moment it ends.)
    function checkAllPayouts() public view {
        for (uint256 i; i < _ords.length; ++i) {
            string memory e = _payoutError(i);
            if (bytes(e).length != 0) revert(string.concat("(b) order ", _str(i), ": ", e));
        }
    }

    /// @dev The earliest time at which a non-admin exit is certain (timeout or release, by anyone), and who else
    ///      can end the order now (buyer confirm, seller refund).
    function _exitAt(uint256 i) internal view returns (uint256 at) {
        Ord storage o = _ords[i];
        uint256 s = o.s;
        uint8 st = _status(s);
        uint256 ext = _frozenSeconds(s);
        if (st == FUNDED) at = o.t.shipBy + ext + 1;
        else if (st == SHIPPED) at = o.t.deliverBy + ext + 1;
        else if (st == DELIVERED) at = _anchor(s) + ext;
        else if (o.courtRuled != 0) at = now_; // executeRuling, as soon as not frozen
        else at = _anchor(s) + ext + (_responded(s) ? o.t.arbitrationSeconds : o.t.responseSeconds) + 1;
        if (at < _frozenUntil(s)) at = _frozenUntil(s);
    }

    function _trapError(uint256 i) internal view returns (string memory) {
        Ord storage o = _ords[i];
        uint8 st = _status(o.s);
        if (st == 0 || st >= RELEASED) return "open set holds a final order";
        bool frozen = now_ < _frozenUntil(o.s);
        bool sellerRefund = !frozen; // any non-final order, by the seller
        bool buyerConfirm = !frozen && (st == SHIPPED || st == DELIVERED);
        uint256 at = _exitAt(i);
        bool timeoutOrRelease = at <= now_ + 365 days + MAX_FREEZE + 90 days + 180 days;
        if (!(timeoutOrRelease || buyerConfirm || sellerRefund)) return "no exit";
        if (!timeoutOrRelease) return "timeout too far away";
        if (frozen && _frozenUntil(o.s) > now_ + MAX_FREEZE) return "frozen beyond 30 days";
        return "";
    }

    // ============================================================================ end of run

    /// @notice Proves every open order can be finished without the admin or the parties: jump to the latest
    ///         exit time, let a stranger release or timeout-refund each order, let every recipient withdraw,
    ///         and require the escrow to end with exactly zero of each token.
    function drainAndCheck() external {
        vm.warp(now_);
        uint256 t = now_;
        for (uint256 k; k < _open.length; ++k) {
            uint256 at = _exitAt(_open[k]);
            if (at > t) t = at;
        }
        _warpTo(t);
        while (_open.length != 0) {
            uint256 i = _open[_open.length - 1];
            Ord storage o = _ords[i];
            uint256[4] memory before = _snap(i);
            bool ok;
            bytes memory ret;
            if (_status(o.s) == DELIVERED) {
                ITradeGuardEscrow.OrderRef[] memory refs = new ITradeGuardEscrow.OrderRef[](1);
                refs[0] = ITradeGuardEscrow.OrderRef({orderId: o.id, terms: o.t, state: o.s});
                (ok, ret) = _call(stranger, abi.encodeCall(ITradeGuardEscrow.release, (refs, true)));
                if (!ok) revert(string.concat("drain: release refused, order ", _str(i), " 0x", _hex(ret)));
                _finalize(i, RELEASED, 0);
            } else if (_status(o.s) == DISPUTED && o.courtRuled != 0) {
                (ok, ret) = _call(stranger, abi.encodeCall(ITradeGuardEscrow.executeRuling, (o.id, o.t, o.s)));
                if (!ok) revert(string.concat("drain: ruling refused, order ", _str(i), " 0x", _hex(ret)));
                o.ruleBps = _rulingShare(o.courtRuled - 1);
                _finalize(i, RESOLVED, o.t.amount * o.ruleBps / BPS);
            } else {
                (ok, ret) = _call(stranger, abi.encodeCall(ITradeGuardEscrow.timeoutRefund, (o.id, o.t, o.s)));
                if (!ok) revert(string.concat("drain: timeout refused, order ", _str(i), " 0x", _hex(ret)));
                _finalize(i, REFUNDED, o.t.amount);
            }
            _observe(i, before);
            ++okCount[DRAIN_EXIT];
        }
        address sink = address(0x5111C);
        for (uint256 k; k < 2; ++k) {
            address token = _tokens[k];
            for (uint256 j; j < _accounts.length; ++j) {
                address a = _accounts[j];
                uint256 credit = ghostCredit[token][a];
                if (credit == 0) continue;
                (bool ok, bytes memory ret) = _call(a, abi.encodeCall(ITradeGuardEscrow.withdraw, (token, sink, credit)));
                if (!ok) revert(string.concat("drain: withdraw refused, account ", _str(j), " 0x", _hex(ret)));
                ghostCredit[token][a] = 0;
                ghostCreditSum[token] -= credit;
            }
            uint256 left = _balance(token, address(escrow));
            if (left != 0) revert EscrowNotDrained(token, left);
        }
        this.checkInvariants();
        checkAllPayouts();
    }

    // ================================================================================= views

    /// @notice Number of orders funded in this run.
    function orderCount() external view returns (uint256) {
        return _ords.length;
    }

    /// @notice Number of orders still open.
    function openCount() external view returns (uint256) {
        return _open.length;
    }

    /// @notice Counter names, in index order, for the progress report.
    function counterName(uint256 k) external pure returns (string memory) {
        string[N_COUNTERS] memory names = [
            "fund (buyer calls)",
            "fund (relayed, signed)",
            "fund batches (2-3 orders)",
            "fund with k >= 2",
            "attest partial (below k)",
            "attest -> SHIPPED",
            "attest -> DELIVERED",
            "removed oracle's bit ignored",
            "orders released by release()",
            "release batches (>= 2 released)",
            "confirmReceipt",
            "confirmReceipt (signed)",
            "openDispute",
            "openDispute (signed)",
            "evidence (buyer)",
            "evidence (seller)",
            "evidence (signed)",
            "seller answered dispute",
            "rule 10000 (full refund)",
            "rule 0 (full release)",
            "rule split",
            "rule (signed)",
            "refundBySeller",
            "timeout: ship-by",
            "timeout: deliver-by",
            "timeout: response",
            "timeout: arbitration",
            "freeze",
            "unfreeze",
            "withdraw (all)",
            "withdraw (leaving 1 unit)",
            "withdraw (part)",
            "oracle removed",
            "oracle added",
            "blacklist set",
            "warp to boundary",
            "warp",
            "refusals predicted by the model",
            "evidence replay refused",
            "threshold set",
            "drain exits (after run)",
            "openDispute (ERC-792, fee paid)",
            "ERC-792 arbitrator ruled",
            "ERC-792 ruling executed",
            "rule() by a foreign arbitrator refused"
        ];
        return names[k];
    }
}

/// @title Invariant campaign for the TradeGuard escrow
/// @notice Runs the handler with `fail_on_revert = false` and checks, after every call: the model agreed with
///         the contract, (a) exact conservation, (b) payouts per SPEC §3, (c) no trapped order. After every run
///         it drains all orders without the admin and requires an empty escrow. `test_progress_*` drives the
///         same handler deterministically and asserts that every action actually succeeded (d).
contract EscrowInvariantsTest {
    /// @dev forge's selector filter (same layout as forge-std's StdInvariant.FuzzSelector).
    struct FuzzSelector {
        address addr;
        bytes4[] selectors;
    }

    /// @notice DSTest-style log, printed by `forge test -vv`.
    event log_named_uint(string key, uint256 val);

    Vm internal constant vm = Vm(0x7109709ECfa91a80626fF3989D68f67F5b1DD12D);
    EscrowHandler internal handler;

    function setUp() public {
        handler = new EscrowHandler();
    }

    function targetContracts() public view returns (address[] memory t) {
        t = new address[](1);
        t[0] = address(handler);
    }

    function targetSelectors() public view returns (FuzzSelector[] memory t) {
        bytes4[] memory s = new bytes4[](20);
        s[17] = EscrowHandler.attestDelivery.selector;
        s[18] = EscrowHandler.courtRule.selector;
        s[19] = EscrowHandler.executeRuling.selector;
        s[0] = EscrowHandler.fund.selector;
        s[1] = EscrowHandler.attest.selector;
        s[2] = EscrowHandler.release.selector;
        s[3] = EscrowHandler.confirmReceipt.selector;
        s[4] = EscrowHandler.openDispute.selector;
        s[5] = EscrowHandler.submitEvidence.selector;
        s[6] = EscrowHandler.rule.selector;
        s[7] = EscrowHandler.refundBySeller.selector;
        s[8] = EscrowHandler.timeoutRefund.selector;
        s[9] = EscrowHandler.freeze.selector;
        s[10] = EscrowHandler.unfreeze.selector;
        s[11] = EscrowHandler.withdraw.selector;
        s[12] = EscrowHandler.setBlacklist.selector;
        s[13] = EscrowHandler.removeOracle.selector;
        s[14] = EscrowHandler.addOracle.selector;
        s[15] = EscrowHandler.warpToBoundary.selector;
        s[16] = EscrowHandler.warp.selector;
        t = new FuzzSelector[](1);
        t[0] = FuzzSelector({addr: address(handler), selectors: s});
    }

    /// @notice (a) conservation, (b) payouts, (c) no trap, and model agreement, after every handler call.
    function invariant_escrow() public view {
        handler.checkInvariants();
    }

    /// @notice After each run: every order exits without the admin, everyone withdraws, the escrow is empty.
    function afterInvariant() public {
        handler.drainAndCheck();
        // Success counts summed over the campaign's runs (kept in the forge process environment, since every
        // run starts from a fresh EVM state) and logged after each run: `forge test -vv` shows the totals.
        _accumulate("runs", 1);
        _accumulate("handler calls", handler.calls());
        _accumulate("orders funded", handler.orderCount());
        for (uint256 k; k < 45; ++k) {
            _accumulate(handler.counterName(k), handler.okCount(k));
        }
    }

    function _accumulate(string memory name, uint256 add) internal {
        string memory key = string.concat("TRADEGUARD_INVARIANT_", _envKey(name));
        uint256 total = vm.envOr(key, uint256(0)) + add;
        vm.setEnv(key, vm.toString(total));
        emit log_named_uint(string.concat("campaign total: ", name), total);
    }

    function _envKey(string memory name) internal pure returns (string memory) {
        bytes memory b = bytes(name);
        for (uint256 k; k < b.length; ++k) {
            bytes1 c = b[k];
            if (!((c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || (c >= "0" && c <= "9"))) b[k] = "_";
        }
        return string(b);
    }

    // ======================================================================== progress (d)

    uint256[64] internal _total;

    /// @notice (d) Progress: five episodes of 500 pseudo-random handler calls each (fresh escrow per episode),
    ///         every invariant checked after every call, a drain at the end of each episode; then every action
    ///         must have succeeded at least once in total, and the per-action totals are logged (`-vv`).
    function test_progress_everyActionSucceeds() public {
        uint256 calls;
        uint256 orders;
        for (uint256 e; e < 5; ++e) {
            handler = new EscrowHandler();
            _drive(uint256(keccak256(abi.encode("episode", e))), 500);
            for (uint256 k; k < 45; ++k) {
                _total[k] += handler.okCount(k);
            }
            calls += handler.calls();
            orders += handler.orderCount();
        }
        for (uint256 k; k < 45; ++k) {
            emit log_named_uint(handler.counterName(k), _total[k]);
        }
        emit log_named_uint("orders funded", orders);
        emit log_named_uint("handler calls", calls);
        for (uint256 k; k < 45; ++k) {
            // Blacklisting and plain warps always succeed; everything else must have happened at least once.
            if (_total[k] == 0) revert(string.concat("no progress: ", handler.counterName(k)));
        }
    }

    /// @dev Drives the handler with a deterministic pseudo-random action sequence, checking every invariant
    ///      after each call, and drains at the end.
    function _drive(uint256 seed, uint256 steps) internal {
        uint256 r = seed;
        for (uint256 k; k < steps; ++k) {
            r = uint256(keccak256(abi.encode(r, k)));
            uint256 a = uint256(keccak256(abi.encode(r, "a")));
            uint256 b = uint256(keccak256(abi.encode(r, "b")));
            uint256 c = uint256(keccak256(abi.encode(r, "c")));
            uint256 w = r % 100;
            if (w < 11) handler.fund(a, b, c);
            else if (w < 19) handler.attest(a, b, c);
            else if (w < 25) handler.attestDelivery(a, b, c);
            else if (w < 31) handler.release(a, b);
            else if (w < 35) handler.confirmReceipt(a, b);
            else if (w < 41) handler.openDispute(a, b);
            else if (w < 46) handler.submitEvidence(a, b);
            else if (w < 52) handler.rule(a, b, c);
            else if (w < 55) handler.refundBySeller(a, b);
            else if (w < 61) handler.timeoutRefund(a, b);
            else if (w < 64) handler.freeze(a, b, c);
            else if (w < 66) handler.unfreeze(a, b);
            else if (w < 74) handler.withdraw(a, b, c);
            else if (w < 75) handler.setBlacklist(a);
            else if (w < 77) handler.removeOracle(a);
            else if (w < 79) handler.addOracle(a);
            else if (w < 89) handler.warpToBoundary(a, b);
            else if (w < 91) handler.courtRule(a, b, c);
            else if (w < 92) handler.executeRuling(a, b);
            else handler.warp(a);
            handler.checkInvariants();
        }
        handler.drainAndCheck();
    }
}
