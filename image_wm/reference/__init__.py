"""The project's miniature text-to-image/video world: procedural scenes now; trained models to come."""
