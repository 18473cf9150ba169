"""Mailhaven: an IMAP4rev1 / IMAP4rev2 mail server."""

__version__ = "0.1.0"
