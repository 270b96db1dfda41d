# shellcheck shell=bash
# Desktop tests (tests/desktop/, tests/user_db.rs): the servers on the
# host, the clients inside the guest tree, the test user's runtime directory,
# and a user whose GECOS field holds odd characters. Sourced by
# ci/test-setup, with its variables; idempotent.

# The servers: Xvfb with xauth cookies, a headless weston, a session bus,
# PulseAudio with a null sink; xwininfo and xdpyinfo to look at the display
# from the host, xwd and ImageMagick to save a screenshot of it; gio to
# start an exported launcher as a desktop would.
ensure_packages xvfb xauth x11-utils x11-apps weston dbus-daemon dbus-bin pulseaudio pulseaudio-utils \
	openssh-client imagemagick libglib2.0-bin

# A user whose GECOS field holds characters that the passwd format allows
# but that quoting code tends to get wrong.
GECOS_USER=distrorun-gecos
if ! id -u "$GECOS_USER" >/dev/null 2>&1; then
	useradd --create-home --shell /bin/bash --comment "Zoë O'Brien,Room #1,\\x;=%" "$GECOS_USER"
fi

# /run/user/UID is made by a login session, which su and setpriv do not
# start. The desktop servers put their sockets there.
for u in "$TEST_USER" "$GECOS_USER"; do
	uid=$(id -u "$u")
	install -d -o "$u" -g "$(id -g "$u")" -m 0700 "/run/user/$uid"
done

# The clients, inside the shared guest tree, installed through distrorun
# itself as root (a private mount namespace with /proc and /sys, which apt
# needs): the tree is never mounted on in the host's namespace, where other
# tests look for leftover mounts under it.
DESKTOP_GUEST_PACKAGES="x11-utils x11-apps wayland-utils dbus-bin pulseaudio-utils bubblewrap util-linux \
openssh-client tzdata"
desktop_guest_missing() {
	local p missing=
	for p in $DESKTOP_GUEST_PACKAGES; do
		[ "$(dpkg-query --admindir="$DISTRORUN_GUEST/var/lib/dpkg" -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] ||
			missing="$missing $p"
	done
	printf '%s' "${missing# }"
}
missing=$(desktop_guest_missing)
if [ -n "$missing" ]; then
	say "installing into the guest tree: $missing"
	exec 9>"$DISTRORUN_CACHE/.guest.lock"
	flock 9
	admin_conf=$TEST_ROOT/etc/distrorun.d/guest-admin-$$.conf
	cat >"$admin_conf" <<EOF
(
    dir: "$DISTRORUN_GUEST",
    mapped_volumes: ["/dev", "/etc/resolv.conf"],
)
EOF
	chmod 0644 "$admin_conf"
	# No daemon may start inside while packages are configured.
	policy=$DISTRORUN_GUEST/usr/sbin/policy-rc.d
	printf '#!/bin/sh\nexit 101\n' >"$policy"
	chmod 0755 "$policy"
	guest_apt() {
		env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 \
			"$TEST_ROOT/bin/distrorun" -d / "guest-admin-$$" "$@"
	}
	status=0
	guest_apt apt-get update -qq >/dev/null || status=$?
	if [ "$status" = 0 ]; then
		# shellcheck disable=SC2086
		guest_apt apt-get install -y -qq --no-install-recommends $missing >"$DISTRORUN_CACHE/guest-desktop.log" 2>&1 ||
			status=$?
		guest_apt apt-get clean || true
	fi
	rm -f "$policy" "$admin_conf"
	exec 9>&-
	[ "$status" = 0 ] || {
		tail -n 20 "$DISTRORUN_CACHE/guest-desktop.log" >&2
		die "installing the desktop clients into $DISTRORUN_GUEST failed; the log is $DISTRORUN_CACHE/guest-desktop.log"
	}
	missing=$(desktop_guest_missing)
	[ -z "$missing" ] || die "the guest still lacks: $missing"
	# shellcheck disable=SC2086
	printf '%s\n' $DESKTOP_GUEST_PACKAGES >"$DISTRORUN_CACHE/guest.desktop-packages"
	chmod 0644 "$DISTRORUN_CACHE/guest.desktop-packages"
fi
# The helper refuses a tree that is not root's or is writable by others;
# package scripts must not have changed that.
chown root:root "$DISTRORUN_GUEST"
chmod go-w "$DISTRORUN_GUEST"
require_trusted_path "$DISTRORUN_GUEST"
