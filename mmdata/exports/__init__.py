"""Writing a corpus for other code: region features in LXMERT's and UNITER's layouts
(regions), webdataset tars and a Hugging Face dataset folder (interop), a vokens layer in
the original Vokenization trainer's hdf5 files (vokenization); and reading it from other
ecosystems (interop: the shard list, datasets; ray_data: Ray Data)."""

#: ``mmdata export --format``: region-feature layouts (regions.py), then whole-corpus
#: formats (interop.py; vokenization.py: a vokens layer of one corpus). The one list of
#: export formats.
REGION_FORMATS = ("lxmert-tsv", "uniter-npz")
CORPUS_FORMATS = ("webdataset", "hf", "vokenization-hdf5")
FORMATS = REGION_FORMATS + CORPUS_FORMATS
