"""Mail flow: LMTP delivery, import and export, backup and restore."""
