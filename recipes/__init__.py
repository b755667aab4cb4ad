"""Ready recipes (YAML files beside this one), shipped with mmdata."""
