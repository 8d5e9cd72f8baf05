// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IArbitrator} from "./IArbitrator.sol";

/// @title ERC-792 arbitrable
/// @notice A contract whose disputes an {IArbitrator} decides (ERC-792, as published by Kleros).
interface IArbitrable {
    /// @notice The arbitrator gave a final ruling.
    /// @param _arbitrator the arbitrator that ruled
    /// @param _disputeID the arbitrator's id of the dispute
    /// @param _ruling the ruling (0 = refused to arbitrate, else one of the dispute's choices)
    event Ruling(IArbitrator indexed _arbitrator, uint256 indexed _disputeID, uint256 _ruling);

    /// @notice Give a ruling for a dispute. Must be called by the arbitrator that created the dispute.
    /// @param _disputeID the arbitrator's id of the dispute
    /// @param _ruling the ruling (0 = refused to arbitrate)
    function rule(uint256 _disputeID, uint256 _ruling) external;
}
