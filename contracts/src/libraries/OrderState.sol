// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ITradeGuardEscrow} from "../interfaces/ITradeGuardEscrow.sol";

/// @title Packed order state
/// @notice Reads and writes the `uint256` order state word described in {ITradeGuardEscrow}.
/// @dev Layout: status (bits 0..7), seller-responded flag (bit 8), frozenSeconds (16..47),
///      frozenUntil (48..111), anchor (112..175), buyer tag (176..255). All setters mask the field they replace.
library OrderState {
    uint8 internal constant FUNDED = 1;
    uint8 internal constant SHIPPED = 2;
    uint8 internal constant DELIVERED = 3;
    uint8 internal constant DISPUTED = 4;
    uint8 internal constant RELEASED = 5;
    uint8 internal constant REFUNDED = 6;
    uint8 internal constant RESOLVED = 7;

    uint256 private constant _RESPONDED_BIT = 1 << 8;
    uint256 private constant _FROZEN_SECONDS_SHIFT = 16;
    uint256 private constant _FROZEN_UNTIL_SHIFT = 48;
    uint256 private constant _ANCHOR_SHIFT = 112;
    uint256 private constant _BUYER_TAG_SHIFT = 176;
    uint256 private constant _MASK_32 = type(uint32).max;
    uint256 private constant _MASK_64 = type(uint64).max;

    /// @notice The state of an order just funded by `buyer`: FUNDED, and the low 80 bits of the buyer's address
    ///         as its tag (never changed afterwards).
    function funded(address buyer) internal pure returns (uint256) {
        return (uint256(uint80(uint160(buyer))) << _BUYER_TAG_SHIFT) | FUNDED;
    }

    /// @notice The status byte.
    function status(uint256 s) internal pure returns (uint8) {
        return uint8(s);
    }

    /// @notice Whether the status is final (released, refunded, resolved).
    function isFinal(uint256 s) internal pure returns (bool) {
        return uint8(s) >= RELEASED;
    }

    /// @notice Whether the seller answered the open dispute in time.
    function responded(uint256 s) internal pure returns (bool) {
        return s & _RESPONDED_BIT != 0;
    }

    /// @notice Total seconds the order has been (or is committed to be) frozen.
    function frozenSeconds(uint256 s) internal pure returns (uint256) {
        return (s >> _FROZEN_SECONDS_SHIFT) & _MASK_32;
    }

    /// @notice Unix time until which the order is frozen.
    function frozenUntil(uint256 s) internal pure returns (uint64) {
        return uint64(s >> _FROZEN_UNTIL_SHIFT);
    }

    /// @notice Timer base of the current status (see the interface's layout note).
    function anchor(uint256 s) internal pure returns (uint256) {
        return (s >> _ANCHOR_SHIFT) & _MASK_64;
    }

    /// @notice Frozen seconds that have actually gone by at `nowTime` (the rest of a running freeze excluded),
    ///         so that a freeze never reopens a window that had closed before it began.
    function elapsedFrozen(uint256 s, uint256 nowTime) internal pure returns (uint256) {
        uint256 until = frozenUntil(s);
        return nowTime < until ? frozenSeconds(s) - (until - nowTime) : frozenSeconds(s);
    }

    /// @notice Whether a regulator freeze is in force at `nowTime`.
    function isFrozen(uint256 s, uint256 nowTime) internal pure returns (bool) {
        return nowTime < frozenUntil(s);
    }

    /// @notice `s` with another status.
    function withStatus(uint256 s, uint8 newStatus) internal pure returns (uint256) {
        return (s & ~uint256(0xff)) | newStatus;
    }

    /// @notice `s` with the seller-responded flag set.
    function withResponded(uint256 s) internal pure returns (uint256) {
        return s | _RESPONDED_BIT;
    }

    /// @notice `s` with new freeze fields.
    function withFreeze(uint256 s, uint256 totalSeconds, uint256 until) internal pure returns (uint256) {
        s &= ~((_MASK_32 << _FROZEN_SECONDS_SHIFT) | (_MASK_64 << _FROZEN_UNTIL_SHIFT));
        return s | (totalSeconds << _FROZEN_SECONDS_SHIFT) | (until << _FROZEN_UNTIL_SHIFT);
    }

    /// @notice `s` with a new anchor.
    function withAnchor(uint256 s, uint256 newAnchor) internal pure returns (uint256) {
        return (s & ~(_MASK_64 << _ANCHOR_SHIFT)) | (newAnchor << _ANCHOR_SHIFT);
    }

    /// @notice When a timer started now really starts: after any freeze in force.
    function timerStart(uint256 s, uint256 nowTime) internal pure returns (uint256) {
        uint256 until = frozenUntil(s);
        return nowTime > until ? nowTime : until;
    }

    /// @notice An order's storage key: keccak256(abi.encode(orderId, buyer)), hashed in scratch space.
    function key(bytes32 orderId, address buyer) internal pure returns (bytes32 k) {
        assembly ("memory-safe") {
            mstore(0x00, orderId)
            mstore(0x20, buyer)
            k := keccak256(0x00, 0x40)
        }
    }

    /// @notice keccak256(abi.encode(terms, state)) hashed straight from calldata (17 static words of terms).
    /// @dev Not re-encoding is safe: a caller who passes non-canonical bytes (dirty high bits) gets a hash that
    ///      matches no commitment, since every commitment was computed from clean values at funding.
    function commit(ITradeGuardEscrow.Terms calldata t, uint256 s) internal pure returns (bytes32 h) {
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            calldatacopy(ptr, t, 544)
            mstore(add(ptr, 544), s)
            h := keccak256(ptr, 576)
        }
    }
}
