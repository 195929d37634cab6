#!/usr/bin/env bash
# Makes a throwaway certificate authority and a broker certificate for the
# CI broker's SASL_SSL listener, with openssl, into the directory given:
#   ca.crt          the CA certificate (clients' KAFKA_TLS_CA_FILE)
#   broker.pem      the broker's PKCS#8 key and certificate chain, the PEM
#                   keystore Kafka reads with ssl.keystore.type=PEM
#   broker.crt      the broker's certificate alone (for inspection)
# The certificate names 127.0.0.1 and localhost and is valid for two days.
# The CA key is deleted once the broker certificate is signed; the broker
# key lives only in broker.pem (mode 600). Nothing here is ever committed:
# start.sh writes into .ci/kafka/target/, which git ignores.
#
#   bash .ci/kafka/certs.sh DIR
set -euo pipefail

dir="${1:?usage: certs.sh DIR}"
mkdir -p "$dir"
cd "$dir"
umask 077
rm -f ca.key ca.crt broker.key broker.csr broker.crt broker.pem

ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.crt -days 2 \
	-subj "/O=rxflow CI/CN=rxflow CI Kafka CA $(date -u +%Y%m%dT%H%M%S)" \
	-addext "basicConstraints=critical,CA:TRUE" \
	-addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req "${ec[@]}" -keyout broker.key -out broker.csr -subj "/O=rxflow CI/CN=localhost" 2>/dev/null
openssl x509 -req -in broker.csr -CA ca.crt -CAkey ca.key -set_serial "0x$(openssl rand -hex 16)" -days 2 \
	-out broker.crt -extfile <(printf '%s\n' \
		"subjectAltName=IP:127.0.0.1,DNS:localhost" \
		"basicConstraints=critical,CA:FALSE" \
		"keyUsage=critical,digitalSignature" \
		"extendedKeyUsage=serverAuth") 2>/dev/null
cat broker.key broker.crt ca.crt >broker.pem
rm -f ca.key broker.key broker.csr
chmod 644 ca.crt broker.crt
openssl verify -CAfile ca.crt broker.crt >/dev/null
