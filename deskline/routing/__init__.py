"""Routing: the local triage classifier (and, later, the model router and route cache)."""

from deskline.routing.classifier import Classifier, Prediction, load_classifier, normalise

__all__ = ["Classifier", "Prediction", "load_classifier", "normalise"]
