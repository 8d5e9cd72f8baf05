// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IArbitrable} from "../src/interfaces/IArbitrable.sol";
import {IArbitrator} from "../src/interfaces/IArbitrator.sol";

/// @title A small centralized ERC-792 arbitrator (test double)
/// @notice One owner decides every dispute. Creating a dispute costs `fee` (native currency); with a non-zero
///         `appealWindow` a ruling is first appealable for that long (an appeal costs `appealFee` and sends the
///         dispute back to the owner), then anyone executes it; with a zero window the owner's ruling is final at
///         once and passed to the arbitrable in the same call.
contract CentralizedArbitrator is IArbitrator {
    /// @notice A dispute as this arbitrator keeps it.
    struct DisputeInfo {
        /// @dev the contract that created it and receives the ruling
        IArbitrable arbitrable;
        /// @dev number of ruling options
        uint256 choices;
        /// @dev the owner's latest ruling
        uint256 ruling;
        /// @dev waiting, appealable or solved
        DisputeStatus status;
        /// @dev start of the appeal period
        uint64 appealStart;
        /// @dev end of the appeal period
        uint64 appealEnd;
    }

    /// @notice Who rules.
    address public immutable owner;
    /// @notice Cost of a dispute.
    uint256 public immutable fee;
    /// @notice Cost of an appeal.
    uint256 public immutable appealFee;
    /// @notice Seconds a ruling stays appealable (0: no appeals).
    uint64 public immutable appealWindow;

    DisputeInfo[] private _disputes;

    /// @notice The caller is not the owner.
    error NotOwner(address caller);
    /// @notice Less than the cost was paid.
    error InsufficientPayment(uint256 paid, uint256 cost);
    /// @notice No such dispute, or it is not in the status the call needs.
    error InvalidDisputeStatus(uint256 disputeID, DisputeStatus status);
    /// @notice The ruling is not one of the dispute's options.
    error InvalidRulingChoice(uint256 ruling, uint256 choices);
    /// @notice The appeal period has not ended, or has ended already.
    error AppealPeriod(uint256 disputeID, uint256 start, uint256 end);
    /// @notice Paying out the fees failed.
    error PayoutFailed();

    /// @param owner_ who rules
    /// @param fee_ arbitration cost in wei
    /// @param appealFee_ appeal cost in wei
    /// @param appealWindow_ seconds a ruling stays appealable (0: final at once)
    constructor(address owner_, uint256 fee_, uint256 appealFee_, uint64 appealWindow_) {
        owner = owner_;
        fee = fee_;
        appealFee = appealFee_;
        appealWindow = appealWindow_;
    }

    /// @inheritdoc IArbitrator
    function createDispute(uint256 _choices, bytes calldata _extraData) external payable returns (uint256 disputeID) {
        uint256 cost = arbitrationCost(_extraData);
        if (msg.value < cost) revert InsufficientPayment(msg.value, cost);
        disputeID = _disputes.length;
        _disputes.push(
            DisputeInfo({
                arbitrable: IArbitrable(msg.sender),
                choices: _choices,
                ruling: 0,
                status: DisputeStatus.Waiting,
                appealStart: 0,
                appealEnd: 0
            })
        );
        emit DisputeCreation(disputeID, IArbitrable(msg.sender));
    }

    /// @notice The owner rules on a waiting dispute: final at once without appeals, else appealable.
    /// @param disputeID the dispute
    /// @param ruling 0 (refuse to arbitrate) or 1..choices
    function giveRuling(uint256 disputeID, uint256 ruling) external {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        DisputeInfo storage d = _dispute(disputeID, DisputeStatus.Waiting);
        if (ruling > d.choices) revert InvalidRulingChoice(ruling, d.choices);
        d.ruling = ruling;
        if (appealWindow == 0) {
            d.status = DisputeStatus.Solved;
            d.arbitrable.rule(disputeID, ruling);
        } else {
            d.status = DisputeStatus.Appealable;
            d.appealStart = uint64(block.timestamp);
            d.appealEnd = uint64(block.timestamp) + appealWindow;
            emit AppealPossible(disputeID, d.arbitrable);
        }
    }

    /// @notice Anyone passes an appealable ruling to the arbitrable once its appeal period is over.
    /// @param disputeID the dispute
    function executeRuling(uint256 disputeID) external {
        DisputeInfo storage d = _dispute(disputeID, DisputeStatus.Appealable);
        if (block.timestamp <= d.appealEnd) revert AppealPeriod(disputeID, d.appealStart, d.appealEnd);
        d.status = DisputeStatus.Solved;
        d.arbitrable.rule(disputeID, d.ruling);
    }

    /// @inheritdoc IArbitrator
    function appeal(uint256 _disputeID, bytes calldata _extraData) external payable {
        DisputeInfo storage d = _dispute(_disputeID, DisputeStatus.Appealable);
        if (block.timestamp > d.appealEnd) revert AppealPeriod(_disputeID, d.appealStart, d.appealEnd);
        uint256 cost = appealCost(_disputeID, _extraData);
        if (msg.value < cost) revert InsufficientPayment(msg.value, cost);
        (d.status, d.appealStart, d.appealEnd) = (DisputeStatus.Waiting, 0, 0);
        emit AppealDecision(_disputeID, d.arbitrable);
    }

    /// @notice The owner takes the fees paid.
    /// @param to receives the balance
    function withdrawFees(address payable to) external {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        (bool ok,) = to.call{value: address(this).balance}("");
        if (!ok) revert PayoutFailed();
    }

    /// @inheritdoc IArbitrator
    function arbitrationCost(bytes calldata) public view returns (uint256) {
        return fee;
    }

    /// @inheritdoc IArbitrator
    function appealCost(uint256, bytes calldata) public view returns (uint256) {
        return appealFee;
    }

    /// @inheritdoc IArbitrator
    function appealPeriod(uint256 _disputeID) external view returns (uint256 start, uint256 end) {
        DisputeInfo storage d = _disputes[_disputeID];
        return (d.appealStart, d.appealEnd);
    }

    /// @inheritdoc IArbitrator
    function disputeStatus(uint256 _disputeID) external view returns (DisputeStatus) {
        return _disputes[_disputeID].status;
    }

    /// @inheritdoc IArbitrator
    function currentRuling(uint256 _disputeID) external view returns (uint256) {
        return _disputes[_disputeID].ruling;
    }

    /// @notice How many disputes were created.
    /// @return count the number of disputes
    function disputeCount() external view returns (uint256) {
        return _disputes.length;
    }

    function _dispute(uint256 disputeID, DisputeStatus expected) private view returns (DisputeInfo storage d) {
        if (disputeID >= _disputes.length) revert InvalidDisputeStatus(disputeID, DisputeStatus.Solved);
        d = _disputes[disputeID];
        if (d.status != expected) revert InvalidDisputeStatus(disputeID, d.status);
    }
}
