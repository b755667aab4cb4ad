"""The foundation every other part imports: the row schema, batches, the Stage and Source
base classes, the plugin registry, recipe arguments, errors, safe file I/O, progress,
fault points. Imports nothing else of mmdata."""
