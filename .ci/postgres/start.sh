#!/usr/bin/env bash
# Makes PostgreSQL from Debian's packages serve on 127.0.0.1 for the tests:
# installs the postgresql package if missing, creates a cluster if the
# package made none, starts it if it is not running, waits until it
# accepts connections, and makes sure the tests' role rxflow (password
# rxflow, CREATEDB) and its database rxflow exist. Each step is skipped when
# already done, so a second run changes nothing. Runs as root (apt-get,
# pg_ctlcluster). Writes the tests' connection URL to
# .ci/postgres/target/env as RXFLOW_TEST_POSTGRES=... (README, "Tests").
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
fail() { echo "postgres: FAILED: $*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || fail "run as root (apt-get, pg_ctlcluster)"
if ! command -v pg_lsclusters >/dev/null || [[ -z $(ls /usr/lib/postgresql 2>/dev/null) ]]; then
	echo "postgres: installing Debian's postgresql"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null || fail "apt-get install postgresql"
fi
# The newest installed server version, e.g. 15 on Debian 12.
version="$(ls /usr/lib/postgresql | sort -n | tail -n 1)"
[[ -x /usr/lib/postgresql/$version/bin/postgres ]] || fail "no server binary for PostgreSQL $version"

# pg_lsclusters -h: version cluster port status owner datadir logfile
cluster() { pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main"'; }
if [[ -z $(cluster) ]]; then
	echo "postgres: creating cluster $version/main"
	pg_createcluster "$version" main >/dev/null || fail "pg_createcluster $version main"
fi
port="$(cluster | awk '{ print $3 }')"
if [[ $(cluster | awk '{ print $4 }') != online* ]]; then
	echo "postgres: starting cluster $version/main on port $port"
	pg_ctlcluster "$version" main start || {
		tail -n 40 "$(cluster | awk '{ print $7 }')" >&2 || true
		fail "pg_ctlcluster $version main start"
	}
fi
pg_isready -q -h 127.0.0.1 -p "$port" -t 60 || fail "not accepting connections on 127.0.0.1:$port"

# As the superuser postgres, over the local socket (peer authentication).
psql_admin() { runuser -u postgres -- psql -X -q -p "$port" -v ON_ERROR_STOP=1 "$@"; }
psql_admin -d postgres -c "DO \$\$ BEGIN
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rxflow') THEN
		CREATE ROLE rxflow LOGIN CREATEDB PASSWORD 'rxflow';
	END IF;
END \$\$" || fail "creating the role rxflow"
if [[ -z $(psql_admin -d postgres -tA -c "SELECT 1 FROM pg_database WHERE datname = 'rxflow'") ]]; then
	psql_admin -d postgres -c "CREATE DATABASE rxflow OWNER rxflow" || fail "creating the database rxflow"
fi

url="postgres://rxflow:rxflow@127.0.0.1:$port/rxflow?sslmode=disable"
mkdir -p "$here/target"
echo "RXFLOW_TEST_POSTGRES=$url" >"$here/target/env"
psql -X -q "$url" -tA -c "SELECT 'postgres: ' || version()" || fail "cannot sign in as rxflow over TCP"
echo "postgres: ready, RXFLOW_TEST_POSTGRES=$url"
