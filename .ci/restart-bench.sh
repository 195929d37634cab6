#!/usr/bin/env bash
# Measures how fast a processor resumes, on a real Apache Kafka 4.x broker
# of its own (KRaft, one node, like .ci/kafka/start.sh, but on ports of its
# choosing so that it never meets another broker on 9092):
#
#   - kill -9 of a processor, a new one started at once, until it handles
#     the first command: as a static member of its consumer group (a group
#     instance id) and, for comparison, as a dynamic member;
#   - a broker stopped for 3 s under a running processor, from the broker's
#     return until the first command handled.
#
# The embedded EventStoreDB stand-in stores the events. Prints the bench's
# table (BENCHMARKS.md, "Restart and resume"). Needs Java 17+, mvn and Go.
#
#   bash .ci/restart-bench.sh              # ports 28092 (clients), 28093 (controller)
#   RESTART_BENCH_PORT=27092 bash .ci/restart-bench.sh
#
# The ports are below Linux's ephemeral range (32768 and up), where an
# outgoing connection could hold them when the broker restarts.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
port="${RESTART_BENCH_PORT:-28092}"
cport="${RESTART_BENCH_CONTROLLER_PORT:-$((port + 1))}"
run="$here/kafka/target/restart-bench-$port"
pidfile="$run/kafka.pid"
java="${JAVA_HOME:+$JAVA_HOME/bin/}java"
jvm=(-Xms256m -Xmx512m -Djava.awt.headless=true -Dlog4j2.configurationFile="$run/log4j2.properties" -cp "$here/kafka/target/libs/*")

fail() {
	echo "restart-bench: FAILED: $*" >&2
	exit 1
}

start_broker() {
	setsid "$java" "${jvm[@]}" kafka.Kafka "$run/server.properties" >>"$run/kafka.log" 2>&1 </dev/null &
	local pid=$! deadline=$((SECONDS + 120))
	echo "$pid" >"$pidfile"
	until "$run/ready" -brokers "127.0.0.1:$port" -timeout 5s 2>>"$run/ready.err"; do
		kill -0 "$pid" 2>/dev/null || fail "the broker exited while starting (log $run/kafka.log)"
		((SECONDS < deadline)) || fail "the broker did not serve clients within 120 s (log $run/kafka.log)"
	done
}

stop_broker() {
	[[ -f $pidfile ]] || return 0
	local pid
	pid="$(cat "$pidfile")"
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 120); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.5
	done
	kill -KILL "$pid" 2>/dev/null || true
	rm -f "$pidfile"
}

case "${1:-}" in
start-broker) start_broker; exit 0 ;;
stop-broker) stop_broker; exit 0 ;;
"") ;;
*) fail "unknown argument $1" ;;
esac

in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$port" "$cport"; do
	if in_use "$p"; then fail "127.0.0.1:$p is in use: set RESTART_BENCH_PORT"; fi
done
(cd "$here/kafka" && mvn -q -B -Dstyle.color=never dependency:copy-dependencies 2>&1 | sed 's/\x1b\[[0-9;]*m//g') ||
	fail "mvn could not fetch the Kafka jars"
rm -rf "$run"
mkdir -p "$run/data"
(cd "$root" && go build -o "$run/ready" ./.ci/kafka/ready && go build -o "$run/bench" ./cmd/bench) || fail "build"

cat >"$run/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$run/data
num.partitions=8
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
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = out
PROPS
cluster_id="-"
while [[ $cluster_id == -* ]]; do
	cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
done
"$java" "${jvm[@]}" kafka.tools.StorageTool format --cluster-id="$cluster_id" -c "$run/server.properties" >>"$run/kafka.log" 2>&1 ||
	fail "formatting the storage failed"

trap stop_broker EXIT
start_broker
echo "restart-bench: broker on 127.0.0.1:$port; load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
"$run/bench" -only restart -partitions 8 -brokers "127.0.0.1:$port" \
	-broker-stop "bash '$here/restart-bench.sh' stop-broker" -broker-start "bash '$here/restart-bench.sh' start-broker"
echo "restart-bench: load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
