"""mmdata: build multimodal (image-text) pretraining corpora.

Recipes (YAML) name a source and stages; the engine runs them (locally or on Ray) into
Parquet shards listed in a DuckDB catalog; mmdata.stream feeds the shards to trainers and
mmdata.exports writes them for other code. docs/architecture.md draws the layout.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mmdata")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
