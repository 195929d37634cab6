#!/usr/bin/env bash
# Stops the broker started by start.sh; its log stays in .ci/kafka/target/run/.
set -euo pipefail

run="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/target/run"
pidfile="$run/kafka.pid"

if [[ ! -f $pidfile ]]; then
	echo "kafka: not running (no $pidfile)"
	exit 0
fi
pid="$(cat "$pidfile")"
if kill -TERM "$pid" 2>/dev/null; then
	for _ in $(seq 120); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.5
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "kafka: pid $pid ignored SIGTERM for 60s; killing it" >&2
		kill -KILL "$pid" 2>/dev/null || true
	fi
fi
rm -f "$pidfile"
echo "kafka: stopped (pid $pid)"
