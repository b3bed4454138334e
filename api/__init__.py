"""accidents-mlops prediction service (FastAPI)."""
