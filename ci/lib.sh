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
		apt-get update -qq || die "apt-get update failed"
		_apt_updated=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
		die "could not install: ${missing[*]}"
}

# The oldest toolchain the workspace declares it builds with.
_rust_min_version() {
	sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' Cargo.toml | head -n 1
}

_version_ge() {
	[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" = "$2" ]
}

# Finds cargo for root, whose PATH under sudo rarely includes ~/.cargo/bin;
# falls back to the distribution's toolchain when that is new enough.
ensure_rust() {
	local want have
	want=$(_rust_min_version)
	want=${want:-1.80}
	if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then
		PATH=$HOME/.cargo/bin:$PATH
	fi
	if ! command -v cargo >/dev/null; then
		say "cargo not found; trying the distribution's Rust toolchain"
		ensure_packages cargo rustc rustfmt
		command -v cargo >/dev/null || die "no cargo after installing it"
	fi
	have=$(rustc --version 2>/dev/null | awk '{print $2}')
	have=${have%%-*}
	if ! _version_ge "${have:-0}" "$want"; then
		die "Rust $have is older than the $want this workspace needs. Install a current toolchain with rustup (https://rustup.rs) for root, or put its cargo first in PATH."
	fi
	export PATH
}

# Makes sure the components ci/test uses exist, installing them through rustup
# when that is how Rust was installed.
ensure_rust_tools() {
	if ! cargo fmt --version >/dev/null 2>&1; then
		if command -v rustup >/dev/null; then rustup component add rustfmt; else ensure_packages rustfmt; fi
	fi
	if ! cargo clippy --version >/dev/null 2>&1; then
		if command -v rustup >/dev/null; then rustup component add clippy; else ensure_packages rust-clippy; fi
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

# Refuses to delete a tree that has anything mounted below it: removing a tree
# with a bound /home inside would delete the user's files.
_no_mounts_under() {
	local dir=$1
	if awk -v d="$dir" '$5 == d || index($5, d "/") == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
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

# Release builds are static-pie: every launch then skips the dynamic loader's
# work (a third of a start-up on a VM, where its CPU probing is slow), and
# the setuid helper loads no shared library while privileged. The explicit
# --target keeps the flag off proc macros and build scripts, which must stay
# dynamic.
rust_host() {
	rustc -vV | sed -n 's/^host: //p'
}

# cargo_release TARGET_DIR [CARGO_ARGS...]: binaries land in $(release_dir TARGET_DIR).
cargo_release() {
	local dir=$1
	shift
	RUSTFLAGS="-C target-feature=+crt-static${RUSTFLAGS:+ $RUSTFLAGS}" \
		cargo build --release --locked --target "$(rust_host)" --target-dir "$dir" "$@"
}

release_dir() {
	printf '%s/%s/release\n' "$1" "$(rust_host)"
}
