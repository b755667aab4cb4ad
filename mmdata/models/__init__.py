"""Models that stages run: region detectors (regions) and the scene-graph parser
(scenegraph)."""
