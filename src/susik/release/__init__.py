"""The release pipeline: the model lifecycle as one DVC pipeline (dvc.yaml), run by `susik release`.

profile.py: the profile YAML and the training configs it derives; runner.py: DVC, offline;
commands.py: `susik release` and the pipeline's own steps.
"""
