"""Textual terminal UI. Imports neither ``drivers`` nor daemon internals, only a client layer."""
