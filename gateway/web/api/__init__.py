"""HTTP API blueprints. Each module is a builtin plugin that registers its blueprint."""
