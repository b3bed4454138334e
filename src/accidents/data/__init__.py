"""Where the data comes from: the official BAAC tables (download or local mirror), the demo-only
synthetic fallback, and the labelled accidents the label job and replay read."""
