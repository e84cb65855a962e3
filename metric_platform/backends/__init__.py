"""Data API backends: how the engine reads source data (Parquet, SQLite, PostgreSQL)."""
