"""GSM modems over AT commands (3GPP TS 27.005): SMS TPDUs, AT channel, serial transport, pool."""
