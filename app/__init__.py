"""TradeGuard application package."""
