// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title Reentrant test token
/// @notice Test double: on `transfer` and/or `transferFrom` it first calls a configurable target with configurable
///         calldata (once per outer call, never recursively), records whether that reentrant call succeeded and
///         its return or revert data, and then performs the transfer as a plain ERC-20 would. Used to prove
///         that a hostile token cannot re-enter the escrow's `fund` or `withdraw`.
/// @dev Never deploy outside tests: anyone may mint and anyone may configure the hook.
contract ReentrantToken is ERC20 {
    /// @notice Which token entry points trigger the reentrant call.
    enum Hook {
        None,
        OnTransfer,
        OnTransferFrom,
        Both
    }

    /// @notice Contract the hook calls.
    address public target;
    /// @notice Calldata the hook sends to {target}.
    bytes public callData;
    /// @notice Entry points that trigger the hook.
    Hook public hook;
    /// @notice How many times the hook fired.
    uint256 public reentryCount;
    /// @notice Whether the last reentrant call succeeded.
    bool public lastCallSucceeded;
    /// @notice Return data of the last reentrant call (its revert data when it failed).
    bytes public lastReturnData;

    bool private _inHook;

    /// @notice A mint to the zero address or of zero tokens.
    error InvalidMint(address to, uint256 amount);
    /// @notice A hook was armed without a target.
    error NoTarget();

    /// @notice The hook called {target}.
    event Reentered(address indexed target, bool success, bytes returnData);

    constructor() ERC20("Reentrant Test Token", "RNT") {}

    /// @notice 6 decimals, like the stablecoins it imitates.
    function decimals() public pure override returns (uint8) {
        return 6;
    }

    /// @notice Mint `amount` to `to`; open to anyone (test double).
    /// @param to receiver of the new tokens
    /// @param amount base units to mint
    function mint(address to, uint256 amount) external {
        if (to == address(0) || amount == 0) revert InvalidMint(to, amount);
        _mint(to, amount);
    }

    /// @notice Arm (or with `Hook.None` disarm) the reentrant call.
    /// @param target_ contract to call back into
    /// @param callData_ calldata of the reentrant call
    /// @param hook_ entry points that trigger it
    function configure(address target_, bytes calldata callData_, Hook hook_) external {
        if (hook_ != Hook.None && target_ == address(0)) revert NoTarget();
        (target, callData, hook) = (target_, callData_, hook_);
    }

    /// @notice ERC-20 transfer, after the reentrant call when armed for `transfer`.
    function transfer(address to, uint256 value) public override returns (bool) {
        if (hook == Hook.OnTransfer || hook == Hook.Both) _reenter();
        return super.transfer(to, value);
    }

    /// @notice ERC-20 transferFrom, after the reentrant call when armed for `transferFrom`.
    function transferFrom(address from, address to, uint256 value) public override returns (bool) {
        if (hook == Hook.OnTransferFrom || hook == Hook.Both) _reenter();
        return super.transferFrom(from, to, value);
    }

    /// @dev Calls the target once (a nested transfer inside the reentrant call does not fire again) and records
    ///      the outcome instead of bubbling a failure, so the outer transfer proceeds either way.
    function _reenter() private {
        if (_inHook) return;
        _inHook = true;
        ++reentryCount;
        // The outcome is recorded rather than acted on: this token exists to observe reentrancy.
        // slither-disable-next-line low-level-calls
        (bool ok, bytes memory ret) = target.call(callData);
        (lastCallSucceeded, lastReturnData) = (ok, ret);
        _inHook = false;
        emit Reentered(target, ok, ret);
    }
}
