"""On-chain side: compiler pipeline, contract clients."""
