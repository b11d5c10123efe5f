"""NotiSync: mirror a phone's notifications to every other device of its owner."""

__version__ = "0.1.0"
