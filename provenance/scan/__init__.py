"""Watermark scans of whole datasets: result rows, the resumable scan folder, and the Ray engine.

The core knows nothing of images or texts: a modality supplies a ``UnitScorer`` (``engine.py``)
that turns a unit of items into rows (``rows.py``); the CLI lists the items, the engine runs the
units through a Ray actor pool, and the scan folder (``folder.py``) logs every row as it comes
back so that a rerun scores only what is new.
"""
