"""Ways out: one package per transport, each a pure protocol core plus a thin asyncio layer.

Drivers import ``gateway.codec`` (and ``gateway.codec.errors``) and nothing else of the daemon.
"""
