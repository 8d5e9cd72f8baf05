"""Client-side code that talks to TradeGuard over HTTP only (the demo, and wallets' signing)."""
