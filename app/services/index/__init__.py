"""The index: the escrow's events followed into the database behind the confirmation depth (reorgs rolled
back), the order rows projected from them, the one gateway that says what an order is now, and the audit
that holds the index against the chain."""
