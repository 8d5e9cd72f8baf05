"""The outbox: what leaves the service - the relayer's intents (the signed messages and the contract calls
they become, nonces, fees, receipts) and the merchants' webhooks (endpoints, signed deliveries, retries)."""
