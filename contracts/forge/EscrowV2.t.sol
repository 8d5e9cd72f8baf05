// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {IAccessControlDefaultAdminRules} from
    "@openzeppelin/contracts/access/extensions/IAccessControlDefaultAdminRules.sol";

import {IArbitrator} from "../src/interfaces/IArbitrator.sol";
import {ITradeGuardEscrow} from "../src/interfaces/ITradeGuardEscrow.sol";
import {CentralizedArbitrator} from "../test/CentralizedArbitrator.sol";
import {EscrowTestBase, Vm} from "./EscrowTestBase.sol";

/// @title Escrow v2: ERC-792 arbitration, settings locked at funding, admin rules, the smaller holes
/// @notice Each test names the rule it proves and asserts the exact custom error where a call must fail.
contract EscrowV2Test is EscrowTestBase {
    /// @dev An order as this test knows it.
    struct O {
        bytes32 id;
        ITradeGuardEscrow.Terms t;
        uint256 s;
    }

    uint32 internal constant HOLD = 3 days;
    uint256 internal constant AMOUNT = 1_000_000;
    uint256 internal _nonce;

    function setUp() public {
        _deployFixture();
    }

    // ======================================================================================== helpers

    function _noPermit() internal pure returns (ITradeGuardEscrow.Permit memory p) {}

    function _auth(address b, address sel, address arb, bytes32 extraHash)
        internal
        returns (ITradeGuardEscrow.OrderAuthorization memory a)
    {
        a = ITradeGuardEscrow.OrderAuthorization({
            orderId: _orderId(sel, string.concat("V2-", _str(++_nonce))),
            buyer: b,
            seller: sel,
            token: address(usd),
            amount: AMOUNT,
            commissionBps: escrow.config().commissionBps,
            taxBps: 1000,
            taxRecipient: tax1,
            shipBy: uint64(block.timestamp + 7 days),
            deliverBy: uint64(block.timestamp + 21 days),
            holdSeconds: HOLD,
            validUntil: uint64(block.timestamp + 1 hours),
            arbitrator: arb,
            arbitratorExtraDataHash: extraHash
        });
    }

    function _terms(ITradeGuardEscrow.OrderAuthorization memory a)
        internal
        view
        returns (ITradeGuardEscrow.Terms memory)
    {
        ITradeGuardEscrow.Config memory c = escrow.config();
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
            threshold: c.threshold,
            responseSeconds: c.responseSeconds,
            arbitrationSeconds: c.arbitrationSeconds,
            fundedAt: uint64(block.timestamp),
            arbitrator: a.arbitrator,
            arbitratorExtraDataHash: a.arbitratorExtraDataHash,
            metaEvidenceId: c.metaEvidenceId
        });
    }

    /// @dev Funds `a` relayed by a stranger with `pk`'s signature.
    function _fundAuth(ITradeGuardEscrow.OrderAuthorization memory a, uint256 pk) internal returns (O memory o) {
        usd.faucet(a.buyer, a.amount);
        vm.prank(a.buyer);
        usd.approve(address(escrow), type(uint256).max);
        o.t = _terms(a);
        ITradeGuardEscrow.OrderAuthorization[] memory auths = new ITradeGuardEscrow.OrderAuthorization[](1);
        auths[0] = a;
        bytes[] memory sigs = new bytes[](1);
        sigs[0] = _sign(pk, _authHash(a));
        vm.prank(stranger);
        escrow.fund(auths, sigs, _noPermit());
        o.id = a.orderId;
        o.s = _fundedState(a.buyer);
        _check(o);
    }

    function _fundPlatform() internal returns (O memory) {
        return _fundAuth(_auth(buyer, seller, address(0), bytes32(0)), BUYER_PK);
    }

    function _fundCourt() internal returns (O memory) {
        return _fundAuth(_auth(buyer, seller, address(court), keccak256(COURT_EXTRA)), BUYER_PK);
    }

    function _check(O memory o) internal view {
        _assertEq(escrow.commitmentOf(o.id, o.t.buyer), _commitment(o.t, o.s), "commitment");
    }

    /// @dev The buyer opens a dispute itself, paying `value`; returns the arbitrator's dispute id (ERC-792).
    function _dispute(O memory o, uint256 value, bytes memory extra) internal returns (uint256 disputeID) {
        vm.deal(o.t.buyer, value);
        vm.prank(o.t.buyer);
        escrow.submitBuyerDecision{value: value}(o.id, o.t, o.s, 2, bytes32(0), 0, "", extra);
        o.s = _withAnchor(_withStatus(o.s, DISPUTED), block.timestamp);
        _check(o);
        disputeID = court.disputeCount() == 0 ? 0 : court.disputeCount() - 1;
    }

    function _execute(O memory o) internal {
        vm.prank(stranger);
        escrow.executeRuling(o.id, o.t, o.s);
        o.s = _withStatus(o.s, RESOLVED);
        _check(o);
    }

    function _deliver(O memory o) internal {
        ITradeGuardEscrow.AttestItem[] memory items = new ITradeGuardEscrow.AttestItem[](1);
        items[0].order = ITradeGuardEscrow.OrderRef({orderId: o.id, terms: o.t, state: o.s});
        items[0].attestations = new ITradeGuardEscrow.Attestation[](1);
        uint64 eventTime = uint64(block.timestamp - 1);
        bytes32 tracking = keccak256("DHL:JD1");
        bytes32 ev = sha256(abi.encode(o.id));
        items[0].attestations[0] = _attestation(oraclePk[0], o.id, 2, eventTime, tracking, ev);
        vm.prank(stranger);
        _assertEq(escrow.attest(items, true), 1, "delivered");
        o.s = _withAnchor(_withStatus(o.s, DELIVERED), block.timestamp + o.t.holdSeconds);
        _check(o);
    }

    function _release(O memory o) internal {
        ITradeGuardEscrow.OrderRef[] memory refs = new ITradeGuardEscrow.OrderRef[](1);
        refs[0] = ITradeGuardEscrow.OrderRef({orderId: o.id, terms: o.t, state: o.s});
        _assertEq(escrow.release(refs, true), 1, "released");
        o.s = _withStatus(o.s, RELEASED);
        _check(o);
    }

    function _copy(ITradeGuardEscrow.OrderAuthorization memory a)
        internal
        pure
        returns (ITradeGuardEscrow.OrderAuthorization memory)
    {
        return abi.decode(abi.encode(a), (ITradeGuardEscrow.OrderAuthorization));
    }

    function _credit(address who) internal view returns (uint256) {
        return escrow.creditOf(address(usd), who);
    }

    function _expectCustom(bytes memory err) internal {
        vm.expectRevert(err);
    }

    // =================================================================================== ERC-792

    /// @notice SPEC §4.1: every ruling 0..10 maps to its buyer share and the rest is settled as in §3; the fee
    ///         the buyer paid goes to the arbitrator and none stays in the escrow.
    function test_erc792_everyRulingMapsToItsShare() public {
        for (uint256 r; r <= 10; ++r) {
            O memory o = _fundCourt();
            uint256 before = address(court).balance;
            uint256 id = _dispute(o, COURT_FEE, COURT_EXTRA);
            _assertEq(address(court).balance, before + COURT_FEE, "fee paid to the arbitrator");
            _assertEq(address(escrow).balance, 0, "escrow keeps no native currency");
            vm.prank(courtOwner);
            court.giveRuling(id, r);
            (bytes32 key, uint256 ruled) = escrow.disputeOf(address(court), id);
            _assertEq(key, _key(o.id, buyer), "dispute linked to the order");
            _assertEq(ruled, r + 1, "ruling recorded");
            uint256[4] memory b = [_credit(buyer), _credit(treasury), _credit(tax1), _credit(seller)];
            _execute(o);
            uint16 share = _rulingShare(r);
            uint256 refund = AMOUNT * share / BPS;
            (uint256 c, uint256 t, uint256 n) = _split(AMOUNT - refund, o.t.commissionBps, o.t.taxBps);
            _assertEq(_credit(buyer) - b[0], refund, "buyer share");
            _assertEq(_credit(treasury) - b[1], c, "commission");
            _assertEq(_credit(tax1) - b[2], t, "tax");
            _assertEq(_credit(seller) - b[3], n, "seller net");
        }
        _assertEq(_rulingShare(2), 1111, "r=2");
        _assertEq(_rulingShare(9), 8888, "r=9");
    }

    /// @notice The ERC-1497 Dispute event names the order's arbitrator, its dispute id, the meta-evidence locked
    ///         at funding and the order as evidence group; Evidence carries the same arbitrator and group.
    function test_erc792_disputeAndEvidenceEventsLinkedToTheOrder() public {
        O memory o = _fundCourt();
        vm.recordLogs();
        uint256 id = _dispute(o, COURT_FEE, COURT_EXTRA);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        bool seen;
        for (uint256 k; k < logs.length; ++k) {
            if (logs[k].emitter == address(escrow) && logs[k].topics[0] == ITradeGuardEscrow.Dispute.selector) {
                _assertEq(logs[k].topics[1], bytes32(uint256(uint160(address(court)))), "Dispute arbitrator");
                _assertEq(uint256(logs[k].topics[2]), id, "Dispute id");
                (uint256 meta, uint256 group) = abi.decode(logs[k].data, (uint256, uint256));
                _assertEq(meta, o.t.metaEvidenceId, "meta-evidence id");
                _assertEq(group, uint256(o.id), "evidence group = order id");
                seen = true;
            }
        }
        _assertTrue(seen, "Dispute event");
        bytes32 proof = sha256("proof");
        vm.recordLogs();
        vm.prank(seller);
        escrow.submitEvidence(o.id, o.t, o.s, seller, proof, 0, "");
        logs = vm.getRecordedLogs();
        seen = false;
        for (uint256 k; k < logs.length; ++k) {
            if (logs[k].emitter == address(escrow) && logs[k].topics[0] == ITradeGuardEscrow.Evidence.selector) {
                _assertEq(logs[k].topics[1], bytes32(uint256(uint160(address(court)))), "Evidence arbitrator");
                _assertEq(uint256(logs[k].topics[2]), uint256(o.id), "Evidence group");
                _assertEq(logs[k].topics[3], bytes32(uint256(uint160(seller))), "Evidence party");
                seen = true;
            }
        }
        _assertTrue(seen, "Evidence event");
    }

    /// @notice Platform arbitration emits no ERC-1497 event (SPEC §4.1 scopes them to ERC-792 orders): the
    ///         dispute and both sides' evidence are DisputeOpened and EvidenceSubmitted.
    function test_platform_disputeAndEvidenceEmitNoErc1497Events() public {
        O memory o = _fundPlatform();
        (bytes32 photo, bytes32 proof) = (sha256("photo"), sha256("proof"));
        vm.recordLogs();
        vm.prank(buyer);
        escrow.submitBuyerDecision(o.id, o.t, o.s, 2, photo, 0, "", "");
        o.s = _withAnchor(_withStatus(o.s, DISPUTED), block.timestamp);
        _check(o);
        vm.prank(seller);
        escrow.submitEvidence(o.id, o.t, o.s, seller, proof, 0, "");
        Vm.Log[] memory logs = vm.getRecordedLogs();
        uint256 opened;
        uint256 submitted;
        for (uint256 k; k < logs.length; ++k) {
            bytes32 topic = logs[k].topics[0];
            _assertTrue(
                topic != ITradeGuardEscrow.Dispute.selector && topic != ITradeGuardEscrow.Evidence.selector,
                "no ERC-1497 event"
            );
            if (topic == ITradeGuardEscrow.DisputeOpened.selector) ++opened;
            if (topic == ITradeGuardEscrow.EvidenceSubmitted.selector) ++submitted;
        }
        _assertEq(opened, 1, "DisputeOpened");
        _assertEq(submitted, 1, "EvidenceSubmitted");
    }

    /// @notice Only the order's own arbitrator may call rule(), and only once.
    function test_erc792_ruleOnlyByTheOrdersArbitrator_once() public {
        O memory o = _fundCourt();
        uint256 id = _dispute(o, COURT_FEE, COURT_EXTRA);
        // A stranger, and another appointed ERC-792 arbitrator, find no such dispute.
        _expectCustom(abi.encodeWithSelector(ITradeGuardEscrow.UnknownDispute.selector, stranger, id));
        vm.prank(stranger);
        escrow.rule(id, 10);
        CentralizedArbitrator other = new CentralizedArbitrator(stranger, 0, 0, 0);
        vm.prank(admin);
        escrow.addArbitrator(address(other));
        _expectCustom(abi.encodeWithSelector(ITradeGuardEscrow.UnknownDispute.selector, address(other), id));
        vm.prank(address(other));
        escrow.rule(id, 10);
        // The platform arbitrator's Ruling does not apply to an order with an ERC-792 arbitrator.
        _expectCustom(abi.encodeWithSelector(ITradeGuardEscrow.NotArbitrator.selector, arbitrator));
        vm.prank(arbitrator);
        escrow.submitRuling(o.id, o.t, o.s, 10_000, keccak256("x"), 0, "");
        // Out-of-range rulings are refused; the arbitrator's own ruling counts once.
        _expectCustom(abi.encodeWithSelector(ITradeGuardEscrow.InvalidRuling.selector, 11));
        vm.prank(address(court));
        escrow.rule(id, 11);
        vm.prank(address(court));
        escrow.rule(id, 4);
        _expectCustom(abi.encodeWithSelector(ITradeGuardEscrow.AlreadyRuled.selector, _key(o.id, buyer), id));
        vm.prank(address(court));
        escrow.rule(id, 10);
        _execute(o);
        _assertEq(_credit(buyer), AMOUNT * 3333 / BPS, "ruling 4 = 3333 bps");
    }

    /// @notice createDispute gets exactly the signed extraData and the caller's payment; underpaying fails in
    ///         the arbitrator; a platform order takes no native currency.
    function test_erc792_extraDataAndPayment() public {
        O memory o = _fundCourt();
        _expectCustom(
            abi.encodeWithSelector(
                ITradeGuardEscrow.ExtraDataMismatch.selector, keccak256(COURT_EXTRA), keccak256(hex"01")
            )
        );
        vm.deal(buyer, COURT_FEE);
        vm.prank(buyer);
        escrow.submitBuyerDecision{value: COURT_FEE}(o.id, o.t, o.s, 2, bytes32(0), 0, "", hex"01");
        _expectCustom(
            abi.encodeWithSelector(CentralizedArbitrator.InsufficientPayment.selector, COURT_FEE - 1, COURT_FEE)
        );
        vm.deal(buyer, COURT_FEE);
        vm.prank(buyer);
        escrow.submitBuyerDecision{value: COURT_FEE - 1}(o.id, o.t, o.s, 2, bytes32(0), 0, "", COURT_EXTRA);
        O memory p = _fundPlatform();
        _expectCustom(abi.encodeWithSelector(ITradeGuardEscrow.UnexpectedValue.selector, 1));
        vm.deal(buyer, 1);
        vm.prank(buyer);
        escrow.submitBuyerDecision{value: 1}(p.id, p.t, p.s, 2, bytes32(0), 0, "", "");
        // A relayed (signed) dispute opening is paid by whoever relays it.
        uint64 validUntil = uint64(block.timestamp + 1 hours);
        bytes memory sig = _sign(BUYER_PK, keccak256(abi.encode(BD_TYPEHASH, o.id, uint8(2), bytes32(0), validUntil)));
        vm.deal(stranger, COURT_FEE);
        vm.prank(stranger);
        escrow.submitBuyerDecision{value: COURT_FEE}(o.id, o.t, o.s, 2, bytes32(0), validUntil, sig, COURT_EXTRA);
        _assertEq(stranger.balance, 0, "relayer paid the fee");
        _assertEq(court.disputeCount(), 1, "one dispute");
    }

    /// @notice A recorded ruling wins over the dispute timeouts and is executed even after the deadline; no
    ///         ruling, no execution.
    function test_erc792_rulingWinsOverTimeouts() public {
        O memory o = _fundCourt();
        uint256 id = _dispute(o, COURT_FEE, COURT_EXTRA);
        _expectCustom(abi.encodeWithSelector(ITradeGuardEscrow.NoRuling.selector, o.id));
        escrow.executeRuling(o.id, o.t, o.s);
        vm.prank(courtOwner);
        court.giveRuling(id, 1);
        vm.warp(block.timestamp + ARBITRATION + 1);
        _expectCustom(abi.encodeWithSelector(ITradeGuardEscrow.InvalidStatus.selector, o.id, DISPUTED));
        escrow.timeoutRefund(o.id, o.t, o.s);
        _execute(o);
        _assertEq(_credit(buyer), 0, "ruling 1 = full release");
    }

    /// @notice Without a ruling, the dispute timeouts still end the order (no trap).
    function test_erc792_noRuling_timeoutRefunds() public {
        O memory o = _fundCourt();
        _dispute(o, COURT_FEE, COURT_EXTRA);
        vm.warp(block.timestamp + RESPONSE + 1);
        escrow.timeoutRefund(o.id, o.t, o.s);
        _assertEq(_credit(buyer), AMOUNT, "refunded");
    }

    /// @notice The ERC-792 arbitrator must be appointed and active when the order is funded, and the extraData
    ///         hash must be zero without one.
    function test_erc792_arbitratorMustBeActiveAtFunding() public {
        CentralizedArbitrator late = new CentralizedArbitrator(courtOwner, 0, 0, 0);
        ITradeGuardEscrow.OrderAuthorization memory a = _auth(buyer, seller, address(late), bytes32(0));
        _fundExpect(a, abi.encodeWithSelector(ITradeGuardEscrow.InvalidArbitration.selector, address(late), bytes32(0)));
        vm.prank(admin);
        escrow.addArbitrator(address(late));
        _fundExpect(a, abi.encodeWithSelector(ITradeGuardEscrow.InvalidArbitration.selector, address(late), bytes32(0)));
        a = _auth(buyer, seller, address(0), keccak256("x"));
        _fundExpect(a, abi.encodeWithSelector(ITradeGuardEscrow.InvalidArbitration.selector, address(0), keccak256("x")));
        vm.warp(block.timestamp + ROLE_DELAY);
        _fundAuth(_auth(buyer, seller, address(late), bytes32(0)), BUYER_PK);
    }

    function _fundExpect(ITradeGuardEscrow.OrderAuthorization memory a, bytes memory err) internal {
        usd.faucet(a.buyer, a.amount);
        vm.prank(a.buyer);
        usd.approve(address(escrow), type(uint256).max);
        ITradeGuardEscrow.OrderAuthorization[] memory auths = new ITradeGuardEscrow.OrderAuthorization[](1);
        auths[0] = a;
        bytes[] memory sigs = new bytes[](1);
        sigs[0] = _sign(BUYER_PK, _authHash(a));
        vm.expectRevert(err);
        vm.prank(stranger);
        escrow.fund(auths, sigs, _noPermit());
    }

    // ================================================================== settings locked at funding

    /// @notice Locked: an ERC-792 arbitrator removed after funding still decides the orders that signed it.
    function test_locked_erc792ArbitratorRemovedAfterFunding() public {
        O memory o = _fundCourt();
        vm.prank(admin);
        escrow.removeArbitrator(address(court));
        uint256 id = _dispute(o, COURT_FEE, COURT_EXTRA);
        vm.prank(courtOwner);
        court.giveRuling(id, 10);
        _execute(o);
        _assertEq(_credit(buyer), AMOUNT, "full refund by the signed arbitrator");
    }

    /// @notice Bound to funding: a platform arbitrator appointed after an order was funded cannot rule on it,
    ///         even once its delay has passed; it can rule on orders funded after it became active.
    function test_locked_platformArbitratorAppointedAfterFunding() public {
        O memory o = _fundPlatform();
        address late = vm.addr(0x1A7E);
        vm.prank(admin);
        escrow.addArbitrator(late);
        vm.warp(block.timestamp + ROLE_DELAY);
        vm.prank(buyer);
        escrow.submitBuyerDecision(o.id, o.t, o.s, 2, bytes32(0), 0, "", "");
        o.s = _withAnchor(_withStatus(o.s, DISPUTED), block.timestamp);
        _expectCustom(abi.encodeWithSelector(ITradeGuardEscrow.NotArbitrator.selector, late));
        vm.prank(late);
        escrow.submitRuling(o.id, o.t, o.s, 10_000, keccak256("r"), 0, "");
        // The one appointed before funding may; the late one may on an order funded after it became active.
        vm.prank(arbitrator);
        escrow.submitRuling(o.id, o.t, o.s, 0, keccak256("r"), 0, "");
        O memory p = _fundPlatform();
        vm.prank(buyer);
        escrow.submitBuyerDecision(p.id, p.t, p.s, 2, bytes32(0), 0, "", "");
        p.s = _withAnchor(_withStatus(p.s, DISPUTED), block.timestamp);
        vm.prank(late);
        escrow.submitRuling(p.id, p.t, p.s, 10_000, keccak256("r"), 0, "");
    }

    /// @notice Locked: a commission change after funding does not touch the order's commission.
    function test_locked_commission() public {
        O memory o = _fundPlatform();
        vm.prank(admin);
        escrow.setCommission(3000);
        _deliver(o);
        vm.warp(block.timestamp + HOLD);
        _release(o);
        _assertEq(_credit(treasury), AMOUNT * COMMISSION / BPS, "commission of funding time");
    }

    /// @notice Locked: removing the corridor's tax cap after funding does not touch the order's tax.
    function test_locked_taxCorridor() public {
        O memory o = _fundPlatform();
        vm.prank(admin);
        escrow.setTaxRecipient(tax1, 0);
        _deliver(o);
        vm.warp(block.timestamp + HOLD);
        _release(o);
        _assertEq(_credit(tax1), AMOUNT * 1000 / BPS, "tax of funding time");
    }

    /// @notice Locked: disallowing the token after funding blocks neither the release nor the payout.
    function test_locked_tokenAllowlist() public {
        O memory o = _fundPlatform();
        vm.prank(admin);
        escrow.setToken(address(usd), false);
        _deliver(o);
        vm.warp(block.timestamp + HOLD);
        _release(o);
        uint256 net = _credit(seller);
        vm.prank(seller);
        escrow.withdraw(address(usd), seller, net);
        _assertEq(usd.balanceOf(seller), net, "paid out");
    }

    /// @notice Locked: raising the oracle threshold after funding leaves the order at its k = 1.
    function test_locked_threshold() public {
        O memory o = _fundPlatform();
        vm.prank(admin);
        escrow.setThreshold(3);
        _deliver(o); // one oracle suffices
    }

    /// @notice Locked: new dispute windows apply to new orders only; the order keeps its response deadline.
    function test_locked_disputeWindows() public {
        O memory o = _fundPlatform();
        vm.prank(admin);
        escrow.setDisputeWindows(RESPONSE * 2, ARBITRATION * 2);
        vm.prank(buyer);
        escrow.submitBuyerDecision(o.id, o.t, o.s, 2, bytes32(0), 0, "", "");
        o.s = _withAnchor(_withStatus(o.s, DISPUTED), block.timestamp);
        vm.warp(block.timestamp + RESPONSE + 1);
        escrow.timeoutRefund(o.id, o.t, o.s);
        _assertEq(_credit(buyer), AMOUNT, "refunded at the original response deadline");
    }

    /// @notice Locked: new meta-evidence applies to orders funded later; the order's Dispute names its own.
    function test_locked_metaEvidence() public {
        O memory o = _fundCourt();
        vm.prank(admin);
        escrow.setMetaEvidence("ipfs://policy-v2");
        _assertEq(escrow.config().metaEvidenceId, 1, "new id");
        vm.recordLogs();
        _dispute(o, COURT_FEE, COURT_EXTRA);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        for (uint256 k; k < logs.length; ++k) {
            if (logs[k].topics[0] == ITradeGuardEscrow.Dispute.selector) {
                (uint256 meta,) = abi.decode(logs[k].data, (uint256, uint256));
                _assertEq(meta, 0, "meta-evidence of funding time");
                return;
            }
        }
        _fail("no Dispute event");
    }

    /// @notice Locked: pausing after funding stops only new orders; every exit of the order still works.
    function test_locked_pause() public {
        O memory o = _fundPlatform();
        vm.prank(admin);
        escrow.pause();
        _deliver(o);
        vm.warp(block.timestamp + HOLD);
        _release(o);
    }

    /// @notice Bound to funding: an oracle added after the order was funded does not count for it.
    function test_locked_oracleAddedAfterFunding() public {
        O memory o = _fundPlatform();
        uint256 latePk = 0x0A77;
        vm.prank(admin);
        escrow.addOracle(vm.addr(latePk));
        vm.warp(block.timestamp + ROLE_DELAY);
        ITradeGuardEscrow.AttestItem[] memory items = new ITradeGuardEscrow.AttestItem[](1);
        items[0].order = ITradeGuardEscrow.OrderRef({orderId: o.id, terms: o.t, state: o.s});
        items[0].attestations = new ITradeGuardEscrow.Attestation[](1);
        uint64 eventTime = uint64(block.timestamp - 1);
        items[0].attestations[0] = _attestation(latePk, o.id, 2, eventTime, bytes32(0), bytes32(0));
        _expectCustom(abi.encodeWithSelector(ITradeGuardEscrow.NotOracle.selector, vm.addr(latePk)));
        escrow.attest(items, true);
    }

    /// @notice The admin role moves in two steps with a delay (AccessControlDefaultAdminRules); it cannot be
    ///         granted directly.
    function test_adminRole_twoStepsWithDelay() public {
        address next = vm.addr(0xAD02);
        bytes32 role = escrow.DEFAULT_ADMIN_ROLE();
        _expectCustom(abi.encodeWithSelector(IAccessControlDefaultAdminRules.AccessControlEnforcedDefaultAdminRules.selector));
        vm.prank(admin);
        escrow.grantRole(role, next);
        vm.prank(admin);
        escrow.beginDefaultAdminTransfer(next);
        (, uint48 schedule) = escrow.pendingDefaultAdmin();
        _assertEq(schedule, block.timestamp + ROLE_DELAY, "transfer scheduled after the delay");
        _expectCustom(abi.encodeWithSelector(IAccessControlDefaultAdminRules.AccessControlEnforcedDefaultAdminDelay.selector, schedule));
        vm.prank(next);
        escrow.acceptDefaultAdminTransfer();
        vm.warp(schedule + 1);
        vm.prank(next);
        escrow.acceptDefaultAdminTransfer();
        _assertTrue(escrow.hasRole(role, next) && !escrow.hasRole(role, admin), "admin moved");
        _expectCustom(abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, admin, role));
        vm.prank(admin);
        escrow.setCommission(0);
    }

    // ============================================================================= smaller holes

    /// @notice withdraw(to = escrow) is refused: the tokens would be credited to nobody.
    function test_withdrawToEscrowRefused() public {
        O memory o = _fundPlatform();
        vm.prank(seller);
        escrow.refundBySeller(o.id, o.t, o.s);
        _expectCustom(abi.encodeWithSelector(ITradeGuardEscrow.InvalidRecipient.selector, address(escrow)));
        vm.prank(buyer);
        escrow.withdraw(address(usd), address(escrow), AMOUNT);
    }

    /// @notice Squatting is impossible: funding an order id first under another buyer creates another order
    ///         (another key); the real buyer's order funds and runs as if nothing happened.
    function test_orderIdSquatting_doesNotBlockTheBuyer() public {
        ITradeGuardEscrow.OrderAuthorization memory real = _auth(buyer, seller, address(0), bytes32(0));
        ITradeGuardEscrow.OrderAuthorization memory squat = _copy(real);
        squat.buyer = stranger;
        squat.seller = seller2;
        O memory s = _fundAuth(squat, STRANGER_PK);
        O memory o = _fundAuth(real, BUYER_PK);
        _assertTrue(s.id == o.id, "same order id");
        _assertTrue(_key(s.id, stranger) != _key(o.id, buyer), "different keys");
        _assertTrue(o.s >> 176 != s.s >> 176, "state words tell the buyers apart");
        _deliver(o);
        vm.warp(block.timestamp + HOLD);
        _release(o);
        // A second funding of the same (order id, buyer) is refused.
        _fundExpect(real, abi.encodeWithSelector(ITradeGuardEscrow.OrderAlreadyExists.selector, real.orderId));
    }

    /// @notice A seller's signed evidence relayed onto a squatter's order of the same id (with the same seller)
    ///         is used up there only: it still answers the real dispute.
    function test_evidenceSignature_notUsedUpByAnotherBuyersOrder() public {
        ITradeGuardEscrow.OrderAuthorization memory real = _auth(buyer, seller, address(0), bytes32(0));
        ITradeGuardEscrow.OrderAuthorization memory squat = _copy(real);
        squat.buyer = stranger;
        O memory s = _fundAuth(squat, STRANGER_PK);
        O memory o = _fundAuth(real, BUYER_PK);
        uint64 validUntil = uint64(block.timestamp + 1 hours);
        bytes32 ev = sha256("proof of delivery");
        bytes memory sig = _sign(SELLER_PK, keccak256(abi.encode(ES_TYPEHASH, o.id, seller, ev, validUntil)));
        escrow.submitEvidence(s.id, s.t, s.s, seller, ev, validUntil, sig);
        escrow.submitEvidence(o.id, o.t, o.s, seller, ev, validUntil, sig);
        _expectCustom(
            abi.encodeWithSelector(
                ITradeGuardEscrow.SignatureReplayed.selector,
                _digest(keccak256(abi.encode(ES_TYPEHASH, o.id, seller, ev, validUntil)))
            )
        );
        escrow.submitEvidence(o.id, o.t, o.s, seller, ev, validUntil, sig);
    }

    /// @notice Folded entry points: with an empty signature the caller is the party, and nobody else.
    function test_folded_emptySignatureMeansTheCaller() public {
        O memory o = _fundPlatform();
        bytes32 ev = sha256("x");
        _expectCustom(abi.encodeWithSelector(ITradeGuardEscrow.Unauthorized.selector, stranger));
        vm.prank(stranger);
        escrow.submitBuyerDecision(o.id, o.t, o.s, 2, bytes32(0), 0, "", "");
        _expectCustom(abi.encodeWithSelector(ITradeGuardEscrow.Unauthorized.selector, stranger));
        vm.prank(stranger);
        escrow.submitEvidence(o.id, o.t, o.s, seller, ev, 0, "");
        vm.prank(buyer);
        escrow.submitBuyerDecision(o.id, o.t, o.s, 2, bytes32(0), 0, "", "");
        o.s = _withAnchor(_withStatus(o.s, DISPUTED), block.timestamp);
        _expectCustom(abi.encodeWithSelector(ITradeGuardEscrow.NotArbitrator.selector, stranger));
        vm.prank(stranger);
        escrow.submitRuling(o.id, o.t, o.s, 5000, keccak256("r"), 0, "");
        vm.prank(seller);
        escrow.submitEvidence(o.id, o.t, o.s, seller, ev, 0, "");
        _assertTrue(escrow.creditOf(address(usd), buyer) == 0, "nothing moved");
    }

    /// @notice ERC-5267 and the domain: version "2".
    function test_domainVersion2() public view {
        (, string memory name, string memory version, uint256 chainId, address verifying,,) = escrow.eip712Domain();
        _assertTrue(keccak256(bytes(name)) == keccak256("TradeGuard"), "name");
        _assertTrue(keccak256(bytes(version)) == keccak256("2"), "version");
        _assertEq(chainId, block.chainid, "chain id");
        _assertTrue(verifying == address(escrow), "verifying contract");
        _assertTrue(
            escrow.ORDER_AUTHORIZATION_TYPEHASH() == OA_TYPEHASH, "OrderAuthorization type hash (14 fields)"
        );
    }

    /// @notice The test arbitrator follows ERC-792: cost views, status, appeals when it has a window.
    function test_centralizedArbitrator_followsErc792() public {
        CentralizedArbitrator appealable = new CentralizedArbitrator(courtOwner, 5, 7, 1 days);
        _assertEq(appealable.arbitrationCost(""), 5, "arbitrationCost");
        _assertEq(appealable.appealCost(0, ""), 7, "appealCost");
        uint256 id = appealable.createDispute{value: 5}(10, "");
        _assertTrue(appealable.disputeStatus(id) == IArbitrator.DisputeStatus.Waiting, "waiting");
        vm.prank(courtOwner);
        appealable.giveRuling(id, 3);
        _assertTrue(appealable.disputeStatus(id) == IArbitrator.DisputeStatus.Appealable, "appealable");
        (uint256 start, uint256 end) = appealable.appealPeriod(id);
        _assertEq(end - start, 1 days, "appeal period");
        appealable.appeal{value: 7}(id, "");
        _assertTrue(appealable.disputeStatus(id) == IArbitrator.DisputeStatus.Waiting, "back to waiting");
        _assertEq(appealable.currentRuling(id), 3, "current ruling");
    }
}
