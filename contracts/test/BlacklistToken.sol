// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title Blacklisting test token
/// @notice Test double for a USDC-style stablecoin whose owner can blacklist addresses: any transfer from or to
///         a blacklisted address reverts with {Blacklisted}. Used to prove that one recipient whose transfer
///         fails never blocks other orders or other recipients.
/// @dev Never deploy outside tests: anyone may mint.
contract BlacklistToken is ERC20, Ownable {
    /// @notice Whether an address is blacklisted.
    mapping(address account => bool) public isBlacklisted;

    /// @notice A transfer from or to a blacklisted address.
    error Blacklisted(address account);
    /// @notice A mint to the zero address or of zero tokens.
    error InvalidMint(address to, uint256 amount);

    /// @notice The blacklist status of `account` changed.
    event BlacklistSet(address indexed account, bool blacklisted);

    /// @notice The deployer owns the blacklist.
    constructor() ERC20("Blacklist Test Token", "BLT") Ownable(msg.sender) {}

    /// @notice 6 decimals, like the stablecoins it imitates.
    function decimals() public pure override returns (uint8) {
        return 6;
    }

    /// @notice Mint `amount` to `to`; open to anyone (test double), but not to a blacklisted address.
    /// @param to receiver of the new tokens
    /// @param amount base units to mint
    function mint(address to, uint256 amount) external {
        if (to == address(0) || amount == 0) revert InvalidMint(to, amount);
        _mint(to, amount);
    }

    /// @notice Blacklist (true) or clear (false) `account`; owner only.
    /// @param account the address
    /// @param blacklisted the new status
    function setBlacklisted(address account, bool blacklisted) external onlyOwner {
        isBlacklisted[account] = blacklisted;
        emit BlacklistSet(account, blacklisted);
    }

    /// @dev Refuses any balance change of a blacklisted address (mints to and burns from it included).
    function _update(address from, address to, uint256 value) internal override {
        if (isBlacklisted[from]) revert Blacklisted(from);
        if (isBlacklisted[to]) revert Blacklisted(to);
        super._update(from, to, value);
    }
}
