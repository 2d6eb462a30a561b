#!/bin/sh
# Initialises the datadir when empty (a fresh volume or tmpfs), makes sure
# database zzim and user zzim/zzim (any host) exist, then execs mysqld.
# mysqld logs "ready for connections" once it accepts them.
#
# ZZIM_MARIADB_ROLE=primary or replica makes a semi-synchronously replicated
# pair (primary.cnf, replica.cnf); a replica also needs
# ZZIM_MARIADB_PRIMARY=host:port. Unset: one server, no binary log.
set -eu
datadir=/var/lib/mysql
role=${ZZIM_MARIADB_ROLE:-}
mkdir -p /run/mysqld "$datadir"
chown mysql:mysql /run/mysqld "$datadir"
if [ ! -d "$datadir/mysql" ]; then
	echo "zzim-mariadb: initialising $datadir"
	mariadb-install-db --user=mysql --datadir="$datadir" --skip-test-db >/dev/null
fi
case "$role" in
"") ;;
primary | replica)
	cp "/etc/mysql/zzim-ha/$role.cnf" /etc/mysql/mariadb.conf.d/98-zzim-ha.cnf
	;;
*)
	echo "zzim-mariadb: ZZIM_MARIADB_ROLE must be primary, replica or unset, not $role" >&2
	exit 2
	;;
esac
# The init file runs at every start, before networking: idempotent
# statements, kept out of the binary log (each server creates its own
# accounts, so a replica holds no transaction of its own and GTID strict
# mode accepts it). The user may create databases named zzim*, so tests can
# make shards. The account repl/repl may replicate (a promoted replica is a
# primary in turn).
{
	cat <<'SQL'
SET sql_log_bin = 0;
CREATE DATABASE IF NOT EXISTS zzim CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
CREATE USER IF NOT EXISTS 'zzim'@'%' IDENTIFIED BY 'zzim';
GRANT ALL PRIVILEGES ON `zzim%`.* TO 'zzim'@'%';
CREATE USER IF NOT EXISTS 'repl'@'%' IDENTIFIED BY 'repl';
GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'repl'@'%';
FLUSH PRIVILEGES;
SQL
	# Replication is configured once per datadir (the marker file): then
	# the server keeps it (master.info), and a promotion (RESET SLAVE ALL)
	# must not be undone by a restart.
	if [ "$role" = replica ] && [ ! -e "$datadir/zzim-replica-configured" ]; then
		primary=${ZZIM_MARIADB_PRIMARY:?ZZIM_MARIADB_PRIMARY=host:port is required for a replica}
		echo "CHANGE MASTER TO MASTER_HOST='${primary%:*}', MASTER_PORT=${primary##*:}, MASTER_USER='repl', MASTER_PASSWORD='repl', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1;"
		echo "START SLAVE;"
		touch "$datadir/zzim-replica-configured"
	fi
} >/run/mysqld/zzim-init.sql
chown mysql:mysql /run/mysqld/zzim-init.sql
echo "zzim-mariadb: starting mysqld${role:+ ($role)}"
exec mariadbd --user=mysql --datadir="$datadir" --init-file=/run/mysqld/zzim-init.sql "$@"
