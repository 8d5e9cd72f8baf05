// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Base64} from "@openzeppelin/contracts/utils/Base64.sol";
import {ITradeGuardEscrow} from "../src/interfaces/ITradeGuardEscrow.sol";
import {EscrowTestBase, Vm} from "./EscrowTestBase.sol";

/// @title Tests written for mutants that survived the rest of the suite (scripts/mutation_check.py)
/// @notice Each test pins down one rule a surviving mutant broke, named in its comment, and checks the exact
///         outcome (custom error with its arguments, stored commitment, credits) rather than "something reverts".
/// @dev Ported to escrow v2 (merge 2cd322f): orders are keyed by (orderId, buyer), the funded state carries the
///      buyer tag, `openDispute`/`confirmReceipt` are folded into `submitBuyerDecision` (decision 2/1) and
///      `submitEvidenceSigned` into `submitEvidence` (an empty signature means the caller). Every v1 rule these
///      tests pin down still exists in v2 (in the folded entry points), so no test was dropped; the mutant names
///      in the comments are the v1 ones, the rule each asserts is unchanged.
contract EscrowMutationKillsTest is EscrowTestBase {
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

    function _noPermit() internal pure returns (ITradeGuardEscrow.Permit memory p) {}

    function _auth(uint256 amount) internal returns (ITradeGuardEscrow.OrderAuthorization memory a) {
        a = ITradeGuardEscrow.OrderAuthorization({
            orderId: _orderId(seller, string.concat("MK-", _str(++_nonce))),
            buyer: buyer,
            seller: seller,
            token: address(usd),
            amount: amount,
            commissionBps: escrow.config().commissionBps,
            taxBps: 0,
            taxRecipient: address(0),
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
            responseSeconds: escrow.config().responseSeconds,
            arbitrationSeconds: escrow.config().arbitrationSeconds,
            fundedAt: uint64(block.timestamp),
            arbitrator: a.arbitrator,
            arbitratorExtraDataHash: a.arbitratorExtraDataHash,
            metaEvidenceId: escrow.config().metaEvidenceId
        });
    }

    /// @dev Funds one order, the buyer calling `fund` itself (no signature needed then).
    function _fund(uint256 amount) internal returns (O memory o) {
        return _fundAuth(_auth(amount));
    }

    /// @dev Funds one order naming the ERC-792 test court (the only kind that emits ERC-1497 events).
    function _fundCourt(uint256 amount) internal returns (O memory) {
        ITradeGuardEscrow.OrderAuthorization memory a = _auth(amount);
        a.arbitrator = address(court);
        a.arbitratorExtraDataHash = keccak256(COURT_EXTRA);
        return _fundAuth(a);
    }

    function _fundAuth(ITradeGuardEscrow.OrderAuthorization memory a) internal returns (O memory o) {
        uint256 amount = a.amount;
        usd.faucet(buyer, amount);
        vm.startPrank(buyer);
        usd.approve(address(escrow), amount);
        ITradeGuardEscrow.OrderAuthorization[] memory auths = new ITradeGuardEscrow.OrderAuthorization[](1);
        auths[0] = a;
        escrow.fund(auths, new bytes[](1), _noPermit());
        vm.stopPrank();
        o.id = a.orderId;
        o.t = _terms(a);
        o.s = _fundedState(a.buyer);
        _check(o);
    }

    function _check(O memory o) internal view {
        _assertEq(escrow.commitmentOf(o.id, o.t.buyer), _commitment(o.t, o.s), "commitment");
    }

    function _ref(O memory o) internal pure returns (ITradeGuardEscrow.OrderRef memory) {
        return ITradeGuardEscrow.OrderRef({orderId: o.id, terms: o.t, state: o.s});
    }

    /// @dev One SHIPPED attestation of `o` signed by the oracle key `pk`, an event a second old.
    function _shipped(O memory o, uint256 pk, bytes32 tracking)
        internal
        view
        returns (ITradeGuardEscrow.Attestation[] memory atts)
    {
        atts = new ITradeGuardEscrow.Attestation[](1);
        atts[0] = _attestation(pk, o.id, 1, uint64(block.timestamp - 1), tracking, sha256(abi.encode(o.id, uint8(1))));
    }

    /// @dev Oracle 0 attests `milestone` (threshold 1); `o.s` follows as the contract must.
    function _advance(O memory o, uint8 milestone) internal {
        ITradeGuardEscrow.AttestItem[] memory items = new ITradeGuardEscrow.AttestItem[](1);
        items[0].order = _ref(o);
        items[0].attestations = new ITradeGuardEscrow.Attestation[](1);
        uint64 eventTime = uint64(block.timestamp - 1);
        bytes32 tracking = keccak256("DHL:JD0123");
        bytes32 ev = sha256(abi.encode(o.id, milestone));
        items[0].attestations[0] = _attestation(oraclePk[0], o.id, milestone, eventTime, tracking, ev);
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

    // ================================================================ freezes do not reopen windows

    /// @dev Mutant H:dispute_window_counts_whole_freeze (`_openDispute`, reached through
    ///      `submitBuyerDecision(..., 2, ...)` in v2, extends the window by the whole freeze
    ///      instead of the frozen time elapsed so far): a freeze begun after the ship-by window closed would let
    ///      the buyer dispute again during the freeze.
    function test_freezeAfterShipByClosed_doesNotReopenTheDisputeWindow() public {
        O memory o = _fund(10_000);
        vm.warp(o.t.shipBy + 1); // the window closed one second ago
        _freeze(o, 10 days);
        vm.warp(block.timestamp + 1); // one second into the freeze: only that second extends the window
        uint256 deadline = uint256(o.t.shipBy) + 1;
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(ITradeGuardEscrow.DeadlinePassed.selector, o.id, deadline));
        escrow.submitBuyerDecision(o.id, o.t, o.s, 2, bytes32(0), 0, "", "");
    }

    /// @dev Mutant H:response_window_counts_whole_freeze (a seller's evidence counts as the dispute answer if it
    ///      comes within the response window plus the WHOLE freeze): after the response window closed, a freeze
    ///      must not let a late answer count; the order stays unanswered (response timeout stays open to the buyer).
    function test_freezeAfterResponseWindowClosed_lateSellerAnswerDoesNotCount() public {
        O memory o = _fund(10_000);
        _dispute(o);
        uint256 responseDeadline = _anchor(o.s) + o.t.responseSeconds;
        vm.warp(responseDeadline + 1);
        _freeze(o, 10 days);
        vm.warp(block.timestamp + 1);
        bytes32 answer = sha256("late answer");
        vm.prank(seller);
        escrow.submitEvidence(o.id, o.t, o.s, seller, answer, 0, "");
        _assertTrue(!_responded(o.s), "model: not answered");
        _check(o); // the stored state has no responded flag
    }

    // ============================================================================= batches and replays

    /// @dev Mutant S:LOR:696e51ff (`n == 0 || n > MAX_BATCH || signatures.length != n` weakened to
    ///      `n == 0 && n > MAX_BATCH`): an empty batch and a batch whose signature count differs from its order
    ///      count must be refused with InvalidBatch(n), not accepted or left to an index panic.
    function test_fund_refusesEmptyBatchAndSignatureCountMismatch() public {
        ITradeGuardEscrow.OrderAuthorization[] memory none = new ITradeGuardEscrow.OrderAuthorization[](0);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(ITradeGuardEscrow.InvalidBatch.selector, uint256(0)));
        escrow.fund(none, new bytes[](0), _noPermit());

        ITradeGuardEscrow.OrderAuthorization[] memory one = new ITradeGuardEscrow.OrderAuthorization[](1);
        one[0] = _auth(1000);
        usd.faucet(buyer, 1000);
        vm.startPrank(buyer);
        usd.approve(address(escrow), 1000);
        vm.expectRevert(abi.encodeWithSelector(ITradeGuardEscrow.InvalidBatch.selector, uint256(1)));
        escrow.fund(one, new bytes[](2), _noPermit());
        vm.stopPrank();
        _assertEq(escrow.commitmentOf(one[0].orderId, one[0].buyer), bytes32(0), "nothing funded");
    }

    /// @dev Mutant S:MIA:a790bacb (the batch-size check of `attest` replaced by `false`), and its twin in
    ///      `release`: a batch holds 1..MAX_BATCH entries; an empty or oversized batch reverts InvalidBatch(n)
    ///      even in non-strict mode, where entries that cannot proceed would otherwise be skipped silently.
    function test_attestAndRelease_refuseEmptyAndOversizedBatches() public {
        uint256 max = escrow.MAX_BATCH();
        vm.expectRevert(abi.encodeWithSelector(ITradeGuardEscrow.InvalidBatch.selector, uint256(0)));
        escrow.attest(new ITradeGuardEscrow.AttestItem[](0), false);
        vm.expectRevert(abi.encodeWithSelector(ITradeGuardEscrow.InvalidBatch.selector, max + 1));
        escrow.attest(new ITradeGuardEscrow.AttestItem[](max + 1), false);
        vm.expectRevert(abi.encodeWithSelector(ITradeGuardEscrow.InvalidBatch.selector, uint256(0)));
        escrow.release(new ITradeGuardEscrow.OrderRef[](0), false);
        vm.expectRevert(abi.encodeWithSelector(ITradeGuardEscrow.InvalidBatch.selector, max + 1));
        escrow.release(new ITradeGuardEscrow.OrderRef[](max + 1), false);
    }

    // ================================================================================ permit and pause

    /// @dev Mutant S:MIA:d18ee1f7 (`if (permit.deadline != 0)` negated in `_pull`): a buyer who never approved
    ///      the escrow funds through a relayer with an ERC-2612 permit; the permit must be used.
    function test_fund_withPermitAndNoPriorApproval() public {
        ITradeGuardEscrow.OrderAuthorization memory a = _auth(10_000);
        usd.faucet(buyer, 10_000);
        uint256 deadline = block.timestamp + 1 hours;
        bytes32 permitHash = keccak256(
            abi.encode(
                keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"),
                buyer,
                address(escrow),
                uint256(10_000),
                usd.nonces(buyer),
                deadline
            )
        );
        (uint8 v, bytes32 r, bytes32 s) =
            vm.sign(BUYER_PK, keccak256(abi.encodePacked("\x19\x01", usd.DOMAIN_SEPARATOR(), permitHash)));
        ITradeGuardEscrow.OrderAuthorization[] memory auths = new ITradeGuardEscrow.OrderAuthorization[](1);
        auths[0] = a;
        bytes[] memory sigs = new bytes[](1);
        sigs[0] = _sign(BUYER_PK, _authHash(a));
        vm.prank(stranger);
        escrow.fund(auths, sigs, ITradeGuardEscrow.Permit({value: 10_000, deadline: deadline, v: v, r: r, s: s}));
        O memory o = O({id: a.orderId, t: _terms(a), s: _fundedState(a.buyer)});
        _check(o);
        _assertEq(usd.balanceOf(address(escrow)), 10_000, "escrow holds the payment");
        _assertEq(usd.allowance(buyer, address(escrow)), 0, "permit allowance used up");
    }

    /// @dev Mutant S:CR:9618c7da (`paused()` no longer reads the flag): the view reports the pause the admin set
    ///      and lifted, as funding does (EnforcedPause while paused).
    function test_paused_viewFollowsPauseAndUnpause() public {
        _assertTrue(!escrow.paused(), "not paused at start");
        vm.prank(admin);
        escrow.pause();
        _assertTrue(escrow.paused(), "paused");
        ITradeGuardEscrow.OrderAuthorization[] memory auths = new ITradeGuardEscrow.OrderAuthorization[](1);
        auths[0] = _auth(1000);
        vm.prank(buyer);
        vm.expectRevert(ITradeGuardEscrow.EnforcedPause.selector);
        escrow.fund(auths, new bytes[](1), _noPermit());
        vm.prank(admin);
        escrow.unpause();
        _assertTrue(!escrow.paused(), "unpaused");
    }

    // ========================================================================== relayed signatures

    /// @dev Mutant S:RR:86590f25 (the confirm branch of `submitBuyerDecision` replaced by a revert): a buyer's
    ///      signed DECISION_CONFIRM_RECEIPT relayed by anyone releases the order like the buyer's own call, with the
    ///      SPEC §3 split credited (2.5 % commission, no tax, the rest to the seller).
    function test_submitBuyerDecision_signedConfirmReleases() public {
        O memory o = _fund(10_000);
        _advance(o, 1);
        bytes32 evidence = sha256("received in good order");
        uint64 validUntil = uint64(block.timestamp + 1 hours);
        bytes memory sig = _sign(BUYER_PK, keccak256(abi.encode(BD_TYPEHASH, o.id, uint8(1), evidence, validUntil)));
        vm.prank(stranger);
        escrow.submitBuyerDecision(o.id, o.t, o.s, 1, evidence, validUntil, sig, "");
        o.s = _withStatus(o.s, RELEASED);
        _check(o);
        _assertEq(escrow.creditOf(address(usd), treasury), 250, "commission");
        _assertEq(escrow.creditOf(address(usd), seller), 9750, "seller net");
        _assertEq(escrow.creditOf(address(usd), buyer), 0, "no refund");
    }

    /// @dev Mutant S:CR:28a7566e (`_bubble(err)` after recovering a relayed ruling's signer commented out): a
    ///      malformed ruling signature is reported as MalformedSignature(reason), not as a ruling by address(0).
    function test_submitRuling_malformedSignatureReportedAsSuch() public {
        O memory o = _fund(10_000);
        _dispute(o);
        uint64 validUntil = uint64(block.timestamp + 1 hours);
        vm.prank(stranger);
        // ECDSA.RecoverError.InvalidSignatureLength = 2
        vm.expectRevert(abi.encodeWithSelector(ITradeGuardEscrow.MalformedSignature.selector, uint8(2)));
        escrow.submitRuling(o.id, o.t, o.s, 5000, keccak256("rationale"), validUntil, hex"0102030405");
        _check(o); // still disputed
    }

    /// @dev Mutant H:evidence_replay_allowed (the used-digest check of `submitEvidenceSigned` removed; in v2 the
    ///      signed branch of `submitEvidence`): a relayed evidence signature is single-use; the second submission
    ///      reverts SignatureReplayed(digest).
    function test_submitEvidenceSigned_signatureIsSingleUse() public {
        O memory o = _fund(10_000);
        _dispute(o);
        bytes32 evidence = sha256("buyer photos");
        uint64 validUntil = uint64(block.timestamp + 1 hours);
        bytes32 structHash = keccak256(abi.encode(ES_TYPEHASH, o.id, buyer, evidence, validUntil));
        bytes memory sig = _sign(BUYER_PK, structHash);
        vm.prank(stranger);
        escrow.submitEvidence(o.id, o.t, o.s, buyer, evidence, validUntil, sig);
        bytes32 digest = _digest(structHash);
        _assertTrue(escrow.isDigestUsed(_key(o.id, o.t.buyer), digest), "digest recorded");
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(ITradeGuardEscrow.SignatureReplayed.selector, digest));
        escrow.submitEvidence(o.id, o.t, o.s, buyer, evidence, validUntil, sig);
    }

    // ==================================================================== buyer decisions: status and value

    /// @dev Mutant H:confirm_from_funded (`_confirm` also accepting a FUNDED order): a buyer cannot confirm receipt
    ///      of goods not yet shipped; the confirmation reverts InvalidStatus(id, FUNDED) and nothing is credited.
    function test_confirmReceipt_refusedBeforeShipment() public {
        O memory o = _fund(10_000);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(ITradeGuardEscrow.InvalidStatus.selector, o.id, FUNDED));
        escrow.submitBuyerDecision(o.id, o.t, o.s, 1, bytes32(0), 0, "", "");
        _check(o); // still funded
        _assertEq(escrow.creditOf(address(usd), seller), 0, "nothing credited");
        _advance(o, 1);
        vm.prank(buyer);
        escrow.submitBuyerDecision(o.id, o.t, o.s, 1, bytes32(0), 0, "", "");
        o.s = _withStatus(o.s, RELEASED);
        _check(o);
    }

    /// @dev Mutant H:confirm_keeps_value (the `msg.value` check of the confirm branch of the payable
    ///      `submitBuyerDecision` removed): a confirmation carries no native currency, which the escrow would keep
    ///      credited to nobody; it reverts UnexpectedValue(value) and the escrow holds no ether.
    function test_confirmReceipt_refusesNativeCurrency() public {
        O memory o = _fund(10_000);
        _advance(o, 1);
        vm.deal(buyer, 1);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(ITradeGuardEscrow.UnexpectedValue.selector, uint256(1)));
        escrow.submitBuyerDecision{value: 1}(o.id, o.t, o.s, 1, bytes32(0), 0, "", "");
        _assertEq(address(escrow).balance, 0, "escrow holds no ether");
        _check(o); // still shipped
    }

    /// @dev Mutant S:ROR:354ae5ba (`i + 1 == n` widened to `i + 1 <= n || ...`, always true, in `fund`): the
    ///      funding of a batch pulls the money once per run of orders with the same buyer and token, not once
    ///      per order; two orders of one buyer in tUSD make ONE transfer of their sum into the escrow.
    function test_fund_batchOfOneBuyerPullsOnce() public {
        ITradeGuardEscrow.OrderAuthorization[] memory auths = new ITradeGuardEscrow.OrderAuthorization[](2);
        auths[0] = _auth(1000);
        auths[1] = _auth(2500);
        usd.faucet(buyer, 3500);
        vm.startPrank(buyer);
        usd.approve(address(escrow), 3500);
        vm.recordLogs();
        escrow.fund(auths, new bytes[](2), _noPermit());
        vm.stopPrank();
        Vm.Log[] memory logs = vm.getRecordedLogs();
        bytes32 transfer = keccak256("Transfer(address,address,uint256)");
        uint256 pulls;
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].emitter != address(usd) || logs[i].topics.length != 3 || logs[i].topics[0] != transfer) {
                continue;
            }
            _assertEq(logs[i].topics[1], bytes32(uint256(uint160(buyer))), "from the buyer");
            _assertEq(logs[i].topics[2], bytes32(uint256(uint160(address(escrow)))), "to the escrow");
            _assertEq(abi.decode(logs[i].data, (uint256)), 3500, "the batch's sum at once");
            ++pulls;
        }
        _assertEq(pulls, 1, "one pull for the run");
        _assertEq(usd.balanceOf(address(escrow)), 3500, "escrow holds both payments");
    }

    /// @dev Mutant S:MIA:195e99e8 (the allow-list check `!_reg.allowedTokens[a.token]` of `_open` replaced by
    ///      `false`): only tokens the admin allows can be escrowed; once tUSD is disallowed, funding in it reverts
    ///      TokenNotAllowed(tUSD) and nothing is recorded or pulled; allowed again, the same order funds.
    function test_fund_refusesTokenNotAllowed() public {
        vm.prank(admin);
        escrow.setToken(address(usd), false);
        ITradeGuardEscrow.OrderAuthorization[] memory auths = new ITradeGuardEscrow.OrderAuthorization[](1);
        auths[0] = _auth(1000);
        usd.faucet(buyer, 1000);
        vm.startPrank(buyer);
        usd.approve(address(escrow), 1000);
        vm.expectRevert(abi.encodeWithSelector(ITradeGuardEscrow.TokenNotAllowed.selector, address(usd)));
        escrow.fund(auths, new bytes[](1), _noPermit());
        vm.stopPrank();
        _assertEq(escrow.commitmentOf(auths[0].orderId, buyer), bytes32(0), "nothing funded");
        _assertEq(usd.balanceOf(address(escrow)), 0, "nothing pulled");
        vm.prank(admin);
        escrow.setToken(address(usd), true);
        vm.prank(buyer);
        escrow.fund(auths, new bytes[](1), _noPermit());
        _assertEq(usd.balanceOf(address(escrow)), 1000, "funded once allowed again");
    }

    /// @dev Mutant S:MIA:70dff865 (`oracle == address(0)` of `addOracle` replaced by `false`): the zero address
    ///      (what ecrecover-style failures recover to) is never made an oracle; adding it reverts ZeroAddress().
    function test_addOracle_refusesZeroAddress() public {
        vm.prank(admin);
        vm.expectRevert(ITradeGuardEscrow.ZeroAddress.selector);
        escrow.addOracle(address(0));
    }

    /// @dev Mutant S:LOR:6335056e (`arbitrationSeconds <= responseSeconds || arbitrationSeconds > 180 days` of
    ///      `setDisputeWindows` weakened to `&&`): each bound refuses on its own - an arbitration window no longer
    ///      than the response window, and one over 180 days, each revert InvalidDuration(arbitrationSeconds).
    function test_setDisputeWindows_arbitrationBoundsEachRefuse() public {
        vm.startPrank(admin);
        vm.expectRevert(abi.encodeWithSelector(ITradeGuardEscrow.InvalidDuration.selector, uint256(2 days)));
        escrow.setDisputeWindows(2 days, 2 days);
        vm.expectRevert(abi.encodeWithSelector(ITradeGuardEscrow.InvalidDuration.selector, uint256(181 days)));
        escrow.setDisputeWindows(2 days, 181 days);
        // S:ROR:104a6295 (`<=` weakened to `==`): an arbitration window shorter than the response window
        vm.expectRevert(abi.encodeWithSelector(ITradeGuardEscrow.InvalidDuration.selector, uint256(1 days)));
        escrow.setDisputeWindows(2 days, 1 days);
        escrow.setDisputeWindows(2 days, 2 days + 1);
        vm.stopPrank();
        _assertEq(escrow.config().arbitrationSeconds, 2 days + 1, "valid windows set");
    }

    // ============================================================================= ERC-1497 evidence link

    /// @dev The escrow's own base64url of an evidence hash (`_evidenceURI`, 32 characters a word) against
    ///      OpenZeppelin's `Base64.encodeURL`, which it replaced for gas: survivors S:BOR:e7b9585e, S:LIR:ac9cc11f,
    ///      S:AOR:4cd127f0, S:AOR:5d7d4d21 of the run at bf83abf changed the character mapping and no test read the
    ///      `Evidence` string. Every character class (A-Z, a-z, 0-9, '-', '_') and both words of the hash are
    ///      reached by the fixed hashes; the fuzzed one covers the rest.
    function testFuzz_evidenceURI_isTheBase64URLOfTheHash(bytes32 h) public {
        if (h == bytes32(0)) h = bytes32(uint256(1)); // an empty evidence hash is refused (EmptyHash)
        _assertEvidenceURI(h);
    }

    function test_evidenceURI_everyCharacterClass() public {
        _assertEvidenceURI(bytes32(uint256(1)));
        _assertEvidenceURI(bytes32(type(uint256).max));
        // 6-bit groups 0, 25, 26, 51, 52, 61, 62, 63 repeated: each boundary of the mapping, in both words
        _assertEvidenceURI(0x0196b3d3dfbf0196b3d3dfbf0196b3d3dfbf0196b3d3dfbf0196b3d3dfbf0196);
        _assertEvidenceURI(sha256("evidence"));
    }

    function _assertEvidenceURI(bytes32 h) internal {
        O memory o = _fundCourt(10_000);
        vm.deal(buyer, COURT_FEE);
        vm.prank(buyer);
        escrow.submitBuyerDecision{value: COURT_FEE}(o.id, o.t, o.s, 2, bytes32(0), 0, "", COURT_EXTRA);
        o.s = _withAnchor(_withStatus(o.s, DISPUTED), _timerStart(o.s, block.timestamp) - _frozenSeconds(o.s));
        _check(o);
        vm.recordLogs();
        vm.prank(seller);
        escrow.submitEvidence(o.id, o.t, o.s, seller, h, 0, "");
        Vm.Log[] memory logs = vm.getRecordedLogs();
        bytes32 topic = keccak256("Evidence(address,uint256,address,string)");
        uint256 found;
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].emitter != address(escrow) || logs[i].topics[0] != topic) continue;
            string memory uri = abi.decode(logs[i].data, (string));
            string memory expected = string.concat("ni:///sha-256;", Base64.encodeURL(abi.encodePacked(h)));
            _assertEq(keccak256(bytes(uri)), keccak256(bytes(expected)), "evidence URI");
            _assertEq(bytes(uri).length, 57, "evidence URI length");
            ++found;
        }
        _assertEq(found, 1, "one Evidence event");
    }

    /// @dev Mutant S:RR:0f05cac4 (`_attest` reverts on an item without attestations instead of reporting
    ///      NoAttestations): in a non-strict batch that item is skipped and the others still advance.
    function test_attest_itemWithoutAttestationsIsSkippedInANonStrictBatch() public {
        O memory empty = _fund(10_000);
        O memory o = _fund(10_000);
        ITradeGuardEscrow.AttestItem[] memory items = new ITradeGuardEscrow.AttestItem[](2);
        items[0].order = _ref(empty);
        items[0].attestations = new ITradeGuardEscrow.Attestation[](0);
        items[1].order = _ref(o);
        items[1].attestations = _shipped(o, oraclePk[0], keccak256("DHL:JD0123"));
        vm.prank(stranger);
        _assertEq(escrow.attest(items, false), 1, "the other order advanced");
        _check(empty); // untouched
        o.s = _withStatus(o.s, SHIPPED);
        _check(o);
    }

    /// @dev Mutant S:MWA:8d9fda4d of the run at aaf727b (`_attest`'s event loop with its condition negated: no
    ///      `Attested` at all): each counted attestation is announced once, with its oracle and its fields. The
    ///      Python tests that check it did not finish inside the run's budget for that mutant.
    function test_attest_emitsOneAttestedPerCountedAttestation() public {
        O memory o = _fund(10_000);
        ITradeGuardEscrow.AttestItem[] memory items = new ITradeGuardEscrow.AttestItem[](1);
        items[0].order = _ref(o);
        bytes32 tracking = keccak256("DHL:JD0456");
        items[0].attestations = _shipped(o, oraclePk[1], tracking);
        ITradeGuardEscrow.Attestation memory sent = items[0].attestations[0];
        vm.recordLogs();
        vm.prank(stranger);
        _assertEq(escrow.attest(items, true), 1, "advanced");
        Vm.Log[] memory logs = vm.getRecordedLogs();
        uint256 found;
        for (uint256 k; k < logs.length; ++k) {
            if (logs[k].emitter != address(escrow) || logs[k].topics[0] != ITradeGuardEscrow.Attested.selector) {
                continue;
            }
            _assertEq(logs[k].topics[1], o.id, "Attested order");
            _assertEq(logs[k].topics[2], bytes32(uint256(uint160(oracle[1]))), "Attested oracle");
            (uint8 milestone, uint64 when, bytes32 tr, bytes32 e) =
                abi.decode(logs[k].data, (uint8, uint64, bytes32, bytes32));
            _assertEq(uint256(milestone), 1, "Attested milestone");
            _assertEq(uint256(when), uint256(sent.eventTime), "Attested eventTime");
            _assertEq(tr, tracking, "Attested trackingHash");
            _assertEq(e, sent.evidenceHash, "Attested evidenceHash");
            ++found;
        }
        _assertEq(found, 1, "one Attested");
    }

    /// @dev Mutant S:CR:66510d15 of the run at aaf727b (`addOracle` without its `OracleAdded` event): the event
    ///      names the oracle, its bit index and when it starts counting.
    function test_addOracle_emitsOracleAdded() public {
        address fresh = vm.addr(0x0A04);
        vm.recordLogs();
        vm.prank(admin);
        escrow.addOracle(fresh);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        ITradeGuardEscrow.OracleInfo memory info = escrow.oracleInfo(fresh);
        uint256 found;
        for (uint256 k; k < logs.length; ++k) {
            if (logs[k].topics[0] != ITradeGuardEscrow.OracleAdded.selector) continue;
            _assertEq(logs[k].topics[1], bytes32(uint256(uint160(fresh))), "OracleAdded oracle");
            (uint8 index, uint64 activeFrom) = abi.decode(logs[k].data, (uint8, uint64));
            _assertEq(uint256(index), 3, "OracleAdded index");
            _assertEq(uint256(info.index), 3, "stored index");
            _assertEq(uint256(activeFrom), block.timestamp + ROLE_DELAY, "OracleAdded activeFrom");
            _assertEq(uint256(info.activeFrom), uint256(activeFrom), "stored activeFrom");
            ++found;
        }
        _assertEq(found, 1, "one OracleAdded");
    }
}
