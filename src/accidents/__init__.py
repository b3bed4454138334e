"""accidents: the BAAC road-accident severity pipeline (DVC stages) and its shared contract."""
