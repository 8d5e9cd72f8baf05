// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IArbitrable} from "./IArbitrable.sol";

/// @title ERC-792 arbitrator
/// @notice The standard arbitrator interface (ERC-792, as published by Kleros): an arbitrable contract creates a
///         dispute and pays its cost; the arbitrator later calls {IArbitrable.rule}. Rulings may be appealed
///         during the appeal period if the arbitrator supports appeals.
interface IArbitrator {
    /// @notice Status of a dispute.
    enum DisputeStatus {
        Waiting,
        Appealable,
        Solved
    }

    /// @notice A dispute was created.
    /// @param _disputeID the new dispute's id
    /// @param _arbitrable the contract that created it
    event DisputeCreation(uint256 indexed _disputeID, IArbitrable indexed _arbitrable);

    /// @notice A ruling may now be appealed.
    /// @param _disputeID the dispute
    /// @param _arbitrable the contract that created it
    event AppealPossible(uint256 indexed _disputeID, IArbitrable indexed _arbitrable);

    /// @notice A ruling was appealed.
    /// @param _disputeID the dispute
    /// @param _arbitrable the contract that created it
    event AppealDecision(uint256 indexed _disputeID, IArbitrable indexed _arbitrable);

    /// @notice Create a dispute; must be paid at least {arbitrationCost}.
    /// @param _choices number of ruling options (rulings are 0 = refused, 1.._choices)
    /// @param _extraData arbitrator-specific options (e.g. court and juror count)
    /// @return disputeID the new dispute's id
    function createDispute(uint256 _choices, bytes calldata _extraData)
        external
        payable
        returns (uint256 disputeID);

    /// @notice The cost of creating a dispute.
    /// @param _extraData arbitrator-specific options
    /// @return cost in the chain's native currency (wei)
    function arbitrationCost(bytes calldata _extraData) external view returns (uint256 cost);

    /// @notice Appeal a ruling; must be paid at least {appealCost}.
    /// @param _disputeID the dispute
    /// @param _extraData arbitrator-specific options
    function appeal(uint256 _disputeID, bytes calldata _extraData) external payable;

    /// @notice The cost of appealing a ruling.
    /// @param _disputeID the dispute
    /// @param _extraData arbitrator-specific options
    /// @return cost in the chain's native currency (wei)
    function appealCost(uint256 _disputeID, bytes calldata _extraData) external view returns (uint256 cost);

    /// @notice The period during which a ruling may be appealed (0, 0 when not appealable).
    /// @param _disputeID the dispute
    /// @return start start of the period
    /// @return end end of the period
    function appealPeriod(uint256 _disputeID) external view returns (uint256 start, uint256 end);

    /// @notice The dispute's status.
    /// @param _disputeID the dispute
    /// @return status waiting, appealable or solved
    function disputeStatus(uint256 _disputeID) external view returns (DisputeStatus status);

    /// @notice The current ruling (final once solved).
    /// @param _disputeID the dispute
    /// @return ruling the current ruling
    function currentRuling(uint256 _disputeID) external view returns (uint256 ruling);
}
