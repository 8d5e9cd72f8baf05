"""Pure rules of TradeGuard: money split, order state, ids. No I/O."""
