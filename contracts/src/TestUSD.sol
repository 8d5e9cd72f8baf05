// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";

/// @title tUSD, the dev-chain settlement token
/// @notice A 6-decimal stablecoin stand-in with EIP-2612 permit and a faucet. It refuses to be deployed on any
///         chain that is not a known development chain, so the faucet exists only on test deployments.
contract TestUSD is ERC20, ERC20Permit {
    /// @notice Most a single faucet call hands out: 1,000,000 tUSD.
    uint256 public constant FAUCET_LIMIT = 1_000_000 * 10 ** 6;

    /// @notice Deployment on a chain that is not a development chain.
    error NotADevChain(uint256 chainId);
    /// @notice Faucet request above {FAUCET_LIMIT}.
    error FaucetLimit(uint256 requested, uint256 limit);

    /// @dev Development chain ids: anvil/hardhat 31337, geth --dev 1337, eth-tester 131277322940537.
    constructor() ERC20("TradeGuard Test USD", "tUSD") ERC20Permit("TradeGuard Test USD") {
        uint256 id = block.chainid;
        if (id != 31337 && id != 1337 && id != 131277322940537) revert NotADevChain(id);
    }

    /// @notice 6 decimals, like USDC.
    function decimals() public pure override returns (uint8) {
        return 6;
    }

    /// @notice Mint test money to `to`.
    function faucet(address to, uint256 amount) external {
        if (amount > FAUCET_LIMIT) revert FaucetLimit(amount, FAUCET_LIMIT);
        _mint(to, amount);
    }
}
