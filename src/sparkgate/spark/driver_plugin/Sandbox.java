// A check rule (see Extensions) that confines a sandboxed session to what a batch
// job's manifest allows, by checking every plan the session analyzes before anything runs.
//
// A session is sandboxed once a plan is analyzed while its conf names the paths it may write
// (spark.sparkgate.sandbox.write) and read (spark.sparkgate.sandbox.read), one per line. The
// rule keeps the paths it saw then: changing or unsetting the conf later changes nothing, so a
// sandboxed session cannot turn itself off. In a sandboxed session a plan is refused if it
//   * calls into the JVM (reflect, java_method, try_reflect), runs a script (TRANSFORM ... USING)
//     or a user-defined function other than SQL (Scala, Python, Hive);
//   * reads a file or path source outside the read paths (catalog tables are allowed), or a
//     stream, or a source that is neither a file nor a catalog table;
//   * writes anywhere but files under the write paths;
//   * is any other command: only temporary views and those writes are allowed (no SET, no DDL).
// The check walks the analyzed tree (subqueries, views and the plans inside commands included),
// so how the SQL spelled a call, or how long a plan's text is, does not matter.
// Built by sparkgate.spark.plugin with javac against the pyspark wheel's jars.
package io.sparkgate.sandbox;

import java.io.IOException;
import java.net.URI;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.regex.Pattern;

import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.catalyst.analysis.LocalTempView$;
import org.apache.spark.sql.catalyst.expressions.CallMethodViaReflection;
import org.apache.spark.sql.catalyst.expressions.Expression;
import org.apache.spark.sql.catalyst.expressions.PlanExpression;
import org.apache.spark.sql.catalyst.expressions.RuntimeReplaceable;
import org.apache.spark.sql.catalyst.plans.logical.Command;
import org.apache.spark.sql.catalyst.plans.logical.LogicalPlan;
import org.apache.spark.sql.catalyst.plans.logical.ScriptTransformation;
import org.apache.spark.sql.catalyst.trees.TreeNode;
import org.apache.spark.sql.execution.command.CreateViewCommand;
import org.apache.spark.sql.execution.datasources.HadoopFsRelation;
import org.apache.spark.sql.execution.datasources.InsertIntoHadoopFsRelationCommand;
import org.apache.spark.sql.execution.datasources.LogicalRelation;
import org.apache.spark.sql.execution.datasources.v2.DataSourceV2Relation;
import org.apache.spark.sql.execution.datasources.v2.FileTable;
import scala.jdk.javaapi.CollectionConverters;
import scala.runtime.AbstractFunction1;
import scala.runtime.BoxedUnit;

/** One per session state: off until the session's conf names its paths, then on for good. */
public class Sandbox extends AbstractFunction1<LogicalPlan, BoxedUnit> {
  public static final String WRITE = "spark.sparkgate.sandbox.write";
  public static final String READ = "spark.sparkgate.sandbox.read";
  /** Every refusal starts with this, so a client can tell it from other errors. */
  public static final String REFUSED = "sparkgate sandbox: ";
  private static final Pattern SCHEME = Pattern.compile("[A-Za-z][A-Za-z0-9+.-]*:");
  // Functions that run code other than SQL, by class name (Hive's are not on every classpath).
  private static final Set<String> CODE = Set.of(
      "ScalaUDF", "ScalaUDAF", "ScalaAggregator", "PythonUDF", "PythonUDAF", "PythonUDTF", "UserDefinedPythonTableFunction");

  private final SparkSession session;
  private volatile Roots roots;

  public Sandbox(SparkSession session) { this.session = session; }

  @Override public BoxedUnit apply(LogicalPlan plan) {
    Roots r = roots;
    if (r == null) {
      synchronized (this) {
        if (roots == null) {
          String write = session.conf().get(WRITE, "");
          if (!write.isEmpty()) roots = new Roots(lines(write), lines(session.conf().get(READ, "")));
        }
        r = roots;
      }
    }
    if (r != null) r.check(plan);
    return BoxedUnit.UNIT;
  }

  static List<String> lines(String value) {
    List<String> out = new ArrayList<>();
    for (String line : value.split("\n")) if (!line.isBlank()) out.add(line.strip());
    return out;
  }

  static final class Roots {
    private final List<String> write;
    private final List<String> read;

    Roots(List<String> write, List<String> read) {
      this.write = normalized(write);
      List<String> readable = new ArrayList<>(this.write);
      readable.addAll(normalized(read));
      this.read = readable;
    }

    void check(LogicalPlan root) {
      visitPlan(root, Collections.newSetFromMap(new IdentityHashMap<>()));
    }

    // Each node once: trees share subtrees (a subquery is both an expression's plan and an inner
    // child; nvl's replacement is also its child), which walked again would cost 2^depth.
    private void visitPlan(LogicalPlan plan, Set<Object> seen) {
      if (!seen.add(plan)) return;
      node(plan);
      for (Expression e : CollectionConverters.asJava(plan.expressions())) visitExpression(e, seen);
      for (LogicalPlan child : CollectionConverters.asJava(plan.children())) visitPlan(child, seen);
      // A command's query and a view's plan can sit outside children (analysis-only commands).
      for (TreeNode<?> inner : CollectionConverters.asJava(plan.innerChildren())) {
        if (inner instanceof LogicalPlan) visitPlan((LogicalPlan) inner, seen);
      }
    }

