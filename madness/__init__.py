"""Pure logic of the March Madness MLflow workflow. Nothing in this package imports mlflow."""
