"""The inbox: logistics inputs (EPCIS captures, carrier webhooks, oracles' attestations) validated, stored
durably before they are acknowledged, then matched to orders and turned into the relayer's intents."""
