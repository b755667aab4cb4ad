"""Writing a corpus for other code: region features in LXMERT's and UNITER's layouts
(regions), webdataset tars (webdataset), a Hugging Face dataset folder (hf); and reading
it from other ecosystems (loaders: the shard list, datasets, Ray Data)."""
