"""doit entry point: `doit [pipeline=FILE] [task ...]`. The tasks come from pipeline.yaml via
smolvla_build.stages; nothing else lives here."""

import sys

from doit import get_var

from smolvla_build.stages import load_tasks, refuse_unknown_variables

refuse_unknown_variables(sys.argv[1:])
DOIT_CONFIG, _creators = load_tasks(get_var("pipeline", "pipeline.yaml"), lock=True)
globals().update(_creators)
