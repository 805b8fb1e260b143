"""GSM modems over AT commands (3GPP TS 27.005): SMS TPDUs, AT channel, serial transport, pool.

Public entry points: :class:`drivers.modem.pool.ModemPool` (several modems serving a route),
:class:`drivers.modem.client.ModemClient` (one modem), :class:`drivers.modem.config.ModemConfig`,
the pure :class:`drivers.modem.at.AtChannel`, and the TPDU codec in :mod:`drivers.modem.pdu`.
"""
