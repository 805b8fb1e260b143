"""Simulators that are part of the product: an SMSC (SMPP server) and GSM modems on real ptys."""
