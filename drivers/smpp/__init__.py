"""SMPP 3.4 ESME: a pure session core, smpplib as wire codec only, and a thin asyncio client.

For the daemon:
- ``config.SmppConfig`` / ``config.BindMode``: one bind's settings (window, throughput, TLS,
  timeouts, backoff, ``receipts.IdConvention`` for the carrier's message-id formats).
- ``client.SmppClient(config, handler=..., mo_store=...)``: ``async with`` it,
  ``await wait_bound()``, ``await submit(SubmitRequest) -> Accepted | Rejected | Unknown``,
  ``statistics()``. ``submit(..., wait_bound_timeout=s)`` (or ``config.wait_bound_timeout``)
  gives ``Unavailable`` (a ``Rejected`` of class LINK: nothing was written) when no bound link
  came within ``s`` seconds. ``handler`` receives ``receipts.DeliveryReceipt`` and
  ``mo.MobileOriginated``; the deliver_sm_resp is written after it returns.
- ``mo_store.MoPartStore``: where parts of a multipart MO wait; the part's deliver_sm_resp
  is written after ``store.add`` returned, so a durable store makes acknowledged parts survive
  a crash. Default ``mo_store.InMemoryMoStore``.
- ``submit.submit_requests(EncodedMessage, destination, ...)``: the codec's parts as requests.

Pure pieces: ``pdu`` (wire format), ``session`` (state table, window, sequence numbers),
``receipts``, ``mo`` (decoding, reassembly), ``throttle`` (adaptive rate, backoff), ``errors``.
"""
