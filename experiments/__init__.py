"""The bundled experiments: one YAML file per experiment, installed with the package as package data.

A bare name on the command line (``alignvar-bench bench demo``) names one of these when no such file exists.
"""
