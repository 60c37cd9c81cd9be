"""Shared set-up: the repository's scripts import as modules (train_gpt, data/*.py, tools/*.py,
tests/fakehub.py), and the tests read the log format through tools/logformat.py, its one home."""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for folder in ("", "data", "tools", "tests"):
    sys.path.insert(0, os.path.join(REPO, folder))
