"""Acquisition: the serial frame codec (framing.py), the sample ring and the sources."""
