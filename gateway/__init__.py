"""smsgate daemon side: codec, outbox, dispatch, inbound, campaigns, API, config and CLI.

Importing this package never imports Textual; the TUI lives in the separate ``tui`` package.
"""
