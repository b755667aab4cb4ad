"""Region features: bottom-up-attention Faster R-CNN and friends (see docs/architecture.md)."""
