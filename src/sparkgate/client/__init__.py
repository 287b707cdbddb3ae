"""Connect to Spark through the sparkgate Spark Gateway, from notebooks, services, CI and pipelines.

    from sparkgate.client import get_spark, show_databases
    spark = get_spark("data-science", "staging")
    spark.sql("SELECT 1").show()

Light: needs only the Spark Connect client (``pip install 'pyspark[connect]'``), not the server jars.
The routing headers travel as connection-string parameters — real gRPC headers on every call, for
every client — rather than the ``spark.connect.grpc.header.*`` builder options only our gateway
reads from a Config call.
"""

from sparkgate.client._session import (
    GatewayError,
    connection_url,
    describe_table,
    gateway_for,
    get_spark,
    show_catalogs,
    show_databases,
    show_tables,
)

__all__ = [
    "GatewayError",
    "connection_url",
    "describe_table",
    "gateway_for",
    "get_spark",
    "show_catalogs",
    "show_databases",
    "show_tables",
]
