# shellcheck shell=bash
# Functions shared by the ci/ scripts. Source it; it defines functions and
# variables only.

DISTRORUN_CACHE=/var/cache/distrorun-test
DISTRORUN_GUEST=$DISTRORUN_CACHE/guest
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

say() { printf '%s\n' "$*" >&2; }

die() {
	printf '%s: %s\n' "${0##*/}" "$*" >&2
	exit 1
}

need_root() {
	[ "$(id -u)" = 0 ] && return 0
	die "must run as root: it installs packages, creates users and a setuid-root helper, and builds a guest tree. Try: sudo $0"
}

# True when the package is installed (not merely known or half-removed).
package_installed() {
	[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

_apt_updated=
ensure_packages() {
	local missing=() p
	for p in "$@"; do
		package_installed "$p" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	command -v apt-get >/dev/null || die "missing packages: ${missing[*]} (and no apt-get to install them)"
	say "installing ${missing[*]}"
	if [ -z "$_apt_updated" ]; then
		apt-get -o DPkg::Lock::Timeout=600 update -qq || die "apt-get update failed"
		_apt_updated=1
	fi
	# Another installer may hold the lock (unattended-upgrades on a fresh
	# machine): wait for it rather than fail.
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
		die "could not install: ${missing[*]}"
}

# The oldest toolchain the workspace declares it builds with.
_rust_min_version() {
	sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' Cargo.toml | head -n 1
}

_version_ge() {
	[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" = "$2" ]
}

# Prints the version apt would install of PACKAGE, or nothing. Reads the
# package lists once first on a machine that has none yet (a fresh image).
_apt_candidate() {
	local v
	command -v apt-cache >/dev/null || return 0
	v=$(apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: //p')
	if { [ -z "$v" ] || [ "$v" = "(none)" ]; } && [ -z "$_apt_updated" ] && [ "$(id -u)" = 0 ]; then
		apt-get update -qq >/dev/null 2>&1 || true
		_apt_updated=1
		v=$(apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: //p')
	fi
	[ "$v" = "(none)" ] || printf '%s\n' "$v"
}

# The upstream version in a Debian version: 1.96.0+dfsg1-1~deb12u2 -> 1.96.0.
_upstream_version() {
	local v=${1#*:}
	v=${v%%[+~-]*}
	printf '%s\n' "$v"
}

# Which packaged toolchain is new enough: Debian 13's own `rustc`/`cargo`,
# or on Debian 12, whose `rustc` is 1.63, the current one that bookworm
# ships beside it for Firefox and Chromium (`rustc-web`, `cargo-web`, from
# bookworm-security and bookworm-updates; it installs /usr/bin/cargo and
# /usr/bin/rustc and conflicts with the old ones). Prints "plain", "web" or
# nothing.
_rust_flavour() {
	local want=$1 v
	# rustc's version is Rust's; cargo's own package once had another
	# numbering (0.66 in bookworm).
	v=$(_apt_candidate rustc)
	if [ -n "$v" ] && _version_ge "$(_upstream_version "$v")" "$want"; then
		echo plain
		return
	fi
	v=$(_apt_candidate rustc-web)
	if [ -n "$v" ] && _version_ge "$(_upstream_version "$v")" "$want"; then
		echo web
	fi
}

_rust_version() {
	local have
	have=$("${1:-rustc}" --version 2>/dev/null | awk '{print $2}')
	printf '%s\n' "${have%%-*}"
}

# Finds cargo for root, whose PATH under sudo rarely includes ~/.cargo/bin.
# Where cargo is missing or too old, installs the distribution's toolchain
# when it is new enough (see _rust_flavour), and uses it.
ensure_rust() {
	local want have flavour
	want=$(_rust_min_version)
	want=${want:-1.80}
	# rustup's toolchain, where there is one, wins over the distribution's
	# (which the packaging tests install beside it), so that every run on a
	# machine builds with the same compiler.
	case ":$PATH:" in
	*":$HOME/.cargo/bin:"*) ;;
	*) if [ -x "$HOME/.cargo/bin/cargo" ]; then PATH=$HOME/.cargo/bin:$PATH; fi ;;
	esac
	have=
	command -v cargo >/dev/null && have=$(_rust_version)
	if [ -z "$have" ] || ! _version_ge "$have" "$want"; then
		flavour=$(_rust_flavour "$want")
		case $flavour in
		plain)
			say "${have:+Rust $have is older than $want; }installing the distribution's Rust toolchain"
			ensure_packages rustc cargo
			;;
		web)
			say "${have:+Rust $have is older than $want; }installing the distribution's current Rust toolchain (rustc-web, cargo-web)"
			ensure_packages rustc-web cargo-web
			;;
		*)
			die "${have:+Rust $have is older than the $want this workspace needs, and }the distribution has no Rust $want or later. Install a current toolchain with rustup (https://rustup.rs) for root, or put its cargo first in PATH."
			;;
		esac
		# An older cargo earlier in PATH (an old rustup toolchain) must not
		# shadow the one just installed.
		if _version_ge "$(_rust_version /usr/bin/rustc)" "$want"; then
			PATH=/usr/bin:$PATH
		fi
		hash -r
		command -v cargo >/dev/null || die "no cargo after installing it"
		have=$(_rust_version)
	fi
	if ! _version_ge "${have:-0}" "$want"; then
		die "Rust $have is older than the $want this workspace needs. Install a current toolchain with rustup (https://rustup.rs) for root, or put its cargo first in PATH."
	fi
	export PATH
}

# Makes sure the components ci/test uses exist, installing them through rustup
# when that is how Rust was installed, else as the packages that go with the
# packaged toolchain in use.
ensure_rust_tools() {
	local fmt=rustfmt clippy=rust-clippy
	if package_installed rustc-web; then
		fmt=rustfmt-web
		clippy=rust-web-clippy
	fi
	if ! cargo fmt --version >/dev/null 2>&1; then
		if command -v rustup >/dev/null; then rustup component add rustfmt; else ensure_packages "$fmt"; fi
	fi
	if ! cargo clippy --version >/dev/null 2>&1; then
		if command -v rustup >/dev/null; then rustup component add clippy; else ensure_packages "$clippy"; fi
	fi
	cargo fmt --version >/dev/null 2>&1 || die "cargo fmt is not available"
	cargo clippy --version >/dev/null 2>&1 || die "cargo clippy is not available"
}

# Prints the guest's Debian suite: trixie, or bookworm when the host already is
# trixie, so that the guest is always a different distribution from the host.
guest_suite_for_host() {
	local host=
	if [ -r /etc/os-release ]; then
		host=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")
	fi
	if [ "$host" = trixie ]; then echo bookworm; else echo trixie; fi
}

# What `make deb` builds with: dpkg-buildpackage, debhelper, and the
# packaged Rust toolchain that debian/control names (on Debian 12, the
# rustc-web and cargo-web packages; see ensure_rust). build-essential is in
# no Build-Depends line, yet dpkg-checkbuilddeps demands it of every build,
# and a minimal system (a debootstrap, a container image) lacks it.
ensure_deb_build_deps() {
	ensure_packages build-essential dpkg-dev debhelper fakeroot make
	case $(_rust_flavour "$(_rust_min_version)") in
	web) ensure_packages rustc-web cargo-web ;;
	plain) ensure_packages rustc cargo ;;
	*) die "the distribution has no packaged Rust $(_rust_min_version) or later, which debian/control builds with" ;;
	esac
}

