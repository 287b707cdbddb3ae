"""Spark Connect protocol knowledge shared by the gateway and the cluster layer.

``wire`` reads and writes the few top-level protobuf fields sparkgate needs without decoding plans;
``status`` builds the error statuses real clients understand; ``probe`` runs tiny queries on drivers.
"""
