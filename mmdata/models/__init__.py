"""Models that stages run: region detectors (regions), the scene-graph parser
(scenegraph), and vokenization's search, sentence cut and revokenization (vokens)."""
