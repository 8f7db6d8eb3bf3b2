"""MLflow tracking, registration and the promotion gate."""
