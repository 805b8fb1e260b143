"""SMPP 3.4 ESME: a pure session core, smpplib as wire codec only, and a thin asyncio client."""
