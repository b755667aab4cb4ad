"""mmdata: build multimodal (image-text) pretraining corpora.

Recipes (YAML) name a source and stages; executors (local or Ray) run them into Parquet
shards listed in a DuckDB catalog; mmdata.stream feeds the shards to trainers.
"""

__version__ = "0.1.0"
