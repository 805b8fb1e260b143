"""Inbound traffic: keyword handling (STOP/HELP/START) now; MO reassembly and reply events next.

Everything here is pure; the daemon feeds it texts and consent facts and acts on the decisions.
"""
