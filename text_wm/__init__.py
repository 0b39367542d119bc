"""Text watermarks for transformers language models (generation-time token watermarks)."""
