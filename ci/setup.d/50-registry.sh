# shellcheck shell=bash
# Distros from container registries (`--create --image`, `--update`): a
# real registry (Debian's docker-registry, distribution 2.8) that the tests
# start on loopback, openssl for its certificate authority, htpasswd
# (apache2-utils) for its password file, skopeo to push and umoci to build
# the images. Sourced by ci/test-setup.
ensure_packages docker-registry apache2-utils openssl skopeo umoci python3 busybox-static

# The package starts a registry of its own on port 5000; the tests need
# none, and a machine running them should not serve one.
if command -v systemctl >/dev/null && systemctl is-enabled docker-registry >/dev/null 2>&1; then
	systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi
