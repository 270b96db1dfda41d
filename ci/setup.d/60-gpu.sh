# shellcheck shell=bash
# GPU tests (tests/gpu.rs): Debian's real NVIDIA userspace on the host, from
# its non-free component, with no kernel module and no GPU needed; the device
# nodes a driver would make; the guest's own glvnd, Vulkan loader and python3
# (for a dlopen through ctypes); a CDI spec in the shape `nvidia-ctk cdi
# generate` writes, made from what is installed. Sourced by ci/test-setup,
# with its variables; idempotent.

# non-free of the same mirror and suites as the first deb822 stanza.
nonfree=/etc/apt/sources.list.d/distrorun-test-nonfree.sources
if [ ! -e "$nonfree" ] && ! grep -rqs 'non-free' /etc/apt/sources.list /etc/apt/sources.list.d/; then
	uris=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
	suites=$(sed -n 's/^Suites: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
	[ -n "$uris" ] || uris=$DEBIAN_MIRROR
	[ -n "$suites" ] || suites=$(. /etc/os-release && printf '%s' "$VERSION_CODENAME")
	printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: contrib non-free non-free-firmware\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
		"$uris" "$suites" >"$nonfree"
	_apt_updated=
fi
# --no-install-recommends (ensure_packages' way): the recommends bring dkms
# and the kernel headers, and try to build the module.
ensure_packages nvidia-smi libcuda1 libnvidia-ml1 libglx-nvidia0 libegl-nvidia0 nvidia-egl-icd nvidia-vulkan-icd

# The device nodes the kernel module would make, for the checks a run does
# on them; nothing ever opens them successfully without the module.
gpu_node() {
	[ -e "$1" ] || mknod -m 0666 "$1" c "$2" "$3"
}
gpu_node /dev/nvidiactl 195 255
gpu_node /dev/nvidia0 195 0
gpu_node /dev/nvidia-uvm 237 0

# The guest's own graphics stack and python3, which the GPU tests check
# stay the guest's.
GPU_GUEST_PACKAGES="libglx0 libegl1 libvulkan1 python3"
gpu_guest_missing() {
	local p missing=
	for p in $GPU_GUEST_PACKAGES; do
		[ "$(dpkg-query --admindir="$DISTRORUN_GUEST/var/lib/dpkg" -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] ||
			missing="$missing $p"
	done
	printf '%s' "${missing# }"
}
missing=$(gpu_guest_missing)
if [ -n "$missing" ]; then
	say "installing into the guest tree: $missing"
	exec 9>"$DISTRORUN_CACHE/.guest.lock"
	flock 9
	admin_conf=$TEST_ROOT/etc/distrorun.d/guest-admin-$$.conf
	printf '(\n    dir: "%s",\n    mapped_volumes: ["/dev", "/etc/resolv.conf"],\n)\n' "$DISTRORUN_GUEST" >"$admin_conf"
	chmod 0644 "$admin_conf"
	policy=$DISTRORUN_GUEST/usr/sbin/policy-rc.d
	printf '#!/bin/sh\nexit 101\n' >"$policy"
	chmod 0755 "$policy"
	gpu_guest_apt() {
		env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 \
			"$TEST_ROOT/bin/distrorun" -d / "guest-admin-$$" "$@"
	}
	status=0
	gpu_guest_apt apt-get update -qq >/dev/null || status=$?
	if [ "$status" = 0 ]; then
		# shellcheck disable=SC2086
		gpu_guest_apt apt-get install -y -qq --no-install-recommends $missing >"$DISTRORUN_CACHE/guest-gpu.log" 2>&1 ||
			status=$?
		gpu_guest_apt apt-get clean || true
	fi
	rm -f "$policy" "$admin_conf"
	exec 9>&-
	[ "$status" = 0 ] || {
		tail -n 20 "$DISTRORUN_CACHE/guest-gpu.log" >&2
		die "installing the GPU test packages into $DISTRORUN_GUEST failed; the log is $DISTRORUN_CACHE/guest-gpu.log"
	}
	missing=$(gpu_guest_missing)
	[ -z "$missing" ] || die "the guest still lacks: $missing"
fi
# The loader directories a GPU launch shows vendor files in, as --create
# makes them and --doctor asks for them in a hand-made tree.
for d in usr/share/vulkan/icd.d usr/share/vulkan/implicit_layer.d usr/share/glvnd/egl_vendor.d \
	usr/share/egl/egl_external_platform.d usr/share/nvidia; do
	install -d -o root -g root -m 0755 "$DISTRORUN_GUEST/$d"
done
chown root:root "$DISTRORUN_GUEST"
chmod go-w "$DISTRORUN_GUEST"

# The CDI directories compiled into the test build (DISTRORUN_CDI_DIRS), and
# a spec in the shape of `nvidia-ctk cdi generate`, from the installed files.
for d in "$TEST_ROOT/cdi" "$TEST_ROOT/cdi/etc" "$TEST_ROOT/cdi/run"; do
	install -d -o root -g root -m 0755 "$d"
done
rm -f "$TEST_ROOT"/cdi/etc/* "$TEST_ROOT"/cdi/run/*
ci/gpu-cdi-spec >"$TEST_ROOT/cdi/etc/nvidia.yaml"
chmod 0644 "$TEST_ROOT/cdi/etc/nvidia.yaml"
