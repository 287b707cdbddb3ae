"""The Spark Runner: batch manifests in, Spark jobs out (Submit / Check / Cancel over gRPC).

``manifest`` validates a SparkJob manifest; ``program`` runs one on a SparkSession (its own driver
or a warm pooled one, the same code); ``store`` keeps jobs (SQLite / PostgreSQL); ``backends``
execute them (local now; Kubernetes SparkApplications are built by ``kubernetes``); ``service``
is the gRPC ``sparkrunner.SparkRunnerService``.
"""
