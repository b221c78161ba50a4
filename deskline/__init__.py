"""deskline: customer support run by a strategy -> tactical -> operation hierarchy of agents.

The public API is re-exported here; everything else is reachable by its module path.
"""

from deskline.config import Settings
from deskline.errors import DesklineError
from deskline.hierarchy.desk import SupportDesk, TurnResult
from deskline.runtime import memory_desk, open_desk

__version__ = "0.1.0"

__all__ = ["DesklineError", "Settings", "SupportDesk", "TurnResult", "__version__", "memory_desk", "open_desk"]
