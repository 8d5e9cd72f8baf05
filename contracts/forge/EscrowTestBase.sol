// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ITradeGuardEscrow} from "../src/interfaces/ITradeGuardEscrow.sol";
import {TradeGuardEscrow} from "../src/TradeGuardEscrow.sol";
import {TestUSD} from "../src/TestUSD.sol";
import {CentralizedArbitrator} from "../test/CentralizedArbitrator.sol";

/// @notice The few forge cheatcodes these tests use (no forge-std on this machine; see TOOLCHAIN.md).
interface Vm {
    /// @notice One log captured by {recordLogs}.
    struct Log {
        bytes32[] topics;
        bytes data;
        address emitter;
    }

    function warp(uint256 newTimestamp) external;
    function deal(address account, uint256 newBalance) external;
    function prank(address msgSender) external;
    function startPrank(address msgSender) external;
    function stopPrank() external;
    function sign(uint256 privateKey, bytes32 digest) external pure returns (uint8 v, bytes32 r, bytes32 s);
    function addr(uint256 privateKey) external pure returns (address);
    function expectRevert(bytes calldata revertData) external;
    function expectRevert(bytes4 revertSelector) external;
    function expectRevert() external;
    function recordLogs() external;
    function getRecordedLogs() external returns (Log[] memory logs);
    function label(address account, string calldata newLabel) external;
    function setEnv(string calldata name, string calldata value) external;
    function envOr(string calldata name, uint256 defaultValue) external view returns (uint256);
    function toString(uint256 value) external pure returns (string memory);
}

