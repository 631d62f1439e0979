"""Hyperparameter sweeps: the study's storage shared by every machine (:mod:`.storage`), the link
from a running trial's train stage back to its study (:mod:`.trial_link`), and the study's pictures
and table (:mod:`.report`). The sweep itself is :mod:`imdb_mlops.orchestration.sweep`."""
