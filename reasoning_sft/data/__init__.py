"""Data sources: each `conf/data/*.yaml` names one through `source._target_`."""
