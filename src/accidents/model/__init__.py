"""What a model is: training recipe, bundle format, compiled trees for serving, explanations,
importance, plots, the promotion rule, the reference profile, the calibration set monitoring estimates
with, and the MLflow registry client."""
