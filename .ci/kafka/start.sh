#!/usr/bin/env bash
# Starts a single-node Apache Kafka 4.x (KRaft, combined broker and
# controller) for CI: PLAINTEXT clients on 127.0.0.1:9092, the controller on
# 127.0.0.1:9093, and SASL_SSL clients on 127.0.0.1:9094 (SCRAM-SHA-256,
# SCRAM-SHA-512 and PLAIN; a CA and broker certificate made by certs.sh).
# Fetches the jars with Maven (pom.xml), formats fresh storage with a random
# cluster id and the SCRAM credentials, starts the broker in the background
# and waits until both client listeners serve. Stop it with stop.sh.
# Everything lives in .ci/kafka/target/; the SASL_SSL listener's settings
# for the tests (README, "Tests") are in target/run/sasl-ssl.env, with a
# password drawn for this run.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
run="$here/target/run"
log="$run/kafka.log"
pidfile="$run/kafka.pid"
java="${JAVA_HOME:+$JAVA_HOME/bin/}java"
pid=""
ours="" # set once the log is this run's

fail() {
	echo "kafka: FAILED: $*" >&2
	if [[ -n $ours && -s $log ]]; then
		echo "kafka: last lines of $log:" >&2
		tail -n 60 "$log" >&2
	fi
	if [[ -n $pid ]]; then
		kill -KILL "$pid" 2>/dev/null || true
		rm -f "$pidfile"
	fi
	exit 1
}
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1fs", b - a }'; }
in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
	fail "already running as pid $(cat "$pidfile"); run stop.sh first"
fi
for port in 9092 9093 9094; do
	if in_use "$port"; then fail "127.0.0.1:$port is already in use"; fi
done
command -v mvn >/dev/null || fail "mvn not found"
command -v go >/dev/null || fail "go not found"
command -v openssl >/dev/null || fail "openssl not found"
java_major="$("$java" -version 2>&1 | awk -F'"' '/version/ { split($2, v, "."); print v[1]; exit }')"
[[ ${java_major:-0} -ge 17 ]] || fail "Kafka 4 needs Java 17 or later, found '${java_major:-none}' ($java)"

t=$(date +%s.%N)
# Debian's mvn prints colour resets even when quiet; strip them.
(cd "$here" && mvn -q -B -Dstyle.color=never dependency:copy-dependencies 2>&1 | sed 's/\x1b\[[0-9;]*m//g') ||
	fail "mvn could not fetch the Kafka jars"
echo "kafka: jars fetched in $(elapsed "$t")"

rm -rf "$run"
umask 077 # server.properties holds the PLAIN password
mkdir -p "$run/data"
ours=1
(cd "$root" && go build -o "$run/ready" ./.ci/kafka/ready) || fail "cannot build the readiness check"
bash "$here/certs.sh" "$run/tls" || fail "cannot make the TLS certificates"

# One SASL user for every mechanism; hex, so that no quoting is needed in
# the JAAS line or the --add-scram argument.
sasl_user=rxflow
sasl_password="$(openssl rand -hex 16)"
mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,PLAIN

cat >"$run/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:9093
listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093,SASL_SSL://127.0.0.1:9094
advertised.listeners=PLAINTEXT://127.0.0.1:9092,SASL_SSL://127.0.0.1:9094
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$run/tls/broker.pem
listener.name.sasl_ssl.ssl.client.auth=none
listener.name.sasl_ssl.sasl.enabled.mechanisms=$mechanisms
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$sasl_user="$sasl_password";
log.dirs=$run/data
auto.create.topics.enable=true
num.partitions=8
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPS

cat >"$run/log4j2.properties" <<'PROPS'
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
PROPS

jvm=(-Xms512m -Xmx1g -Djava.awt.headless=true
	-Dlog4j2.configurationFile="$run/log4j2.properties"
	-cp "$here/target/libs/*")

# A Kafka UUID: 16 random bytes, URL-safe base64 without padding. Like
# Kafka's own Uuid.randomUuid, draw again when it starts with '-': the
# storage tool's argument parser would read such an id as an option.
cluster_id="-"
while [[ $cluster_id == -* ]]; do
	cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
done
"$java" "${jvm[@]}" kafka.tools.StorageTool format --cluster-id="$cluster_id" -c "$run/server.properties" \
	--add-scram "SCRAM-SHA-256=[name=$sasl_user,password=$sasl_password]" \
	--add-scram "SCRAM-SHA-512=[name=$sasl_user,password=$sasl_password]" >>"$log" 2>&1 ||
	fail "formatting the storage failed"

t=$(date +%s.%N)
setsid "$java" "${jvm[@]}" kafka.Kafka "$run/server.properties" >>"$log" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$pidfile"

deadline=$((SECONDS + 120))
until "$run/ready" -brokers 127.0.0.1:9092 -timeout 5s 2>"$run/ready.err"; do
	kill -0 "$pid" 2>/dev/null || fail "the broker exited during startup"
	if ((SECONDS >= deadline)); then
		cat "$run/ready.err" >&2
		fail "the broker did not serve clients within 120s"
	fi
done
echo "kafka: broker ready on 127.0.0.1:9092 in $(elapsed "$t") (pid $pid, cluster $cluster_id, log $log)"

# The SASL_SSL listener, once per mechanism: the certificate, the SCRAM
# credentials of the storage and the PLAIN user all work.
for mechanism in ${mechanisms//,/ }; do
	KAFKA_TLS_CA_FILE="$run/tls/ca.crt" KAFKA_SASL_MECHANISM="$mechanism" KAFKA_SASL_USER="$sasl_user" KAFKA_SASL_PASSWORD="$sasl_password" \
		"$run/ready" -brokers 127.0.0.1:9094 -timeout 60s 2>"$run/ready.err" || {
		cat "$run/ready.err" >&2
		fail "the SASL_SSL listener on 127.0.0.1:9094 did not serve $mechanism within 60s"
	}
done
cat >"$run/sasl-ssl.env" <<ENV
KAFKA_SASL_SSL_BROKERS=127.0.0.1:9094
KAFKA_SASL_SSL_CA_FILE=$run/tls/ca.crt
KAFKA_SASL_SSL_MECHANISMS=$mechanisms
KAFKA_SASL_SSL_USER=$sasl_user
KAFKA_SASL_SSL_PASSWORD=$sasl_password
ENV
chmod 600 "$run/sasl-ssl.env"
echo "kafka: SASL_SSL ($mechanisms) ready on 127.0.0.1:9094; its settings for the tests: $run/sasl-ssl.env"
