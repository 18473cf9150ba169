"""Keeping attackers out: brute-force protection, SASL mechanisms, app passwords,
connection limits."""
