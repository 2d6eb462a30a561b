#!/bin/sh
# Initialises the datadir when empty (a fresh volume or tmpfs), makes sure
# database zzim and user zzim/zzim (any host) exist, then execs mysqld.
# mysqld logs "ready for connections" once it accepts them.
set -eu
datadir=/var/lib/mysql
mkdir -p /run/mysqld "$datadir"
chown mysql:mysql /run/mysqld "$datadir"
if [ ! -d "$datadir/mysql" ]; then
	echo "zzim-mariadb: initialising $datadir"
	mariadb-install-db --user=mysql --datadir="$datadir" --skip-test-db >/dev/null
fi
# The init file runs at every start, before networking: idempotent statements.
# The user may create databases named zzim*, so tests can make shards.
cat >/run/mysqld/zzim-init.sql <<'SQL'
CREATE DATABASE IF NOT EXISTS zzim CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
CREATE USER IF NOT EXISTS 'zzim'@'%' IDENTIFIED BY 'zzim';
GRANT ALL PRIVILEGES ON `zzim%`.* TO 'zzim'@'%';
FLUSH PRIVILEGES;
SQL
chown mysql:mysql /run/mysqld/zzim-init.sql
echo "zzim-mariadb: starting mysqld"
exec mariadbd --user=mysql --datadir="$datadir" --init-file=/run/mysqld/zzim-init.sql "$@"
