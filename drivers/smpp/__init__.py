"""SMPP 3.4 ESME: a pure session core, smpplib as wire codec only, and a thin asyncio client.

For the daemon:
- ``config.SmppConfig`` / ``config.BindMode``: one bind's settings (window, throughput, TLS,
  timeouts, backoff, ``receipts.IdConvention`` for the carrier's message-id formats).
- ``client.SmppClient(config, handler=...)``: ``async with`` it, ``await wait_bound()``,
  ``await submit(SubmitRequest) -> Accepted | Rejected | Unknown``, ``statistics()``.
  ``handler`` receives ``receipts.DeliveryReceipt`` and ``mo.MobileOriginated``; the
  deliver_sm_resp is written after it returns.
- ``submit.submit_requests(EncodedMessage, destination, ...)``: the codec's parts as requests.

Pure pieces: ``pdu`` (wire format), ``session`` (state table, window, sequence numbers),
``receipts``, ``mo`` (reassembly), ``throttle`` (adaptive rate, backoff), ``errors``.
"""
