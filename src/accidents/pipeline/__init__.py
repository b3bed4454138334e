"""The DVC stages, one module per stage of dvc.yaml (`python -m accidents.pipeline.<stage>`),
plus the temporal backtest."""
