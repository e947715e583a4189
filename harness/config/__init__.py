"""Experiment configs: YAML files with ``base:`` and overrides (``files``), component blocks (``components``) and
the typed experiment sections (``experiment``)."""
