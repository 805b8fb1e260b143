"""Segment store: subscribers, consent ledger, events, traits, segment rules and live membership."""
