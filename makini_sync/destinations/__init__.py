"""Destination profiles (``destinations.toml``) and what each destination needs
beyond dlt: DuckDB's memory headroom, PostgreSQL's key indexes, and the
MongoDB destination itself."""
