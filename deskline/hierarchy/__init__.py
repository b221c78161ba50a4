"""The three layers of a turn and the desk that runs them."""

from deskline.hierarchy.desk import SupportDesk, TurnResult

__all__ = ["SupportDesk", "TurnResult"]
