// The local `pedregal` catalog: a Spark V2 catalog over a directory every local driver shares.
//
// A namespace is a directory; a table is a Parquet directory plus its schema beside it
// (`<ns>/<table>.schema.json`, Spark's StructType JSON; outside the data directory because
// INSERT OVERWRITE truncates the table's path). loadTable hands back Spark's own V2 ParquetTable,
// so reads and writes are Spark's file-source code. A named catalog that delegates to the session
// catalog cannot do this: it returns V1 tables, which only the session catalog can scan.
// Built by sparkgate.spark.plugin with javac against the pyspark wheel's jars.
package io.sparkgate.catalog;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.*;
import java.util.*;
import java.util.stream.*;

import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.catalyst.analysis.*;
import org.apache.spark.sql.connector.catalog.*;
import org.apache.spark.sql.connector.expressions.Transform;
import org.apache.spark.sql.execution.datasources.parquet.ParquetFileFormat;
import org.apache.spark.sql.execution.datasources.v2.parquet.ParquetTable;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.StructType;
import org.apache.spark.sql.util.CaseInsensitiveStringMap;
import scala.Option;
import scala.jdk.javaapi.CollectionConverters;

public class PathCatalog implements TableCatalog, SupportsNamespaces {
  private String name;
  private Path root;

  @Override public void initialize(String name, CaseInsensitiveStringMap options) {
    this.name = name;
    this.root = Paths.get(options.get("root"));
    try { Files.createDirectories(root); } catch (IOException e) { throw new RuntimeException(e); }
  }
  @Override public String name() { return name; }

  private Path ns(String[] namespace) {
    if (namespace.length != 1) throw new IllegalArgumentException("namespaces have one level: " + String.join(".", namespace));
    return root.resolve(segment("namespace", namespace[0]));
  }
  private Path table(Identifier id) { return ns(id.namespace()).resolve(segment("table", id.name())); }
  private Path meta(Identifier id) { return ns(id.namespace()).resolve(segment("table", id.name()) + ".schema.json"); }

  /** A name is one directory entry under the root: never a path, `.` or `..` (which would leave it). */
  private static String segment(String what, String name) {
    if (name.isEmpty() || name.equals(".") || name.equals("..") || name.contains("/") || name.contains("\\") || name.indexOf('\0') >= 0) {
      throw new IllegalArgumentException("a " + what + " name is one path segment, not " + name);
    }
    return name;
  }

  @Override public String[][] listNamespaces() {
    try (Stream<Path> s = Files.list(root)) {
      return s.filter(Files::isDirectory).map(p -> new String[] {p.getFileName().toString()}).sorted(Comparator.comparing(a -> a[0])).toArray(String[][]::new);
    } catch (IOException e) { throw new RuntimeException(e); }
  }
  @Override public String[][] listNamespaces(String[] namespace) throws NoSuchNamespaceException {
    if (namespace.length == 0) return listNamespaces();
    if (!Files.isDirectory(ns(namespace))) throw new NoSuchNamespaceException(namespace);
    return new String[0][];
  }
  @Override public Map<String, String> loadNamespaceMetadata(String[] namespace) throws NoSuchNamespaceException {
    if (!Files.isDirectory(ns(namespace))) throw new NoSuchNamespaceException(namespace);
    return Collections.emptyMap();
  }
  @Override public void createNamespace(String[] namespace, Map<String, String> metadata) throws NamespaceAlreadyExistsException {
    if (Files.isDirectory(ns(namespace))) throw new NamespaceAlreadyExistsException(namespace);
    try { Files.createDirectories(ns(namespace)); } catch (IOException e) { throw new RuntimeException(e); }
  }
  @Override public void alterNamespace(String[] namespace, NamespaceChange... changes) { throw new UnsupportedOperationException("namespace properties are not kept"); }
  @Override public boolean dropNamespace(String[] namespace, boolean cascade) throws NoSuchNamespaceException, NonEmptyNamespaceException {
    Path p = ns(namespace);
    if (!Files.isDirectory(p)) throw new NoSuchNamespaceException(namespace);
    if (!cascade && listTables(namespace).length > 0) throw new NonEmptyNamespaceException(namespace);
    delete(p);
    return true;
  }

  @Override public Identifier[] listTables(String[] namespace) throws NoSuchNamespaceException {
    Path p = ns(namespace);
    if (!Files.isDirectory(p)) throw new NoSuchNamespaceException(namespace);
    try (Stream<Path> s = Files.list(p)) {
      return s.filter(t -> t.getFileName().toString().endsWith(".schema.json")).map(t -> t.resolveSibling(t.getFileName().toString().replace(".schema.json", ""))).map(t -> Identifier.of(namespace, t.getFileName().toString())).sorted(Comparator.comparing(Identifier::name)).toArray(Identifier[]::new);
    } catch (IOException e) { throw new RuntimeException(e); }
  }
  @Override public Table loadTable(Identifier ident) throws NoSuchTableException {
    Path p = table(ident);
    Path meta = meta(ident);
    if (!Files.exists(meta)) throw new NoSuchTableException(ident);
    StructType schema;
    try { schema = (StructType) DataType.fromJson(Files.readString(meta, StandardCharsets.UTF_8)); } catch (IOException e) { throw new RuntimeException(e); }
    Map<String, String> opts = new HashMap<>();
    opts.put("path", p.toString());
    return new ParquetTable(name + "." + ident.namespace()[0] + "." + ident.name(), SparkSession.active(), new CaseInsensitiveStringMap(opts),
        CollectionConverters.asScala(List.of(p.toString())).toSeq(), Option.apply(schema), ParquetFileFormat.class);
  }
  @Override @SuppressWarnings("deprecation")
  public Table createTable(Identifier ident, StructType schema, Transform[] partitions, Map<String, String> properties) throws TableAlreadyExistsException, NoSuchNamespaceException {
    Path p = table(ident);
    if (!Files.isDirectory(p.getParent())) throw new NoSuchNamespaceException(ident.namespace());
    if (Files.exists(meta(ident))) throw new TableAlreadyExistsException(ident);
    try {
      Files.createDirectories(p);
      Files.writeString(meta(ident), schema.json(), StandardCharsets.UTF_8);
      return loadTable(ident);
    } catch (IOException | NoSuchTableException e) { throw new RuntimeException(e); }
  }
  @Override public Table alterTable(Identifier ident, TableChange... changes) { throw new UnsupportedOperationException("ALTER TABLE is not supported by the local catalog"); }
  @Override public boolean dropTable(Identifier ident) {
    if (!Files.exists(meta(ident))) return false;
    delete(table(ident));
    meta(ident).toFile().delete();
    return true;
  }
  @Override public void renameTable(Identifier from, Identifier to) throws NoSuchTableException, TableAlreadyExistsException {
    if (!Files.exists(meta(from))) throw new NoSuchTableException(from);
    if (Files.exists(meta(to))) throw new TableAlreadyExistsException(to);
    try { Files.move(table(from), table(to)); Files.move(meta(from), meta(to)); } catch (IOException e) { throw new RuntimeException(e); }
  }
  private static void delete(Path p) {
    try (Stream<Path> s = Files.walk(p)) {
      s.sorted(Comparator.reverseOrder()).forEach(x -> x.toFile().delete());
    } catch (IOException e) { throw new RuntimeException(e); }
  }
}
