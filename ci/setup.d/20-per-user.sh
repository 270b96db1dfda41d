# shellcheck shell=bash
# Per-user distros (`distrorun --create`, `--root`, `--remove`): the tools
# the tests make their archives with, shadow's newuidmap/newgidmap, and a
# subordinate id range for each test user. Sourced by ci/test-setup.

# uidmap: newuidmap and newgidmap, which write the keep-id maps.
# umoci and skopeo: OCI image layouts; zstd and xz-utils: compressed
# tarballs; dpkg-dev: dpkg-deb, for the package the --root test installs;
# libcap2-bin: setcap and getcap, for file capabilities in an archive.
# python3: the caching proxy the --debian test puts in front of the mirror.
ensure_packages uidmap zstd xz-utils dpkg-dev umoci skopeo mmdebstrap libcap2-bin python3

# A range per test user, unless useradd already gave one. The ranges must
# not overlap each other or any other user's.
subid_range() {
	local user=$1 file start
	for file in /etc/subuid /etc/subgid; do
		[ -e "$file" ] || install -m 0644 /dev/null "$file"
	done
	if grep -q "^$user:" /etc/subuid && grep -q "^$user:" /etc/subgid; then
		return 0
	fi
	start=$(awk -F: 'BEGIN { s = 100000 } { e = $2 + $3; if (e > s) s = e } END { print s }' /etc/subuid /etc/subgid)
	say "giving $user the subordinate ids $start-$((start + 65535))"
	grep -q "^$user:" /etc/subuid || usermod --add-subuids "$start-$((start + 65535))" "$user"
	grep -q "^$user:" /etc/subgid || usermod --add-subgids "$start-$((start + 65535))" "$user"
}
subid_range "$TEST_USER"
subid_range "$OTHER_USER"

# What the tests unpack, made here once per machine from the cached guest
# tree, with numeric owners as a rootfs tarball has them.
PER_USER_DIR=$TEST_ROOT/per-user
install -d -o root -g root -m 0755 "$PER_USER_DIR"
# Another set-up running at the same time waits here rather than writing
# the same files.
exec 8>"$PER_USER_DIR/.lock"
flock 8
# Remade when anything in the guest changed since (other set-up parts add
# packages to it).
if [ ! -s "$PER_USER_DIR/guest.tar" ] ||
	[ -n "$(find "$DISTRORUN_GUEST" -newer "$PER_USER_DIR/guest.tar" -print -quit)" ]; then
	say "making the guest tarball $PER_USER_DIR/guest.tar"
	tar --numeric-owner --xattrs -C "$DISTRORUN_GUEST" -cf "$PER_USER_DIR/guest.tar.new" .
	# apt's download directories as apt leaves them once it has run: owned
	# by _apt (uid 42), appended so that they replace the guest's own.
	apt_dirs=$(mktemp -d)
	install -d -m 0700 "$apt_dirs/var/cache/apt/archives/partial" "$apt_dirs/var/lib/apt/lists/partial"
	tar --numeric-owner --owner=42 --group=0 -C "$apt_dirs" -rf "$PER_USER_DIR/guest.tar.new" \
		./var/cache/apt/archives/partial ./var/lib/apt/lists/partial
	rm -rf "$apt_dirs"
	chmod 0644 "$PER_USER_DIR/guest.tar.new"
	mv "$PER_USER_DIR/guest.tar.new" "$PER_USER_DIR/guest.tar"
	rm -f "$PER_USER_DIR/guest.tar.zst"
fi
if [ ! -s "$PER_USER_DIR/guest.tar.zst" ]; then
	zstd -q -T0 -3 "$PER_USER_DIR/guest.tar" -o "$PER_USER_DIR/guest.tar.zst.new"
	chmod 0644 "$PER_USER_DIR/guest.tar.zst.new"
	mv "$PER_USER_DIR/guest.tar.zst.new" "$PER_USER_DIR/guest.tar.zst"
fi
exec 8>&-
