// A Java service querying Spark through the sparkgate gateway (Spark Connect JVM client).
//
// Routing headers go in the connection string (real gRPC headers on every call):
//   sc://localhost:15002/;x-doordash-team=feature-engineering;x-doordash-environment=prod
// Builder options (.config("spark.connect.grpc.header.x-doordash-team", ...)) work too: the gateway
// reads them from the client's Config calls. Pass "--builder-options" to use those instead.
//
// Build and run with the Spark Connect JVM client that ships in the pyspark wheel (jars/connect-repl/)
// and the wheel's common jars, leaving out Spark Classic's SQL jar and the server-side ones: with
// Classic on the classpath, SparkSession.builder() builds a classic session instead of a Connect one.
//   JARS="$(python -c 'import pyspark,os;print(os.path.dirname(pyspark.__file__))')/jars"
//   CP="$JARS/connect-repl/*:$(ls $JARS/*.jar | grep -vE '/spark-(sql|connect|hive|hive-thriftserver|mllib|mllib-local|graphx|streaming|repl|pipelines)_' | tr '\n' ':')"
//   javac -cp "$CP" -d /tmp/sc examples/java/SparkConnectApiClient.java
//   java --add-opens=java.base/java.nio=ALL-UNNAMED -cp "/tmp/sc:$CP" SparkConnectApiClient "sc://localhost:15002/;x-doordash-team=t1;x-doordash-environment=local" "SELECT 1"
import org.apache.spark.sql.SparkSession;

public class SparkConnectApiClient {
    public static void main(String[] args) {
        String url = args.length > 0 ? args[0]
            : "sc://localhost:15002/;x-doordash-team=feature-engineering;x-doordash-environment=prod";
        String query = args.length > 1 ? args[1] : "SELECT * FROM pedregal.raw.events LIMIT 10";
        boolean builderOptions = args.length > 2 && args[2].equals("--builder-options");

        SparkSession.Builder builder = SparkSession.builder().remote(url).appName("java-api-service");
        if (builderOptions) {
            builder = builder
                .config("spark.connect.grpc.header.x-doordash-team", args.length > 3 ? args[3] : "feature-engineering")
                .config("spark.connect.grpc.header.x-doordash-environment", args.length > 4 ? args[4] : "prod");
        }
        SparkSession spark = builder.getOrCreate();

        spark.sql(query).show();

        spark.stop();
    }
}
