"""The DuckDB catalog: which shards exist and what they hold (store.py); its SQL
migrations and views are the top-level catalog/ folder, installed as mmdata.catalog.sql."""

from mmdata.catalog.store import Catalog, CatalogError, sql_literal

__all__ = ["Catalog", "CatalogError", "sql_literal"]
