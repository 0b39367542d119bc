"""Error-correcting codes that protect watermark payload bits."""
