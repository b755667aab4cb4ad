"""Streaming a corpus's shards into trainers: ``ShardStream`` (a torch IterableDataset)."""

from mmdata.stream.shards import StreamError
from mmdata.stream.stream import ShardStream

__all__ = ["ShardStream", "StreamError"]
