"""Gateway fixtures (see gateway_live.py for the helpers behind them)."""

from __future__ import annotations

from gateway_live import make_gateway, postgres_database, postgres_url, redis_url, served

__all__ = ["make_gateway", "postgres_database", "postgres_url", "redis_url", "served"]
