#!/usr/bin/env bash
# Installs what the PostgreSQL tests and `truc crashtest --cluster` start:
# a PostgreSQL server, Patroni and etcd, from Debian's packages. Idempotent:
# it exits at once when all three are already there. Debian's default `main`
# database cluster is neither created nor started, so nothing of ours
# listens on 5432; the tests start their own servers on free loopback ports.
#
#   tests/cluster/install-packages.sh
#
# Runs as root (as CI does) or through sudo. Exits 1 with the reason when the
# packages cannot be had (no network, no registry), never silently.
set -euo pipefail

have_postgres_server() { compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; }
have_everything() { have_postgres_server && command -v patroni >/dev/null && command -v etcd >/dev/null; }

if have_everything; then
    exit 0
fi

sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo

# Two test processes may call this at once; the second waits for the first
# (at most 15 minutes) and then finds everything installed.
lock_file="${TMPDIR:-/tmp}/truc-cluster-install-packages.lock"
exec 9>"$lock_file"
if ! flock --timeout 900 9; then
    echo "install-packages: another install still holds $lock_file after 15 minutes" >&2
    exit 1
fi
if have_everything; then
    exit 0
fi

# A fresh install of postgresql-common must not create the default cluster:
# the setting is read by its postinst, and --force-confold below keeps this
# file over the package's own copy.
if ! have_postgres_server; then
    $sudo mkdir -p /etc/postgresql-common
    if [ -f /etc/postgresql-common/createcluster.conf ]; then
        $sudo sed -i -E 's/^#?[[:space:]]*create_main_cluster[[:space:]]*=.*/create_main_cluster = false/' \
            /etc/postgresql-common/createcluster.conf
        grep -q '^create_main_cluster = false' /etc/postgresql-common/createcluster.conf ||
            echo 'create_main_cluster = false' | $sudo tee -a /etc/postgresql-common/createcluster.conf >/dev/null
    else
        echo 'create_main_cluster = false' | $sudo tee /etc/postgresql-common/createcluster.conf >/dev/null
    fi
fi

# Packages must not start services (etcd on 2379, a default cluster on 5432):
# where no policy says so already, one that refuses every start is in place
# for the length of the install.
policy=/usr/sbin/policy-rc.d
policy_is_ours=false
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod 0755 "$policy"
    policy_is_ours=true
fi
remove_policy() { if $policy_is_ours; then $sudo rm -f "$policy"; fi; }
trap remove_policy EXIT

clusters_before=$(pg_lsclusters --no-header 2>/dev/null | awk '{print $1" "$2}' || true)

install_once() {
    $sudo apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
            -o Dpkg::Options::=--force-confold \
            postgresql patroni etcd-server
}

echo "install-packages: installing postgresql, patroni and etcd-server from Debian's packages" >&2
if ! install_once; then
    echo "install-packages: the install failed; trying once more in 10 s" >&2
    sleep 10
    if ! install_once; then
        echo "install-packages: could not install postgresql, patroni and etcd-server with apt-get (no network or no package registry?)" >&2
        exit 1
    fi
fi

# Should a cluster have been made anyway (an older postgresql-common that
# ignores the setting), stop and drop what this install created, and only that.
clusters_after=$(pg_lsclusters --no-header 2>/dev/null | awk '{print $1" "$2}' || true)
while read -r version name; do
    [ -n "$version" ] || continue
    if ! grep -qx "$version $name" <<<"$clusters_before"; then
        echo "install-packages: dropping the cluster $version/$name the install created" >&2
        $sudo pg_dropcluster --stop "$version" "$name"
    fi
done <<<"$clusters_after"

if ! have_everything; then
    echo "install-packages: apt-get succeeded but a PostgreSQL server, patroni or etcd is still missing" >&2
    exit 1
fi
