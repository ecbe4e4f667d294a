#!/usr/bin/env bash
# Make sure a Java runtime (17+) and the PostgreSQL JDBC driver are installed and print JAVA_HOME,
# for the Spark tests and `--engine spark`.
#
#   export JAVA_HOME="$(bash scripts/java.sh)"
#
# Installs Debian's `openjdk-17-jre-headless` with apt-get when no `java` is on the PATH, and
# `libpostgresql-jdbc-java` (the driver jar for reading CRM tables from PostgreSQL over JDBC,
# /usr/share/java/postgresql.jar) when that jar is missing; never a jar or JDK downloaded by
# another tool. Safe to run again. Progress goes to stderr; stdout carries only JAVA_HOME. Needs
# root (or sudo) on Debian/Ubuntu.
set -euo pipefail

JDBC_JAR=/usr/share/java/postgresql.jar

log() { echo "java.sh: $*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! command -v java >/dev/null 2>&1; then
    log "installing Java 17 from the Debian packages (openjdk-17-jre-headless)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        openjdk-17-jre-headless >&2
fi
if ! command -v java >/dev/null 2>&1; then
    log "no java on the PATH after installing the package"
    exit 1
fi
if [ ! -f "$JDBC_JAR" ]; then
    log "installing the PostgreSQL JDBC driver from the Debian packages (libpostgresql-jdbc-java)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        libpostgresql-jdbc-java >&2
fi
log "PostgreSQL JDBC driver: $JDBC_JAR"
JAVA="$(readlink -f "$(command -v java)")"
log "ready: $(java -version 2>&1 | head -n 1)"
dirname "$(dirname "$JAVA")"
