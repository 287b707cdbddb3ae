"""Spark itself on this machine: the distribution, and sparkgate's driver plugin built against it."""
