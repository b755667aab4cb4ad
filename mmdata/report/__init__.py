"""`mmdata report` and `mmdata inspect`: see a corpus, or one sample, as a researcher
judges it: the filter funnel, distributions, duplicates, and samples drawn with their
boxes and scene graphs."""

from __future__ import annotations

from pathlib import Path

from mmdata.catalog.store import Catalog


def build_report(
    catalog: str, corpus: str, out: str | Path, samples: int = 24, seed: int = 0
) -> Path:
    """Write the self-contained HTML report of ``corpus`` to ``out``; returns its path."""
    from mmdata.core.io import written_whole
    from mmdata.report.gather import gather
    from mmdata.report.page import report_page

    facts = gather(Catalog(catalog), corpus, sample_count=samples, seed=seed)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with written_whole(path) as partial:
        partial.write_text(report_page(facts, catalog), encoding="utf-8")
    return path
