"""Logistics feeds, parsed without I/O: EPCIS 2.0 documents, carrier webhooks, outbound webhook signatures."""
