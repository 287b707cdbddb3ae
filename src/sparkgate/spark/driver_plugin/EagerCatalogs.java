// A check rule (see Extensions) that loads every configured catalog when a session
// analyzes its first plan, so `SHOW CATALOGS` lists them from a session's very first statement.
//
// Spark loads catalog plugins lazily (CatalogManager.catalog(name), on first use) and
// CatalogManager.listCatalogs lists only the loaded ones plus spark_catalog. Every Spark Connect
// session is a SparkSession of its own (SessionHolder: newSession()), with its own CatalogManager,
// so the load must happen per session. It happens in a check rule's apply(), which runs after the
// session state is built, for every plan, before a command like SHOW CATALOGS executes; the
// builder only creates the rule (touching sessionState there would recurse into the state being
// built). After the first plan a rule costs one atomic read per plan.
// Built by sparkgate.spark.plugin with javac against the pyspark wheel's jars.
package io.sparkgate.catalog;

import java.util.concurrent.atomic.AtomicBoolean;

import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.catalyst.plans.logical.LogicalPlan;
import org.apache.spark.sql.connector.catalog.CatalogManager;
import org.apache.spark.sql.internal.SessionState;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import scala.jdk.javaapi.CollectionConverters;
import scala.runtime.AbstractFunction1;
import scala.runtime.BoxedUnit;

/** One per session state: loads the session's configured catalogs on its first plan. */
public class EagerCatalogs extends AbstractFunction1<LogicalPlan, BoxedUnit> {
  private static final Logger LOG = LoggerFactory.getLogger(EagerCatalogs.class);
  private static final String PREFIX = "spark.sql.catalog.";
  private final SparkSession session;
  // Set before loading: a catalog whose initialize() runs a query must not come back here.
  private final AtomicBoolean started = new AtomicBoolean();

  public EagerCatalogs(SparkSession session) { this.session = session; }

  @Override public BoxedUnit apply(LogicalPlan plan) {
    if (!started.get() && started.compareAndSet(false, true)) load(session.sessionState());
    return BoxedUnit.UNIT;
  }

  static void load(SessionState state) {
    CatalogManager manager = state.catalogManager();
    for (String key : CollectionConverters.asJava(state.conf().getAllConfs()).keySet()) {
      if (!key.startsWith(PREFIX)) continue;
      String name = key.substring(PREFIX.length());
      // spark.sql.catalog.<name>.<option> are options; spark_catalog is always listed.
      if (name.isEmpty() || name.contains(".") || name.equalsIgnoreCase(CatalogManager.SESSION_CATALOG_NAME())) continue;
      try {
        manager.catalog(name);
      } catch (Exception e) {
        // Not cached by Spark: the first statement that names the catalog fails with this error.
        LOG.warn("could not load catalog {} ahead of use: {}", name, e.toString());
      }
    }
  }
}