# True when anything is mounted at or below DIR.
mounted_under() {
	awk -v d="$1" '$5 == d || index($5, d "/") == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo
}

# Refuses to delete a tree that has anything mounted below it: removing a tree
# with a bound /home inside would delete the user's files.
_no_mounts_under() {
	local dir=$1
	if mounted_under "$dir"; then
		die "something is mounted under $dir; unmount it first (see: findmnt -R $dir)"
	fi
}

# Builds the guest tree once with debootstrap, into a temporary directory that
# is renamed only when complete; later runs reuse it. A lock serialises
# concurrent builders.
build_guest() {
	local suite tmp=$DISTRORUN_CACHE/guest.tmp log
	install -d -o root -g root -m 0755 "$DISTRORUN_CACHE"
	chown root:root "$DISTRORUN_CACHE"
	chmod 0755 "$DISTRORUN_CACHE"
	exec 9>"$DISTRORUN_CACHE/.guest.lock"
	flock 9
	if [ -d "$DISTRORUN_GUEST" ] && [ -s "$DISTRORUN_CACHE/guest.suite" ]; then
		exec 9>&-
		return 0
	fi
	ensure_packages debootstrap
	suite=$(guest_suite_for_host)
	say "building the $suite guest tree in $DISTRORUN_GUEST with debootstrap (about a minute)"
	_no_mounts_under "$tmp"
	rm -rf "$tmp"
	log=$DISTRORUN_CACHE/debootstrap.log
	if ! debootstrap --variant=minbase "$suite" "$tmp" "$DEBIAN_MIRROR" >"$log" 2>&1; then
		tail -n 20 "$log" >&2
		die "debootstrap $suite failed; the full log is $log"
	fi
	chown root:root "$tmp"
	chmod 0755 "$tmp"
	# A guest without its suite file is a leftover of an interrupted run.
	_no_mounts_under "$DISTRORUN_GUEST"
	rm -rf "$DISTRORUN_GUEST"
	mv "$tmp" "$DISTRORUN_GUEST"
	printf '%s\n' "$suite" >"$DISTRORUN_CACHE/guest.suite"
	chmod 0644 "$DISTRORUN_CACHE/guest.suite"
	rm -f "$log"
	exec 9>&-
}

