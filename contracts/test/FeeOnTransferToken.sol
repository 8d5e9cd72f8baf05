// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title Fee-on-transfer test token
/// @notice Test double: burns 1% of every transfer (mints and burns are exempt), so the receiver gets less than
///         the sender sent. The escrow must refuse it at funding with `TokenShortfall`.
/// @dev Never deploy outside tests: anyone may mint.
contract FeeOnTransferToken is ERC20 {
    /// @notice Share of every transfer that is burnt, in basis points (1%).
    uint256 public constant FEE_BPS = 100;

    /// @notice A mint to the zero address or of zero tokens.
    error InvalidMint(address to, uint256 amount);

    constructor() ERC20("Fee On Transfer Test Token", "FOT") {}

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

    /// @dev Moves `value - fee` to `to` and burns `fee = floor(value * 1%)`; mints and burns pay no fee.
    function _update(address from, address to, uint256 value) internal override {
        if (from == address(0) || to == address(0)) {
            super._update(from, to, value);
            return;
        }
        uint256 fee = value * FEE_BPS / 10_000;
        super._update(from, to, value - fee);
        if (fee != 0) super._update(from, address(0), fee);
    }
}
