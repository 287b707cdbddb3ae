"""A feature-engineering Metaflow flow whose Spark step runs through sparkgate, anywhere it runs.

    python examples/metaflow/feature_flow.py run --team t1 --environment local --date "$(date -I)"

The session comes from ``sparkgate.client.metaflow.get_spark_session``
(gateway address, user and token handled for you); team and date are parameters; the
``@kubernetes`` decorators are left to the deployment (``run --with kubernetes``) so the same file
runs on a laptop; the model is a tiny least-squares fit so the example needs no scikit-learn.
"""

from __future__ import annotations

from metaflow import FlowSpec, Parameter, step

from sparkgate.client.metaflow import get_spark_session


class FeatureEngineeringFlow(FlowSpec):
    """ML pipeline that extracts features via Spark Connect."""

    team = Parameter("team", help="Team whose drivers run the query", default="ml-platform")
    environment = Parameter("environment", help="Target environment", default="staging")
    date = Parameter("date", help="Date partition to process (YYYY-MM-DD)", default="2024-01-01")

    @step
    def start(self):  # type: ignore[no-untyped-def]
        """Initialize pipeline."""
        print(f"Starting feature pipeline for {self.date}")
        self.next(self.extract_features)

    @step
    def extract_features(self):  # type: ignore[no-untyped-def]
        """Extract features from Spark via Spark Connect."""
        spark = get_spark_session(self.team, self.environment)
        try:
            self.user_features = spark.sql(f"""
                SELECT user_id, total_events, views, clicks, purchases, click_through_rate
                FROM pedregal.feature_store.user_features
                WHERE ds = '{self.date}'
            """).toPandas()
            print(f"Extracted {len(self.user_features)} user features")
        finally:
            spark.stop()
        self.next(self.train_model)

    @step
    def train_model(self):  # type: ignore[no-untyped-def]
        """Fit purchases from the other features (a stand-in for real training)."""
        import numpy as np

        features = self.user_features
        x = features[["views", "clicks", "click_through_rate"]].to_numpy(dtype=float)
        y = features["purchases"].to_numpy(dtype=float)
        x = np.hstack([x, np.ones((len(x), 1))])
        self.coefficients = np.linalg.lstsq(x, y, rcond=None)[0].tolist() if len(x) else []
        print(f"Trained on {len(features)} rows: coefficients {self.coefficients}")
        self.next(self.end)

    @step
    def end(self):  # type: ignore[no-untyped-def]
        """Pipeline complete."""
        print("Feature engineering pipeline complete!")


if __name__ == "__main__":
    FeatureEngineeringFlow()
