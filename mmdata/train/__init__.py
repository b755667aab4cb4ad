"""The reference pretraining loop (reads corpora only through mmdata.stream)."""