# Fails unless PATH's filesystem honours setuid bits.
require_suid_fs() {
	local path=$1 opts
	opts=$(findmnt -n -o OPTIONS -T "$path") || die "cannot find the filesystem of $path"
	case ",$opts," in
	*,nosuid,*) die "$path is on a filesystem mounted nosuid ($opts): the setuid helper would not gain root there. Remount it without nosuid, or use a machine where it is not." ;;
	esac
}

# Fails unless every component from / down to PATH is root-owned and not
# writable by group or others, as the helper demands of its config and trees.
require_trusted_path() {
	local path=$1 p=/ c owner mode
	local -a parts
	IFS=/ read -r -a parts <<<"$path"
	for c in "" "${parts[@]}"; do
		[ -z "$c" ] || p=${p%/}/$c
		[ -n "$c" ] || [ "$p" = / ] || continue
		read -r owner mode < <(stat -c '%u %a' "$p") || die "cannot stat $p"
		[ "$owner" = 0 ] || die "$p is owned by uid $owner, not root; the setuid helper refuses everything below it"
		case $mode in
		*[2367]? | *[2367]) die "$p has mode $mode (writable by group or others); the setuid helper refuses everything below it" ;;
		esac
	done
}

# Release builds are static-pie, so that no launch pays the dynamic loader
# and its relocations. A static glibc cannot load NSS modules, so distrorun
# reads the host's /etc/passwd and /etc/group itself when nsswitch.conf puts
# `files` first, and asks NSS (systemd, sss, ldap, extrausers) through
# glibc's dynamically linked getent only otherwise (config/src/nss.rs). The
# explicit --target keeps the release binaries in one place whatever
# RUSTFLAGS a caller adds.
rust_host() {
	rustc -vV | sed -n 's/^host: //p'
}

# cargo_release TARGET_DIR [CARGO_ARGS...]: the shipped linking; binaries
# land in $(release_dir TARGET_DIR).
cargo_release() {
	cargo_build_linking static "$@"
}

release_dir() {
	printf '%s/%s/release\n' "$1" "$(rust_host)"
}

# cargo_build_linking static|dynamic TARGET_DIR [CARGO_ARGS...]: a release
# build linked one way or the other, so that the bench can price one
# linking against the other. Both keep the explicit --target, so that the
# two builds differ in nothing but the flag; the flag comes last, so that it
# wins over one already in RUSTFLAGS. The binaries land in
# $(release_dir TARGET_DIR).
cargo_build_linking() {
	local mode=$1 dir=$2 feature
	shift 2
	case $mode in
	static) feature=+crt-static ;;
	dynamic) feature=-crt-static ;;
	*) die "cargo_build_linking: static or dynamic, not '$mode'" ;;
	esac
	RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=$feature" \
		cargo build --release --locked --target "$(rust_host)" --target-dir "$dir" "$@"
}
