"""Station services, split by sub-domain: credentials, ocpp (what chargers report), management (operators)."""
