"""The serving core: the champion (and shadow challenger) loaded from the registry, hot swaps,
validation of feature rows, inference and explanations."""
