"""What a model is: training recipe, bundle format, compiled trees for serving, explanations,
importance, plots, the promotion rule, the reference profile and the MLflow registry client."""