/// @title Shared fixture for the TradeGuard forge tests
/// @notice Cheatcode handle, assertion helpers, EIP-712 digests computed independently from SPEC §4 (our own type
///         strings and domain, not the contract's constants), and a deployed escrow with tUSD, three oracles,
///         an arbitrator, a regulator and two tax corridors.
abstract contract EscrowTestBase {
    Vm internal constant vm = Vm(0x7109709ECfa91a80626fF3989D68f67F5b1DD12D);

    /// @dev A realistic start time (forge starts at timestamp 1, which would underflow timer arithmetic).
    uint256 internal constant T0 = 1_750_000_000;
    uint32 internal constant ROLE_DELAY = 1 days;
    uint32 internal constant RESPONSE = 3 days;
    uint32 internal constant ARBITRATION = 14 days;
    uint16 internal constant COMMISSION = 250;
    uint256 internal constant BPS = 10_000;

    uint8 internal constant FUNDED = 1;
    uint8 internal constant SHIPPED = 2;
    uint8 internal constant DELIVERED = 3;
    uint8 internal constant DISPUTED = 4;
    uint8 internal constant RELEASED = 5;
    uint8 internal constant REFUNDED = 6;
    uint8 internal constant RESOLVED = 7;

    bytes32 internal constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 internal constant OA_TYPEHASH = keccak256(
        "OrderAuthorization(bytes32 orderId,address buyer,address seller,address token,uint256 amount,uint16 commissionBps,uint16 taxBps,address taxRecipient,uint64 shipBy,uint64 deliverBy,uint32 holdSeconds,uint64 validUntil,address arbitrator,bytes32 arbitratorExtraDataHash)"
    );
    bytes32 internal constant DA_TYPEHASH = keccak256(
        "DeliveryAttestation(bytes32 orderId,uint8 milestone,uint64 eventTime,bytes32 trackingHash,bytes32 evidenceHash)"
    );
    bytes32 internal constant BD_TYPEHASH =
        keccak256("BuyerDecision(bytes32 orderId,uint8 decision,bytes32 evidenceHash,uint64 validUntil)");
    bytes32 internal constant ES_TYPEHASH =
        keccak256("EvidenceSubmission(bytes32 orderId,address party,bytes32 evidenceHash,uint64 validUntil)");
    bytes32 internal constant RULING_TYPEHASH =
        keccak256("Ruling(bytes32 orderId,uint16 buyerShareBps,bytes32 rationaleHash,uint64 validUntil)");

    uint256 internal constant ADMIN_PK = 0xAD01;
    uint256 internal constant TREASURY_PK = 0x7EA5;
    uint256 internal constant REGULATOR_PK = 0x2E6;
    uint256 internal constant ARBITRATOR_PK = 0xA2B1;
    uint256 internal constant TAX1_PK = 0x7A1;
    uint256 internal constant TAX2_PK = 0x7A2;
    uint256 internal constant BUYER_PK = 0xB0B1;
    uint256 internal constant SELLER_PK = 0x5E11;
    uint256 internal constant SELLER2_PK = 0x5E12;
    uint256 internal constant STRANGER_PK = 0x5724;
    uint256 internal constant COURT_OWNER_PK = 0xC0A7;
    /// @dev The ERC-792 test arbitrator's dispute fee and the extraData orders naming it sign the hash of.
    uint256 internal constant COURT_FEE = 0.01 ether;
    bytes internal constant COURT_EXTRA = hex"00000000000000000000000000000000000000000000000000000000000000010003";

    TradeGuardEscrow internal escrow;
    TestUSD internal usd;
    /// @dev An ERC-792 arbitrator appointed at T0 (final rulings, no appeals), owned by `courtOwner`.
    CentralizedArbitrator internal court;
    address internal courtOwner;
    address internal admin;
    address internal treasury;
    address internal regulator;
    address internal arbitrator;
    address internal tax1;
    address internal tax2;
    address internal buyer;
    address internal seller;
    address internal seller2;
    address internal stranger;
    uint256[3] internal oraclePk = [uint256(0x0A01), 0x0A02, 0x0A03];
    address[3] internal oracle;

    // ------------------------------------------------------------------------------------------ fixture

    /// @dev Deploys the escrow and registers everything; leaves the clock ROLE_DELAY after T0 so that oracles
    ///      and the arbitrator count.
    function _deployFixture() internal {
        vm.warp(T0);
        admin = vm.addr(ADMIN_PK);
        treasury = vm.addr(TREASURY_PK);
        regulator = vm.addr(REGULATOR_PK);
        arbitrator = vm.addr(ARBITRATOR_PK);
        tax1 = vm.addr(TAX1_PK);
        tax2 = vm.addr(TAX2_PK);
        buyer = vm.addr(BUYER_PK);
        seller = vm.addr(SELLER_PK);
        seller2 = vm.addr(SELLER2_PK);
        stranger = vm.addr(STRANGER_PK);
        courtOwner = vm.addr(COURT_OWNER_PK);
        court = new CentralizedArbitrator(courtOwner, COURT_FEE, 0, 0);
        for (uint256 i; i < 3; ++i) {
            oracle[i] = vm.addr(oraclePk[i]);
        }
        escrow = new TradeGuardEscrow(admin, treasury, COMMISSION, ROLE_DELAY, RESPONSE, ARBITRATION, "ipfs://policy");
        usd = new TestUSD();
        vm.startPrank(admin);
        escrow.setToken(address(usd), true);
        escrow.setTaxRecipient(tax1, 5000);
        escrow.setTaxRecipient(tax2, 1200);
        for (uint256 i; i < 3; ++i) {
            escrow.addOracle(oracle[i]);
        }
        escrow.addArbitrator(arbitrator);
        escrow.addArbitrator(address(court));
        escrow.grantRole(escrow.REGULATOR_ROLE(), regulator);
        vm.stopPrank();
        vm.warp(T0 + ROLE_DELAY);
    }

    // ----------------------------------------------------------------------------------------- asserts

    function _fail(string memory what) internal pure {
        revert(what);
    }

    function _assertTrue(bool ok, string memory what) internal pure {
        if (!ok) revert(what);
    }

    function _assertEq(uint256 a, uint256 b, string memory what) internal pure {
        if (a != b) revert(string.concat(what, ": ", _str(a), " != ", _str(b)));
    }

    function _assertEq(bytes32 a, bytes32 b, string memory what) internal pure {
        if (a != b) revert(string.concat(what, ": bytes32 mismatch"));
    }

    function _str(uint256 v) internal pure returns (string memory) {
        if (v == 0) return "0";
        uint256 len;
        for (uint256 x = v; x != 0; x /= 10) {
            ++len;
        }
        bytes memory b = new bytes(len);
        for (; v != 0; v /= 10) {
            b[--len] = bytes1(uint8(48 + v % 10));
        }
        return string(b);
    }

    // ----------------------------------------------------------------------------------------- EIP-712

    function _domainSeparator() internal view returns (bytes32) {
        return keccak256(
            abi.encode(DOMAIN_TYPEHASH, keccak256("TradeGuard"), keccak256("2"), block.chainid, address(escrow))
        );
    }

    function _digest(bytes32 structHash) internal view returns (bytes32) {
        return keccak256(abi.encodePacked("\x19\x01", _domainSeparator(), structHash));
    }

    function _sign(uint256 pk, bytes32 structHash) internal view returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(pk, _digest(structHash));
        return abi.encodePacked(r, s, v);
    }

    function _authHash(ITradeGuardEscrow.OrderAuthorization memory a) internal pure returns (bytes32) {
        bytes memory head = abi.encode(
            OA_TYPEHASH, a.orderId, a.buyer, a.seller, a.token, a.amount, a.commissionBps, a.taxBps, a.taxRecipient
        );
        return keccak256(
            abi.encodePacked(
                head,
                abi.encode(
                    a.shipBy, a.deliverBy, a.holdSeconds, a.validUntil, a.arbitrator, a.arbitratorExtraDataHash
                )
            )
        );
    }

    /// @dev The escrow's storage key of an order (SPEC order id made unique per buyer).
    function _key(bytes32 id, address b) internal pure returns (bytes32) {
        return keccak256(abi.encode(id, b));
    }

    /// @dev The state word of an order just funded by `b`: FUNDED with the buyer tag (low 80 bits of `b`).
    function _fundedState(address b) internal pure returns (uint256) {
        return (uint256(uint80(uint160(b))) << 176) | FUNDED;
    }

    function _attHash(bytes32 id, uint8 milestone, uint64 eventTime, bytes32 tracking, bytes32 evidence)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(DA_TYPEHASH, id, milestone, eventTime, tracking, evidence));
    }

    /// @dev Oracle `pk`'s DeliveryAttestation of `milestone` for order `id`, signed.
    function _attestation(uint256 pk, bytes32 id, uint8 milestone, uint64 eventTime, bytes32 tracking, bytes32 evidence)
        internal
        view
        returns (ITradeGuardEscrow.Attestation memory)
    {
        return ITradeGuardEscrow.Attestation({
            milestone: milestone,
            eventTime: eventTime,
            trackingHash: tracking,
            evidenceHash: evidence,
            signature: _sign(pk, _attHash(id, milestone, eventTime, tracking, evidence))
        });
    }

    function _orderId(address seller_, string memory orderRef) internal pure returns (bytes32) {
        return keccak256(abi.encode(seller_, keccak256(bytes(orderRef))));
    }

    // ------------------------------------------------------------------------------------ packed state

    function _status(uint256 s) internal pure returns (uint8) {
        return uint8(s);
    }

    function _responded(uint256 s) internal pure returns (bool) {
        return s & (1 << 8) != 0;
    }

    function _frozenSeconds(uint256 s) internal pure returns (uint256) {
        return (s >> 16) & type(uint32).max;
    }

    function _frozenUntil(uint256 s) internal pure returns (uint256) {
        return (s >> 48) & type(uint64).max;
    }

    function _anchor(uint256 s) internal pure returns (uint256) {
        return (s >> 112) & type(uint64).max;
    }

    function _withStatus(uint256 s, uint8 st) internal pure returns (uint256) {
        return (s & ~uint256(0xff)) | st;
    }

    function _withAnchor(uint256 s, uint256 a) internal pure returns (uint256) {
        return (s & ~(uint256(type(uint64).max) << 112)) | (a << 112);
    }

    function _withFreeze(uint256 s, uint256 total, uint256 until) internal pure returns (uint256) {
        s &= ~((uint256(type(uint32).max) << 16) | (uint256(type(uint64).max) << 48));
        return s | (total << 16) | (until << 48);
    }

    /// @dev When a timer started at `nowTime` really starts: after a freeze in force.
    function _timerStart(uint256 s, uint256 nowTime) internal pure returns (uint256) {
        uint256 until = _frozenUntil(s);
        return nowTime > until ? nowTime : until;
    }

    /// @dev SPEC §3 split of a gross amount.
    function _split(uint256 gross, uint16 cBps, uint16 tBps)
        internal
        pure
        returns (uint256 commission, uint256 tax, uint256 net)
    {
        commission = gross * cBps / BPS;
        tax = gross * tBps / BPS;
        net = gross - commission - tax;
    }

    function _commitment(ITradeGuardEscrow.Terms memory t, uint256 s) internal pure returns (bytes32) {
        return keccak256(abi.encode(t, s));
    }

    /// @dev SPEC §4.1: the buyer's share of an ERC-792 ruling (0 refused: 5000; r in 1..10: (r - 1) * 1111,
    ///      10: 10000), written out independently of the contract.
    function _rulingShare(uint256 ruling) internal pure returns (uint16) {
        if (ruling == 0) return 5000;
        if (ruling == 10) return 10_000;
        return uint16((ruling - 1) * 1111);
    }
}