    private void visitExpression(Expression e, Set<Object> seen) {
      if (!seen.add(e)) return;
      String name = e.getClass().getSimpleName();
      if (e instanceof CallMethodViaReflection) refuse("calls into the JVM (" + e.prettyName() + ")");
      if (CODE.contains(name) || e.getClass().getName().startsWith("org.apache.spark.sql.hive.")) {
        refuse("runs a user-defined function (" + name + ")");
      }
      if (e instanceof RuntimeReplaceable) visitExpression(((RuntimeReplaceable) e).replacement(), seen);
      if (e instanceof PlanExpression && ((PlanExpression<?>) e).plan() instanceof LogicalPlan) {
        visitPlan((LogicalPlan) ((PlanExpression<?>) e).plan(), seen);
      }
      for (Expression child : CollectionConverters.asJava(e.children())) visitExpression(child, seen);
    }

    private void node(LogicalPlan plan) {
      if (plan instanceof ScriptTransformation) refuse("runs a script (TRANSFORM ... USING)");
      if (plan instanceof LogicalRelation) {
        LogicalRelation r = (LogicalRelation) plan;
        if (r.catalogTable().isDefined()) {
          // A catalog table is read where its catalog keeps it.
        } else if (r.relation() instanceof HadoopFsRelation) {
          readPaths(CollectionConverters.asJava(((HadoopFsRelation) r.relation()).location().rootPaths()));
        } else {
          refuse("reads a " + r.relation().getClass().getSimpleName() + " source; only files and catalog tables");
        }
      } else if (plan instanceof DataSourceV2Relation) {
        DataSourceV2Relation r = (DataSourceV2Relation) plan;
        if (r.table() instanceof FileTable) {
          // A catalog's file table is read where its catalog keeps it.
          if (r.catalog().isEmpty()) readPaths(CollectionConverters.asJava(((FileTable) r.table()).fileIndex().rootPaths()));
        } else if (r.catalog().isEmpty()) {
          refuse("reads a " + r.table().getClass().getSimpleName() + " source; only files and catalog tables");
        }
      } else if (plan.getClass().getSimpleName().startsWith("StreamingRelation")) {
        refuse("reads a stream");
      } else if (plan instanceof InsertIntoHadoopFsRelationCommand) {
        org.apache.hadoop.fs.Path out = ((InsertIntoHadoopFsRelationCommand) plan).outputPath();
        if (!under(out.toUri(), write)) refuse("writes " + out + ", outside " + String.join(", ", write));
      } else if (plan instanceof CreateViewCommand) {
        if (((CreateViewCommand) plan).viewType() != LocalTempView$.MODULE$) refuse("creates a view other than a temporary one");
      } else if (plan instanceof Command) {
        refuse("runs the command " + plan.nodeName() + "; only queries, temporary views and writes of files");
      }
    }

    private void readPaths(List<org.apache.hadoop.fs.Path> paths) {
      for (org.apache.hadoop.fs.Path p : paths) {
        if (!under(p.toUri(), read)) refuse("reads " + p + ", outside the job's inputs and output");
      }
    }

    private static void refuse(String what) {
      throw new SecurityException(REFUSED + what);
    }
  }

  // -- paths: local ones compared after resolving links, others (s3a://...) by their URI ------

  static List<String> normalized(List<String> roots) {
    List<String> out = new ArrayList<>();
    for (String root : roots) {
      try {
        URI uri = SCHEME.matcher(root).lookingAt() ? new URI(root) : Paths.get(root).toUri();
        out.add(canonical(uri));
      } catch (URISyntaxException | RuntimeException e) {
        throw new SecurityException(REFUSED + "cannot use " + root + " as a path root (" + e.getMessage() + ")");
      }
    }
    return out;
  }

  static boolean under(URI path, List<String> roots) {
    String p = canonical(path);
    for (String root : roots) {
      if (p.equals(root) || p.startsWith(root.endsWith("/") ? root : root + "/")) return true;
    }
    return false;
  }

  /** A local path as its real path (links resolved up to the part that does not exist yet). */
  static String canonical(URI uri) {
    String scheme = uri.getScheme() == null ? null : uri.getScheme().toLowerCase(Locale.ROOT);
    if (scheme != null && !scheme.equals("file")) {
      URI n = uri.normalize();
      return scheme + ":" + n.getRawSchemeSpecificPart();
    }
    Path p = Paths.get(uri.getPath()).toAbsolutePath().normalize();
    Path existing = p;
    while (existing != null && !Files.exists(existing)) existing = existing.getParent();
    if (existing == null) return p.toString();
    try {
      return existing.toRealPath().resolve(existing.relativize(p)).normalize().toString();
    } catch (IOException e) {
      return p.toString();
    }
  }
}
