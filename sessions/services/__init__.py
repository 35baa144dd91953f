"""Session services, split by sub-domain: transactions (what chargers report), tokens (operators)."""
