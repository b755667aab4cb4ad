"""The catalog's SQL: numbered DDL migrations, applied in order by mmdata.catalog.store."""
