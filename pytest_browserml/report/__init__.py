"""The session's reports: the JSON ledger and the HTML page."""
