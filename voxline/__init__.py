"""Voxline's command line and process management (the ``voxline`` command)."""
