"""Tests of the project as a whole: layering, the built wheel, the deployment files."""
