// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {ITradeGuardEscrow} from "../src/interfaces/ITradeGuardEscrow.sol";
import {BlacklistToken} from "../test/BlacklistToken.sol";
import {FeeOnTransferToken} from "../test/FeeOnTransferToken.sol";
import {ReentrantToken} from "../test/ReentrantToken.sol";
import {EscrowTestBase} from "./EscrowTestBase.sol";

/// @dev The `mint(address,uint256)` every test double exposes.
interface IMintable {
    function mint(address to, uint256 amount) external;
    function approve(address spender, uint256 amount) external returns (bool);
    function balanceOf(address account) external view returns (uint256);
}

/// @title Focused unit tests for the escrow's trickiest paths
/// @notice Rounding at basis-point boundaries, freezes extending timers, k-of-n attestation across transactions,
///         removed oracles, hostile tokens (fee-on-transfer, blacklist, reentrancy) and exact timer boundaries.
///         Every step checks the stored commitment against the state this test expects.
contract EscrowUnitTest is EscrowTestBase {
    /// @dev An order as this test knows it.
    struct O {
        bytes32 id;
        ITradeGuardEscrow.Terms t;
        uint256 s;
    }

    uint32 internal constant HOLD = 3 days;
    uint256 internal _nonce;

    function setUp() public {
        _deployFixture();
    }

    // ======================================================================================== helpers

    function _mint(address token, address to, uint256 amount) internal {
        if (token == address(usd)) usd.faucet(to, amount);
        else IMintable(token).mint(to, amount);
    }

    function _noPermit() internal pure returns (ITradeGuardEscrow.Permit memory p) {}

    function _auth(address token, address b, address sel, uint256 amount, uint16 taxBps, address taxR)
        internal
        returns (ITradeGuardEscrow.OrderAuthorization memory a)
    {
        a = ITradeGuardEscrow.OrderAuthorization({
            orderId: _orderId(sel, string.concat("PO-", _str(++_nonce))),
            buyer: b,
            seller: sel,
            token: token,
            amount: amount,
            commissionBps: escrow.config().commissionBps,
            taxBps: taxBps,
            taxRecipient: taxR,
            shipBy: uint64(block.timestamp + 7 days),
            deliverBy: uint64(block.timestamp + 21 days),
            holdSeconds: HOLD,
            validUntil: uint64(block.timestamp + 1 hours),
            arbitrator: address(0),
            arbitratorExtraDataHash: bytes32(0)
        });
    }

    function _terms(ITradeGuardEscrow.OrderAuthorization memory a)
        internal
        view
        returns (ITradeGuardEscrow.Terms memory)
    {
        return ITradeGuardEscrow.Terms({
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
            threshold: escrow.config().threshold,
            responseSeconds: RESPONSE,
            arbitrationSeconds: ARBITRATION,
            fundedAt: uint64(block.timestamp),
            arbitrator: a.arbitrator,
            arbitratorExtraDataHash: a.arbitratorExtraDataHash,
            metaEvidenceId: escrow.config().metaEvidenceId
        });
    }

    /// @dev Funds one order through a relayer with the buyer's signature; the buyer is `buyer` unless given.
    function _fundAs(address token, address b, uint256 bPk, address sel, uint256 amount, uint16 taxBps, address taxR)
        internal
        returns (O memory o)
    {
        ITradeGuardEscrow.OrderAuthorization memory a = _auth(token, b, sel, amount, taxBps, taxR);
        _mint(token, b, amount);
        vm.prank(b);
        IMintable(token).approve(address(escrow), type(uint256).max);
        ITradeGuardEscrow.OrderAuthorization[] memory auths = new ITradeGuardEscrow.OrderAuthorization[](1);
        auths[0] = a;
        bytes[] memory sigs = new bytes[](1);
        sigs[0] = _sign(bPk, _authHash(a));
        o.t = _terms(a);
        vm.prank(stranger);
        escrow.fund(auths, sigs, _noPermit());
        o.id = a.orderId;
        o.s = _fundedState(a.buyer);
        _check(o);
    }

    function _fund(uint256 amount) internal returns (O memory o) {
        return _fundAs(address(usd), buyer, BUYER_PK, seller, amount, 0, address(0));
    }

    function _check(O memory o) internal view {
        _assertEq(escrow.commitmentOf(o.id, o.t.buyer), _commitment(o.t, o.s), "commitment");
    }

    function _ref(O memory o) internal pure returns (ITradeGuardEscrow.OrderRef memory) {
        return ITradeGuardEscrow.OrderRef({orderId: o.id, terms: o.t, state: o.s});
    }

    /// @dev One attestation item signed by the given oracles (indices into `oraclePk`, or raw keys above 2).
    function _item(O memory o, uint8 milestone, uint256[] memory pks)
        internal
        view
        returns (ITradeGuardEscrow.AttestItem[] memory items)
    {
        items = new ITradeGuardEscrow.AttestItem[](1);
        items[0].order = _ref(o);
        items[0].attestations = new ITradeGuardEscrow.Attestation[](pks.length);
        uint64 eventTime = uint64(block.timestamp - 1);
        bytes32 tracking = keccak256("DHL:JD0123");
        for (uint256 i; i < pks.length; ++i) {
            bytes32 ev = sha256(abi.encode(o.id, milestone, i));
            items[0].attestations[i] = _attestation(pks[i], o.id, milestone, eventTime, tracking, ev);
        }
    }

    function _one(uint256 pk) internal pure returns (uint256[] memory a) {
        a = new uint256[](1);
        a[0] = pk;
    }

    /// @dev Attests `milestone` with oracle 0 (threshold 1) and updates `o.s` as the contract should.
    function _advance(O memory o, uint8 milestone) internal {
        ITradeGuardEscrow.AttestItem[] memory items = _item(o, milestone, _one(oraclePk[0]));
        vm.prank(stranger);
        _assertEq(escrow.attest(items, true), 1, "advanced");
        if (milestone == 1) {
            o.s = _withStatus(o.s, SHIPPED);
        } else {
            uint256 releaseAt = _timerStart(o.s, block.timestamp) + o.t.holdSeconds;
            o.s = _withAnchor(_withStatus(o.s, DELIVERED), releaseAt - _frozenSeconds(o.s));
        }
        _check(o);
    }

    function _releaseAt(O memory o) internal pure returns (uint256) {
        return _anchor(o.s) + _frozenSeconds(o.s);
    }

    function _releaseOne(O memory o, bool strict) internal returns (uint256 n) {
        ITradeGuardEscrow.OrderRef[] memory refs = new ITradeGuardEscrow.OrderRef[](1);
        refs[0] = _ref(o);
        n = escrow.release(refs, strict);
        if (n == 1) o.s = _withStatus(o.s, RELEASED);
    }

    function _freeze(O memory o, uint32 duration) internal {
        vm.prank(regulator);
        escrow.freeze(o.id, o.t, o.s, duration, keccak256("case-1"));
        o.s = _withFreeze(o.s, _frozenSeconds(o.s) + duration, block.timestamp + duration);
        _check(o);
    }

    function _dispute(O memory o) internal {
        vm.prank(o.t.buyer);
        escrow.submitBuyerDecision(o.id, o.t, o.s, 2, bytes32(0), 0, "", "");
        o.s = _withAnchor(_withStatus(o.s, DISPUTED), _timerStart(o.s, block.timestamp) - _frozenSeconds(o.s));
        _check(o);
    }

    function _credit(address token, address who) internal view returns (uint256) {
        return escrow.creditOf(token, who);
    }

    // ============================================================================ rounding (SPEC §3)

    /// @dev Releases `amount` at the given commission and tax and checks every leg against hard-coded values.
    function _releaseCase(uint256 amount, uint16 cBps, uint16 tBps, uint256 eC, uint256 eT, uint256 eN) internal {
        vm.prank(admin);
        escrow.setCommission(cBps);
        BlacklistToken big = new BlacklistToken();
        vm.prank(admin);
        escrow.setToken(address(big), true);
        O memory o = _fundAs(address(big), buyer, BUYER_PK, seller, amount, tBps, tBps == 0 ? address(0) : tax1);
        _advance(o, 1);
        vm.prank(buyer);
        escrow.submitBuyerDecision(o.id, o.t, o.s, 1, bytes32(0), 0, "", "");
        o.s = _withStatus(o.s, RELEASED);
        _check(o);
        _assertEq(_credit(address(big), treasury), eC, "commission");
        _assertEq(_credit(address(big), tax1), eT, "tax");
        _assertEq(_credit(address(big), seller), eN, "net");
        _assertEq(eC + eT + eN, amount, "legs sum");
        _assertEq(big.balanceOf(address(escrow)), amount, "escrow holds the credits");
    }

    function test_split_roundingAtBpsBoundaries() public {
        _releaseCase(9999, 1, 1, 0, 0, 9999);
        _releaseCase(10_000, 1, 1, 1, 1, 9998);
        _releaseCase(10_001, 1, 1, 1, 1, 9999);
        _releaseCase(19_999, 1, 1, 1, 1, 19_997);
        _releaseCase(1, 3000, 5000, 0, 0, 1);
        _releaseCase(3, 3000, 5000, 0, 1, 2); // 0.9 and 1.5 floor to 0 and 1
        _releaseCase(7, 2999, 4999, 2, 3, 2); // 2.0993 and 3.4993
        _releaseCase(10_000, 3000, 5000, 3000, 5000, 2000);
        _releaseCase(10_000, 0, 0, 0, 0, 10_000);
        uint256 m = type(uint128).max; // 340282366920938463463374607431768211455
        _releaseCase(m, 3000, 5000, m * 3000 / 10_000, m / 2, m - m * 3000 / 10_000 - m / 2);
        _releaseCase(m, 0, 0, 0, 0, m);
    }

    /// @dev A ruling of `shareBps` on `amount` (commission 250, tax 5000 to tax1) with hard-coded legs.
    function _ruleCase(uint256 amount, uint16 shareBps, uint256 eR, uint256 eC, uint256 eT, uint256 eN) internal {
        O memory o = _fundAs(address(usd), buyer, BUYER_PK, seller, amount, 5000, tax1);
        _dispute(o);
        uint256[4] memory before =
            [_credit(address(usd), buyer), _credit(address(usd), treasury), _credit(address(usd), tax1), _credit(address(usd), seller)];
        vm.prank(arbitrator);
        escrow.submitRuling(o.id, o.t, o.s, shareBps, keccak256("rationale"), 0, "");
        o.s = _withStatus(o.s, RESOLVED);
        _check(o);
        _assertEq(_credit(address(usd), buyer) - before[0], eR, "refund");
        _assertEq(_credit(address(usd), treasury) - before[1], eC, "commission");
        _assertEq(_credit(address(usd), tax1) - before[2], eT, "tax");
        _assertEq(_credit(address(usd), seller) - before[3], eN, "net");
        _assertEq(eR + eC + eT + eN, amount, "legs sum");
    }

    function test_ruleSplit_roundingAtBpsBoundaries() public {
        _ruleCase(10_001, 0, 0, 250, 5000, 4751); // full release: 250.025 and 5000.5 floor
        _ruleCase(10_001, 10_000, 10_001, 0, 0, 0); // full refund: no commission, no tax
        _ruleCase(10_001, 1, 1, 250, 5000, 4750); // refund 1.0001 -> 1; G = 10000
        _ruleCase(10_001, 9999, 9999, 0, 1, 1); // refund 9999.9999 -> 9999; G = 2
        _ruleCase(10_001, 5000, 5000, 125, 2500, 2376); // refund 5000.5 -> 5000; G = 5001
        _ruleCase(1, 5000, 0, 0, 0, 1); // refund 0.5 -> 0; G = 1
        _ruleCase(1, 9999, 0, 0, 0, 1);
    }

    /// @dev Fuzzed: the legs of a ruling always add up to the amount and follow SPEC §3 exactly.
    function testFuzz_ruleSplit(uint256 amount, uint16 shareBps, uint16 taxBps) public {
        amount = 1 + amount % 1_000_000_000_000;
        shareBps = uint16(shareBps % 10_001);
        taxBps = uint16(taxBps % 5001);
        O memory o = _fundAs(address(usd), buyer, BUYER_PK, seller, amount, taxBps, taxBps == 0 ? address(0) : tax1);
        _dispute(o);
        vm.prank(arbitrator);
        escrow.submitRuling(o.id, o.t, o.s, shareBps, keccak256("r"), 0, "");
        uint256 refund = amount * shareBps / BPS;
        (uint256 c, uint256 t, uint256 n) = _split(amount - refund, COMMISSION, taxBps);
        _assertEq(_credit(address(usd), buyer), refund, "refund");
        _assertEq(_credit(address(usd), treasury), c, "commission");
        _assertEq(_credit(address(usd), tax1), t, "tax");
        _assertEq(_credit(address(usd), seller), n, "net");
        _assertEq(refund + c + t + n, amount, "sum");
    }

    // ======================================================================================== freeze

    function test_freeze_extendsReleaseTimer() public {
        O memory o = _fund(1_000_000);
        _advance(o, 2);
        uint256 releaseAt = block.timestamp + HOLD;
        _assertEq(_releaseAt(o), releaseAt, "releaseAt");

        vm.warp(block.timestamp + 1 hours);
        _freeze(o, 2 days);
        _assertEq(_releaseAt(o), releaseAt + 2 days, "extended by the freeze");

        // Frozen: nobody can release, even the buyer.
        vm.expectRevert(abi.encodeWithSelector(ITradeGuardEscrow.OrderIsFrozen.selector, o.id, uint64(block.timestamp + 2 days)));
        _releaseOne(o, true);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(ITradeGuardEscrow.OrderIsFrozen.selector, o.id, uint64(block.timestamp + 2 days)));
        escrow.submitBuyerDecision(o.id, o.t, o.s, 1, bytes32(0), 0, "", "");

        // The original releaseAt (freeze over by then) is no longer enough; releaseAt + freeze - 1 neither.
        vm.warp(releaseAt);
        vm.expectRevert(abi.encodeWithSelector(ITradeGuardEscrow.DeadlineNotReached.selector, o.id, releaseAt + 2 days));
        _releaseOne(o, true);
        vm.warp(releaseAt + 2 days - 1);
        vm.expectRevert(abi.encodeWithSelector(ITradeGuardEscrow.DeadlineNotReached.selector, o.id, releaseAt + 2 days));
        _releaseOne(o, true);
        // A buyer may still dispute one second before the extended releaseAt.
        // Exactly at releaseAt + freeze: released.
        vm.warp(releaseAt + 2 days);
        vm.prank(stranger);
        _assertEq(_releaseOne(o, true), 1, "released at releaseAt + freeze");
        _check(o);
        (uint256 c,, uint256 n) = _split(1_000_000, COMMISSION, 0);
        _assertEq(_credit(address(usd), seller), n, "net credited");
        _assertEq(_credit(address(usd), treasury), c, "commission credited");
    }

    function test_freeze_duringHoldThenUnfreezeEarly_givesBackUnusedTime() public {
        O memory o = _fund(500_000);
        _advance(o, 2);
        uint256 releaseAt = block.timestamp + HOLD;
        vm.warp(block.timestamp + 1 days);
        _freeze(o, 10 days);
        vm.warp(block.timestamp + 1 days); // frozen for one day only
        vm.prank(regulator);
        escrow.unfreeze(o.id, o.t, o.s);
        o.s = _withFreeze(o.s, _frozenSeconds(o.s) - 9 days, block.timestamp);
        _check(o);
        _assertEq(_releaseAt(o), releaseAt + 1 days, "extended by the time actually frozen");
        vm.warp(releaseAt + 1 days - 1);
        // Still inside the (extended) hold window: the buyer can dispute, nobody can release.
        _assertEq(_releaseOne(o, false), 0, "not yet");
        vm.warp(releaseAt + 1 days);
        _assertEq(_releaseOne(o, false), 1, "released");
    }

    function test_freeze_extendsShipTimeout() public {
        O memory o = _fund(42_000);
        uint256 shipBy = o.t.shipBy;
        vm.warp(shipBy - 1 hours);
        _freeze(o, 5 days);
        vm.warp(shipBy + 5 days);
        vm.expectRevert(abi.encodeWithSelector(ITradeGuardEscrow.DeadlineNotReached.selector, o.id, shipBy + 5 days));
        escrow.timeoutRefund(o.id, o.t, o.s);
        vm.warp(shipBy + 5 days + 1);
        vm.prank(stranger);
        escrow.timeoutRefund(o.id, o.t, o.s);
        _assertEq(_credit(address(usd), buyer), 42_000, "refunded in full");
    }

    /// @dev A freeze stops attestations; one begun after a missed ship-by must not reopen it.
    function test_freeze_stopsAttestations_andDoesNotReopenMissedDeadline() public {
        O memory o = _fund(1000);
        vm.warp(block.timestamp + 1 hours);
        _freeze(o, 4 days);
        ITradeGuardEscrow.AttestItem[] memory items = _item(o, 2, _one(oraclePk[0]));
        vm.prank(stranger);
        vm.expectRevert(
            abi.encodeWithSelector(ITradeGuardEscrow.OrderIsFrozen.selector, o.id, uint64(block.timestamp + 4 days))
        );
        escrow.attest(items, true);

        O memory late = _fund(2000);
        vm.warp(late.t.shipBy + 1); // ship-by missed: refundable by anyone
        _freeze(late, 30 days);
        vm.warp(_frozenUntil(late.s));
        items = _item(late, 1, _one(oraclePk[0]));
        uint256 deadline = late.t.shipBy + 30 days;
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(ITradeGuardEscrow.DeadlinePassed.selector, late.id, deadline));
        escrow.attest(items, true);
        vm.prank(stranger);
        escrow.timeoutRefund(late.id, late.t, late.s);
    }

    function test_freeze_boundedTo30DaysInTotal() public {
        O memory o = _fund(1000);
        _freeze(o, 20 days);
        vm.warp(block.timestamp + 20 days);
        vm.prank(regulator);
        vm.expectRevert(abi.encodeWithSelector(ITradeGuardEscrow.FreezeTooLong.selector, o.id, 30 days + 1));
        escrow.freeze(o.id, o.t, o.s, 10 days + 1, keccak256("again"));
        _freeze(o, 10 days);
        vm.prank(stranger);
        vm.expectRevert(); // not a regulator
        escrow.unfreeze(o.id, o.t, o.s);
    }

    // ================================================================================= k-of-n oracles

    function test_k2_attestationAcrossTwoTransactions() public {
        vm.prank(admin);
        escrow.setThreshold(2);
        O memory o = _fund(77_777);
        _assertEq(o.t.threshold, 2, "threshold locked at funding");

        // tx 1: oracle 0's signed attestation, relayed by anyone: counted, not enough.
        ITradeGuardEscrow.AttestItem[] memory it1 = _item(o, 1, _one(oraclePk[0]));
        vm.prank(stranger);
        _assertEq(escrow.attest(it1, true), 0, "one of two");
        _assertEq(escrow.partialAttestations(_key(o.id, o.t.buyer), 1), 1, "oracle 0 recorded");
        _check(o); // still FUNDED

        // The same oracle again does not count twice.
        ITradeGuardEscrow.AttestItem[] memory it2 = _item(o, 1, _one(oraclePk[0]));
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(ITradeGuardEscrow.DuplicateAttestation.selector, o.id, oracle[0]));
        escrow.attest(it2, true);

        // Threshold changes after funding do not apply to this order.
        vm.prank(admin);
        escrow.setThreshold(3);

        // tx 2: oracle 1 calls directly (empty signature): threshold met, SHIPPED.
        ITradeGuardEscrow.AttestItem[] memory items = _item(o, 1, _one(oraclePk[1]));
        items[0].attestations[0].signature = "";
        vm.warp(block.timestamp + 1 hours);
        vm.prank(oracle[1]);
        _assertEq(escrow.attest(items, true), 1, "second oracle completes k = 2");
        o.s = _withStatus(o.s, SHIPPED);
        _check(o);
        _assertEq(escrow.partialAttestations(_key(o.id, o.t.buyer), 1), 0, "partial cleared");
    }

    function test_removedOracle_partialAttestationNoLongerCounts() public {
        vm.prank(admin);
        escrow.setThreshold(2);
        O memory o = _fund(10_000);
        ITradeGuardEscrow.AttestItem[] memory it3 = _item(o, 2, _one(oraclePk[0]));
        vm.prank(stranger);
        escrow.attest(it3, true);
        vm.prank(admin);
        escrow.removeOracle(oracle[0]);

        // Oracle 1 would complete k = 2 with oracle 0's attestation; it no longer counts.
        ITradeGuardEscrow.AttestItem[] memory it4 = _item(o, 2, _one(oraclePk[1]));
        vm.prank(stranger);
        _assertEq(escrow.attest(it4, true), 0, "removed oracle does not count");
        _assertEq(escrow.partialAttestations(_key(o.id, o.t.buyer), 2), 3, "both bits kept");
        _check(o);

        // The removed oracle cannot attest any more.
        ITradeGuardEscrow.AttestItem[] memory it5 = _item(o, 2, _one(oraclePk[0]));
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(ITradeGuardEscrow.NotOracle.selector, oracle[0]));
        escrow.attest(it5, true);

        // A third, still registered oracle completes k = 2 with oracle 1: DELIVERED, hold window starts.
        ITradeGuardEscrow.AttestItem[] memory it6 = _item(o, 2, _one(oraclePk[2]));
        vm.prank(stranger);
        _assertEq(escrow.attest(it6, true), 1, "oracles 1 and 2");
        o.s = _withAnchor(_withStatus(o.s, DELIVERED), block.timestamp + HOLD);
        _check(o);
        _assertEq(escrow.partialAttestations(_key(o.id, o.t.buyer), 2), 0, "partial cleared");
    }

    function test_removedOracle_reAddedDoesNotCountForOldOrders() public {
        vm.prank(admin);
        escrow.setThreshold(2);
        O memory o = _fund(10_000);
        ITradeGuardEscrow.AttestItem[] memory it7 = _item(o, 1, _one(oraclePk[0]));
        vm.prank(stranger);
        escrow.attest(it7, true);
        vm.startPrank(admin);
        escrow.removeOracle(oracle[0]);
        escrow.addOracle(oracle[0]);
        vm.stopPrank();
        vm.warp(block.timestamp + ROLE_DELAY);
        _assertEq(escrow.oracleInfo(oracle[0]).index, 3, "fresh index");
        ITradeGuardEscrow.AttestItem[] memory it8 = _item(o, 1, _one(oraclePk[0]));
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(ITradeGuardEscrow.NotOracle.selector, oracle[0]));
        escrow.attest(it8, true);
        ITradeGuardEscrow.AttestItem[] memory it9 = _item(o, 1, _one(oraclePk[1]));
        vm.prank(stranger);
        _assertEq(escrow.attest(it9, true), 0, "still one short");
        ITradeGuardEscrow.AttestItem[] memory it10 = _item(o, 1, _one(oraclePk[2]));
        vm.prank(stranger);
        _assertEq(escrow.attest(it10, true), 1, "oracles 1 and 2 make k = 2");
        o.s = _withStatus(o.s, SHIPPED);
        _check(o);
    }

    function test_attest_signatureOfNonOracleRefused_andMalleableRefused() public {
        O memory o = _fund(10_000);
        ITradeGuardEscrow.AttestItem[] memory it11 = _item(o, 1, _one(STRANGER_PK));
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(ITradeGuardEscrow.NotOracle.selector, stranger));
        escrow.attest(it11, true);

        ITradeGuardEscrow.AttestItem[] memory items = _item(o, 1, _one(oraclePk[0]));
        bytes memory sig = items[0].attestations[0].signature;
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly {
            r := mload(add(sig, 32))
            s := mload(add(sig, 64))
            v := byte(0, mload(add(sig, 96)))
        }
        uint256 n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;
        items[0].attestations[0].signature = abi.encodePacked(r, bytes32(n - uint256(s)), v == 27 ? uint8(28) : uint8(27));
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(ITradeGuardEscrow.MalformedSignature.selector, uint8(3)));
        escrow.attest(items, true);

        // Non-strict: the entry is skipped, nothing moves.
        vm.prank(stranger);
        _assertEq(escrow.attest(items, false), 0, "skipped");
        _check(o);
    }

    // ============================================================================ hostile tokens

    function test_feeOnTransferToken_refusedAtFunding() public {
        FeeOnTransferToken fot = new FeeOnTransferToken();
        vm.prank(admin);
        escrow.setToken(address(fot), true);
        ITradeGuardEscrow.OrderAuthorization memory a = _auth(address(fot), buyer, seller, 1_000_000, 0, address(0));
        fot.mint(buyer, 1_000_000);
        vm.prank(buyer);
        fot.approve(address(escrow), type(uint256).max);
        ITradeGuardEscrow.OrderAuthorization[] memory auths = new ITradeGuardEscrow.OrderAuthorization[](1);
        auths[0] = a;
        bytes[] memory sigs = new bytes[](1);
        vm.prank(buyer); // buyer as the caller: no signature needed
        vm.expectRevert(
            abi.encodeWithSelector(ITradeGuardEscrow.TokenShortfall.selector, address(fot), 1_000_000, 990_000)
        );
        escrow.fund(auths, sigs, _noPermit());
        _assertEq(escrow.commitmentOf(a.orderId, a.buyer), bytes32(0), "no order recorded");
        _assertEq(fot.balanceOf(buyer), 1_000_000, "buyer keeps the money");
    }

    function test_blacklistedSeller_cannotBlockBuyerRefundsOrOtherSellers() public {
        BlacklistToken blt = new BlacklistToken();
        vm.prank(admin);
        escrow.setToken(address(blt), true);
        O memory a = _fundAs(address(blt), buyer, BUYER_PK, seller, 1_000_000, 1000, tax1); // blacklisted later
        O memory b = _fundAs(address(blt), buyer, BUYER_PK, seller2, 2_000_000, 1000, tax1);
        O memory c = _fundAs(address(blt), buyer, BUYER_PK, seller, 3_000_000, 0, address(0));
        _advance(a, 2);
        _advance(b, 2);
        blt.setBlacklisted(seller, true);

        // One batch releases both; the blacklisted seller's credit does not stop seller2's.
        vm.warp(block.timestamp + HOLD);
        ITradeGuardEscrow.OrderRef[] memory refs = new ITradeGuardEscrow.OrderRef[](2);
        refs[0] = _ref(a);
        refs[1] = _ref(b);
        vm.prank(stranger);
        _assertEq(escrow.release(refs, true), 2, "both released");
        (uint256 ca, uint256 ta, uint256 na) = _split(1_000_000, COMMISSION, 1000);
        (uint256 cb, uint256 tb, uint256 nb) = _split(2_000_000, COMMISSION, 1000);

        vm.prank(seller2);
        escrow.withdraw(address(blt), seller2, nb);
        _assertEq(blt.balanceOf(seller2), nb, "seller2 paid");
        vm.prank(treasury);
        escrow.withdraw(address(blt), treasury, ca + cb);
        vm.prank(tax1);
        escrow.withdraw(address(blt), tax1, ta + tb);

        // The blacklisted seller's own withdrawal fails and its credit stays intact.
        vm.prank(seller);
        vm.expectRevert(abi.encodeWithSelector(BlacklistToken.Blacklisted.selector, seller));
        escrow.withdraw(address(blt), seller, na);
        _assertEq(_credit(address(blt), seller), na, "credit kept");

        // Order c (same blacklisted seller) still refunds its buyer on timeout, triggered by anyone.
        vm.warp(c.t.shipBy + 1);
        vm.prank(stranger);
        escrow.timeoutRefund(c.id, c.t, c.s);
        vm.prank(buyer);
        escrow.withdraw(address(blt), buyer, 3_000_000);
        _assertEq(blt.balanceOf(buyer), 3_000_000, "buyer refunded");

        // Conservation: what is left is exactly the stuck seller's credit.
        _assertEq(blt.balanceOf(address(escrow)), na, "only the blacklisted credit remains");
    }

    function test_blacklistedBuyer_cannotBlockSellerOrOthers() public {
        BlacklistToken blt = new BlacklistToken();
        vm.prank(admin);
        escrow.setToken(address(blt), true);
        O memory a = _fundAs(address(blt), buyer, BUYER_PK, seller, 500_000, 0, address(0));
        address buyer2 = vm.addr(0xB0B2);
        O memory b = _fundAs(address(blt), buyer2, 0xB0B2, seller2, 700_000, 0, address(0));
        blt.setBlacklisted(buyer, true);
        vm.prank(seller);
        escrow.refundBySeller(a.id, a.t, a.s); // credited, not pushed: cannot revert on the blacklist
        _advance(b, 1);
        vm.prank(buyer2);
        escrow.submitBuyerDecision(b.id, b.t, b.s, 1, bytes32(0), 0, "", "");
        (, , uint256 nb) = _split(700_000, COMMISSION, 0);
        vm.prank(seller2);
        escrow.withdraw(address(blt), seller2, nb);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(BlacklistToken.Blacklisted.selector, buyer));
        escrow.withdraw(address(blt), buyer, 500_000);
        _assertEq(_credit(address(blt), buyer), 500_000, "refund credit kept for later");
    }

    function _reentrantSetup() internal returns (ReentrantToken rnt) {
        rnt = new ReentrantToken();
        vm.prank(admin);
        escrow.setToken(address(rnt), true);
        rnt.mint(address(rnt), 5_000_000);
        vm.prank(address(rnt));
        rnt.approve(address(escrow), type(uint256).max);
    }

    /// @dev A fund call the token itself could make as a buyer (no signature needed).
    function _tokenFundCall(ReentrantToken rnt) internal returns (bytes memory) {
        ITradeGuardEscrow.OrderAuthorization[] memory auths = new ITradeGuardEscrow.OrderAuthorization[](1);
        auths[0] = _auth(address(rnt), address(rnt), seller2, 1_000_000, 0, address(0));
        bytes[] memory sigs = new bytes[](1);
        return abi.encodeCall(ITradeGuardEscrow.fund, (auths, sigs, _noPermit()));
    }

    function test_reentrantToken_cannotReenterFund() public {
        ReentrantToken rnt = _reentrantSetup();
        bytes memory nested = _tokenFundCall(rnt);
        rnt.configure(address(escrow), nested, ReentrantToken.Hook.OnTransferFrom);

        O memory o = _fundAs(address(rnt), buyer, BUYER_PK, seller, 2_000_000, 0, address(0));
        _assertEq(rnt.reentryCount(), 1, "hook fired during the pull");
        _assertTrue(!rnt.lastCallSucceeded(), "nested fund refused");
        _assertEq(keccak256(rnt.lastReturnData()), keccak256(abi.encodeWithSelector(ReentrancyGuardTransient.ReentrancyGuardReentrantCall.selector)), "reason");
        _assertEq(rnt.balanceOf(address(escrow)), 2_000_000, "only the outer order was paid");
        _check(o);

        // The nested call was valid in itself: outside the pull it succeeds.
        rnt.configure(address(0), "", ReentrantToken.Hook.None);
        vm.prank(address(rnt));
        (bool ok,) = address(escrow).call(nested);
        _assertTrue(ok, "same call outside reentrancy works");
        _assertEq(rnt.balanceOf(address(escrow)), 3_000_000, "second order paid");
    }

    function test_reentrantToken_cannotReenterWithdraw() public {
        ReentrantToken rnt = _reentrantSetup();
        // The token is the seller of a released order, so a nested withdraw of its own credit would be valid.
        O memory sold = _fundAs(address(rnt), buyer, BUYER_PK, address(rnt), 1_000_000, 0, address(0));
        _advance(sold, 1);
        vm.prank(buyer);
        escrow.submitBuyerDecision(sold.id, sold.t, sold.s, 1, bytes32(0), 0, "", "");
        (uint256 c,, uint256 net) = _split(1_000_000, COMMISSION, 0);
        _assertEq(_credit(address(rnt), address(rnt)), net, "token holds a credit");

        rnt.configure(
            address(escrow),
            abi.encodeCall(ITradeGuardEscrow.withdraw, (address(rnt), address(rnt), net)),
            ReentrantToken.Hook.OnTransfer
        );
        vm.prank(treasury);
        escrow.withdraw(address(rnt), treasury, c);
        _assertTrue(!rnt.lastCallSucceeded(), "nested withdraw refused");
        _assertEq(keccak256(rnt.lastReturnData()), keccak256(abi.encodeWithSelector(ReentrancyGuardTransient.ReentrancyGuardReentrantCall.selector)), "reason");
        _assertEq(rnt.balanceOf(treasury), c, "outer withdrawal paid");
        _assertEq(_credit(address(rnt), address(rnt)), net, "token credit untouched");

        // Nor can it fund from inside a withdrawal.
        rnt.configure(address(escrow), _tokenFundCall(rnt), ReentrantToken.Hook.OnTransfer);
        vm.prank(address(rnt));
        escrow.withdraw(address(rnt), address(rnt), net);
        _assertTrue(!rnt.lastCallSucceeded(), "nested fund refused");
        _assertEq(rnt.balanceOf(address(escrow)), 0, "escrow empty, nothing funded");
    }

    // ================================================================================== timer edges

    function test_holdWindowBoundary_releaseAndDispute() public {
        O memory o = _fund(10_000);
        O memory p = _fund(20_000);
        _advance(o, 2);
        _advance(p, 2);
        uint256 releaseAt = _releaseAt(o);
        vm.warp(releaseAt - 1);
        vm.expectRevert(abi.encodeWithSelector(ITradeGuardEscrow.DeadlineNotReached.selector, o.id, releaseAt));
        _releaseOne(o, true);
        _dispute(p); // one second before releaseAt the buyer can still dispute
        vm.warp(releaseAt);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(ITradeGuardEscrow.DeadlinePassed.selector, o.id, releaseAt));
        escrow.submitBuyerDecision(o.id, o.t, o.s, 2, bytes32(0), 0, "", "");
        _assertEq(_releaseOne(o, true), 1, "released exactly at releaseAt");
    }

    function test_timeouts_exactBoundaries() public {
        O memory f = _fund(1000);
        O memory s = _fund(2000);
        _advance(s, 1);
        O memory d = _fund(3000);
        O memory r = _fund(4000);
        _dispute(d);
        _dispute(r);
        bytes32 answer = sha256("seller answer");
        vm.prank(seller);
        escrow.submitEvidence(r.id, r.t, r.s, seller, answer, 0, "");
        r.s = r.s | (1 << 8);
        _check(r);
        uint256 respond = _anchor(d.s) + RESPONSE;
        uint256 arb = _anchor(r.s) + ARBITRATION;

        vm.warp(f.t.shipBy);
        vm.expectRevert(abi.encodeWithSelector(ITradeGuardEscrow.DeadlineNotReached.selector, f.id, uint256(f.t.shipBy)));
        escrow.timeoutRefund(f.id, f.t, f.s);
        vm.warp(f.t.shipBy + 1);
        escrow.timeoutRefund(f.id, f.t, f.s);

        vm.warp(respond);
        vm.expectRevert(abi.encodeWithSelector(ITradeGuardEscrow.DeadlineNotReached.selector, d.id, respond));
        escrow.timeoutRefund(d.id, d.t, d.s);
        vm.warp(respond + 1);
        escrow.timeoutRefund(d.id, d.t, d.s);
        // A responded dispute waits for the arbitration deadline.
        vm.expectRevert(abi.encodeWithSelector(ITradeGuardEscrow.DeadlineNotReached.selector, r.id, arb));
        escrow.timeoutRefund(r.id, r.t, r.s);

        vm.warp(s.t.deliverBy);
        vm.expectRevert(abi.encodeWithSelector(ITradeGuardEscrow.DeadlineNotReached.selector, s.id, uint256(s.t.deliverBy)));
        escrow.timeoutRefund(s.id, s.t, s.s);
        vm.warp(s.t.deliverBy + 1);
        escrow.timeoutRefund(s.id, s.t, s.s);

        vm.warp(arb);
        vm.prank(arbitrator); // the arbitrator may still rule at the deadline itself
        escrow.submitRuling(r.id, r.t, r.s, 10_000, keccak256("late but in time"), 0, "");
        _assertEq(_credit(address(usd), buyer), 1000 + 2000 + 3000 + 4000, "all four refunded");
    }

    /// @dev The platform key alone cannot move escrowed money (SPEC §1).
    function test_adminAloneCannotMoveMoney() public {
        O memory o = _fund(10_000);
        _advance(o, 1);
        vm.startPrank(admin);
        vm.expectRevert(abi.encodeWithSelector(ITradeGuardEscrow.Unauthorized.selector, admin));
        escrow.submitBuyerDecision(o.id, o.t, o.s, 1, bytes32(0), 0, "", "");
        vm.expectRevert(abi.encodeWithSelector(ITradeGuardEscrow.Unauthorized.selector, admin));
        escrow.refundBySeller(o.id, o.t, o.s);
        vm.expectRevert(abi.encodeWithSelector(ITradeGuardEscrow.NotArbitrator.selector, admin));
        escrow.submitRuling(o.id, o.t, o.s, 0, keccak256("x"), 0, "");
        vm.expectRevert(abi.encodeWithSelector(ITradeGuardEscrow.DeadlineNotReached.selector, o.id, uint256(o.t.deliverBy)));
        escrow.timeoutRefund(o.id, o.t, o.s);
        // An oracle added now does not count for this order, even after its delay.
        escrow.addOracle(admin);
        vm.stopPrank();
        vm.warp(block.timestamp + ROLE_DELAY);
        ITradeGuardEscrow.AttestItem[] memory items = _item(o, 2, _one(ADMIN_PK));
        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(ITradeGuardEscrow.NotOracle.selector, admin));
        escrow.attest(items, true);
        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(ITradeGuardEscrow.InsufficientCredit.selector, address(usd), admin, 0, 10_000));
        escrow.withdraw(address(usd), admin, 10_000);
    }
}
