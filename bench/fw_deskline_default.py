"""deskline's embedded default (0 model calls) as its own row; see fw_deskline.py."""

import os

os.environ["DESKLINE_BENCH_MODE"] = "default"

from fw_deskline import (  # noqa: F401
    FANOUT_IDIOM,
    IDIOM,
    MODEL_CALLS_PER_FANOUT,
    MODEL_CALLS_PER_TURN,
    NAME,
    PACKAGES,
    setup,
    turn,
)
