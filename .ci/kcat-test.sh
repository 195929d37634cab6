#!/usr/bin/env bash
# Runs the local stack (go run ./cmd/stack) and drives it with kcat exactly
# as the README shows: produce seed-format commands, read the outbound
# topics, the refusals (prescription.rejections) and the dead letters. Fails
# loudly on any mismatch.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v kcat >/dev/null || { echo "kcat-test: kcat is not installed (apt-get install -y kcat)"; exit 1; }

work=$(mktemp -d)
broker=127.0.0.1:9092
api=http://127.0.0.1:8080
token=ci-token
go build -o "$work/stack" ./cmd/stack
"$work/stack" -data "$work/data" -token "$token" >"$work/stack.log" 2>&1 &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
trap cleanup EXIT
fail() { echo "kcat-test: FAILED: $*"; echo "--- stack log:"; tail -n 40 "$work/stack.log"; exit 1; }

for _ in $(seq 1 120); do
	curl -sf "$api/readyz" >/dev/null && break
	kill -0 "$pid" 2>/dev/null || fail "the stack exited"
	sleep 0.5
done
curl -sf "$api/readyz" >/dev/null || fail "the stack is not ready"

# consume TOPIC: every record as "key<TAB>value", from the beginning to the end.
consume() { kcat -C -b "$broker" -t "$1" -o beginning -e -q -f '%k\t%s\n' 2>/dev/null || true; }
# wait_for TOPIC PATTERN: poll until a record matches.
wait_for() {
	for _ in $(seq 1 60); do
		consume "$1" | grep -q -- "$2" && return 0
		sleep 0.5
	done
	fail "no record matching '$2' on $1; it holds: $(consume "$1")"
}

urn=urn:rx:kcat-1
send() { echo "$urn|{\"urn\":\"$urn\",\"event\":\"$1\",\"payload\":$2}" | kcat -P -b "$broker" -t prescription.events -K '|'; }
send prescription.request '{"patientId":"p1","prescriberId":"d1","pharmacyId":"ph1","medication":{"name":"Amoxicillin","quantity":20}}'
send prescription.approve '{"approvedBy":"d1"}'
send prescription.process '{}'
send prescription.dispense '{"dispensedBy":"pharmacist"}'
send prescription.complete '{}'

wait_for prescription.dispensed "\"urn\":\"$urn\",\"patientId\":\"p1\",\"pharmacyId\":\"ph1\",\"timestamp\""
consume prescription.dispensed | grep -q "^$urn	" || fail "prescription.dispensed is not keyed by urn"
wait_for prescription.status-changed "\"to\":\"completed\""
[ "$(consume prescription.status-changed | grep -c "^$urn	")" = 5 ] || fail "want 5 status changes for $urn"

send prescription.approve '{"approvedBy":"d1"}'
wait_for prescription.rejections "\"code\":\"final_state\""

echo 'urn:rx:kcat-2|{"urn": "urn:rx:kcat-2", "event": ' | kcat -P -b "$broker" -t prescription.events -K '|'
wait_for prescription.events.dlq '"code":"malformed_json"'
kcat -C -b "$broker" -t prescription.events.dlq -o beginning -e -q -f '%h\n' | grep -q 'dlq-code=malformed_json' || fail "dead letter lacks dlq-code"

# Poison first on a partition, a valid command for another prescription
# behind it on the same partition: the poison is dead-lettered, the valid
# one is processed.
echo 'urn:rx:kcat-poison|{"urn":"urn:rx:kcat-poison","event":"prescription.approve","payload":{"approvedBy":"d1"}}}' |
	kcat -P -b "$broker" -t prescription.events -p 0 -K '|'
echo 'urn:rx:kcat-behind|{"urn":"urn:rx:kcat-behind","event":"prescription.request","payload":{"patientId":"p1","prescriberId":"d1","medication":{"name":"Amoxicillin","quantity":20}}}' |
	kcat -P -b "$broker" -t prescription.events -p 0 -K '|'
wait_for prescription.events.dlq 'urn:rx:kcat-poison'
wait_for prescription.status-changed '"urn":"urn:rx:kcat-behind".*"to":"requested"'

# Keyless, as the seed's own producer sends them: request, approve and
# process of ten prescriptions on random partitions all end in processing.
for i in $(seq 1 10); do
	u=urn:rx:kcat-keyless-$i
	printf '%s\n' \
		"{\"urn\":\"$u\",\"event\":\"prescription.request\",\"payload\":{\"patientId\":\"p1\",\"prescriberId\":\"d1\",\"pharmacyId\":\"ph1\",\"medication\":{\"name\":\"Amoxicillin\",\"quantity\":20}}}" \
		"{\"urn\":\"$u\",\"event\":\"prescription.approve\",\"payload\":{\"approvedBy\":\"d1\"}}" \
		"{\"urn\":\"$u\",\"event\":\"prescription.process\",\"payload\":{}}" |
		tac | kcat -P -b "$broker" -t prescription.events -X topic.partitioner=random
done
for i in $(seq 1 10); do
	wait_for prescription.status-changed "\"urn\":\"urn:rx:kcat-keyless-$i\".*\"to\":\"processing\""
done

status=$(curl -sf -H "Authorization: Bearer $token" "$api/prescriptions/$urn")
echo "$status" | grep -q '"status":"completed"' || fail "query API says $status"

# That read is in the access log, under the static token's caller.
access=$(curl -sf -H "Authorization: Bearer $token" "$api/audit/access?urn=$urn&limit=1")
echo "$access" | grep -q '"subject":"static-token","role":"operator".*"route":"/prescriptions/{urn}".*"status":200' ||
	fail "the read of $urn is not in the access log: $access"

# The query API answers a non-canonical path itself, in JSON: no redirect.
odd=$(curl -s --path-as-is -w ' %{http_code}' -H "Authorization: Bearer $token" "$api//prescriptions")
[ "${odd##* }" = 404 ] && echo "$odd" | grep -q '"error":"not_found"' || fail "//prescriptions answered $odd"

kill -INT "$pid"
wait "$pid" || fail "the stack did not stop cleanly"
trap - EXIT
echo "kcat-test: ok"
