"""Writing a corpus for other code: region features in LXMERT's and UNITER's layouts
(regions), webdataset tars and a Hugging Face dataset folder (interop); and reading it
from other ecosystems (interop: the shard list, datasets; ray_data: Ray Data)."""

#: ``mmdata export --format``: region-feature layouts (regions.py), then whole-corpus
#: formats (interop.py). The one list of export formats.
REGION_FORMATS = ("lxmert-tsv", "uniter-npz")
CORPUS_FORMATS = ("webdataset", "hf")
FORMATS = REGION_FORMATS + CORPUS_FORMATS
