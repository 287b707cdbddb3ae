// sparkgate's session extensions (spark.sql.extensions=io.sparkgate.Extensions): two check rules,
// one per session state, that run on every plan a session analyzes, before it runs:
//   * EagerCatalogs loads the configured catalogs with a session's first plan;
//   * Sandbox confines a batch job's sandboxed session.
// Built by sparkgate.spark.plugin with javac against the pyspark wheel's jars.
package io.sparkgate;

import io.sparkgate.catalog.EagerCatalogs;
import io.sparkgate.sandbox.Sandbox;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.SparkSessionExtensions;
import org.apache.spark.sql.catalyst.plans.logical.LogicalPlan;
import scala.runtime.AbstractFunction1;
import scala.runtime.BoxedUnit;

public class Extensions extends AbstractFunction1<SparkSessionExtensions, BoxedUnit> {
  @Override public BoxedUnit apply(SparkSessionExtensions extensions) {
    // The builders only create the rules: touching sessionState here would recurse into the state being built.
    extensions.injectCheckRule(new AbstractFunction1<SparkSession, scala.Function1<LogicalPlan, BoxedUnit>>() {
      @Override public scala.Function1<LogicalPlan, BoxedUnit> apply(SparkSession session) {
        return new EagerCatalogs(session);
      }
    });
    extensions.injectCheckRule(new AbstractFunction1<SparkSession, scala.Function1<LogicalPlan, BoxedUnit>>() {
      @Override public scala.Function1<LogicalPlan, BoxedUnit> apply(SparkSession session) {
        return new Sandbox(session);
      }
    });
    return BoxedUnit.UNIT;
  }
}
