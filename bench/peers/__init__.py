"""Peer servers the benchmark compares NotiSync against (see README.md)."""
