"""Running a recipe: loading and checking it (recipe), the executors that run its stages
(local, Ray), the sink that writes shards, the committer and run lock, and retries.
Uses core and catalog."""
