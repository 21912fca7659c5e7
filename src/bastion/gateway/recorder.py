"""Write-behind of audit events and predictions: the request path queues them, one thread writes them in batches.

Feedback, submissions and review decisions are written synchronously (the client is told they
were stored, so they must be durable before the answer leaves). Audit events and prediction
records are written within ``interval`` seconds instead, in one transaction per batch, so that a
prediction does not wait for a disk sync; a crash loses at most that interval of them. Anything
that refers to a prediction (feedback) calls :meth:`Recorder.flush` first.
"""

from __future__ import annotations

import logging
import queue
import threading

from bastion.gateway.store import AuditEvent, PredictionRecord, Store

__all__ = ["Recorder"]

logger = logging.getLogger(__name__)

_Item = AuditEvent | PredictionRecord


class Recorder:
    """A background writer in front of ``store``; ``close`` drains it."""

    def __init__(self, store: Store, *, interval: float = 0.05, max_batch: int = 512) -> None:
        self.store = store
        self.interval = interval
        self.max_batch = max_batch
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._idle = threading.Condition()
        self._pending = 0
        self._thread = threading.Thread(target=self._run, name="bastion-recorder", daemon=True)
        self._thread.start()

    def add(self, item: _Item) -> None:
        with self._idle:
            self._pending += 1
        self._queue.put(item)

    def flush(self, timeout: float = 10.0) -> None:
        """Block until everything queued so far is written."""
        with self._idle:
            self._idle.wait_for(lambda: self._pending == 0, timeout=timeout)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30.0)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = self._drain(batch)
            self._write(batch)
            with self._idle:
                self._pending -= len(batch)
                self._idle.notify_all()
            if stop:
                return

    def _drain(self, batch: list[_Item]) -> bool:
        """Collect what else arrives within ``interval``; True when told to stop."""
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get(timeout=self.interval)
            except queue.Empty:
                return False
            if item is None:
                return True
            batch.append(item)
        return False

    def _write(self, batch: list[_Item]) -> None:
        events = [item for item in batch if isinstance(item, AuditEvent)]
        predictions = [item for item in batch if isinstance(item, PredictionRecord)]
        try:
            self.store.write_batch(events=events, records=predictions)
        except Exception:  # the writer must outlive a database hiccup; the loss is logged
            logger.exception("could not write %d audit events and %d predictions", len(events), len(predictions))
