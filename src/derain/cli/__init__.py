"""The ``derain`` command: one thin module per sub-command, each a shell over the Python API."""
