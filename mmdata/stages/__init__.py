"""Built-in stages, one registered stage per module. Importing this package registers them."""

from mmdata.stages import caption_filter, download, image_size_filter, read_images

__all__ = ["caption_filter", "download", "image_size_filter", "read_images"]
