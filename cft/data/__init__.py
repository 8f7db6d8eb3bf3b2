"""Row schemas, JSONL/Parquet IO, content-hash ids and dataset adapters."""
