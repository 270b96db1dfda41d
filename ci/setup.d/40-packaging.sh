# shellcheck shell=bash
# Tools for the documentation and packaging tests (tests/docs.rs,
# tests/packaging.rs): man page linters, the shells whose completions are
# tested, and what `make deb` needs, including the packaged Rust toolchain
# that debian/control names as a build dependency (on Debian 12, the
# rustc-web and cargo-web packages; see ensure_rust in ci/lib.sh).

ensure_packages mandoc groff-base groff man-db lintian bash-completion zsh fish
ensure_deb_build_deps

# A package that an interrupted packaging test left installed (it marks
# its install) is purged; a distrorun package installed by anyone else is
# left alone, and the packaging test refuses to run over it.
if [ -e "$TEST_ROOT/pkgtest-installed" ]; then
	say "purging the distrorun package an interrupted packaging test left installed"
	rm -f /etc/distrorun.d/pkgtest-*.conf
	if dpkg-query -W distrorun >/dev/null 2>&1; then
		DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq distrorun >/dev/null ||
			die "could not purge the leftover distrorun package"
	fi
	rm -f "$TEST_ROOT/pkgtest-installed"
fi
