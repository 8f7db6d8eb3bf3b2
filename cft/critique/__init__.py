"""Teacher prompts, verdict parsing and critic backends."""
