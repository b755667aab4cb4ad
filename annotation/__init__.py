"""Importers of public image-text annotation formats, registered as mmdata sources.

They plug into mmdata through the ``mmdata.sources`` entry-point group (pyproject.toml);
mmdata never imports this package directly.
"""
