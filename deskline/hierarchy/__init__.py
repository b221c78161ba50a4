"""The three layers of a turn and the desk that runs them."""

from deskline.hierarchy.desk import SupportDesk
from deskline.hierarchy.turn import TurnResult

__all__ = ["SupportDesk", "TurnResult"]
