# shellcheck shell=bash
# Real kernels for tests/kernels.rs: Debian 11's 5.10 (from the bullseye
# suite, which the Debian mirror still serves) and the newest Debian kernel
# (sid's), each booted under qemu with software emulation. Only the kernel
# image is kept, in /var/cache/distrorun-test/kernels/LABEL/vmlinuz; the
# machine's own apt sources are left alone: a private list directory
# serves the look-ups. Sourced by ci/test-setup.
ensure_packages qemu-system-x86 busybox-static cpio gcc libc6-dev

kernels=/var/cache/distrorun-test/kernels
# apt, with a private source list and list directory in DIR.
_kernel_apt() {
	local dir=$1
	shift
	apt-get -q -o Dir::Etc::SourceList="$dir/sources.list" -o Dir::Etc::SourceParts=/dev/null \
		-o Dir::State::Lists="$dir/lists" -o Dir::Cache="$dir/cache" \
		-o Dir::State::Status=/dev/null -o APT::Architectures::=amd64 \
		-o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false "$@"
}

# LABEL SUITE: the kernel that SUITE's linux-image-amd64 depends on, unless
# already here.
_fetch_kernel() {
	local label=$1 suite=$2 dir=$kernels/$1
	[ -s "$dir/vmlinuz" ] && return 0
	local apt_dir
	apt_dir=$(mktemp -d)
	mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache" "$dir"
	printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian %s main\n' \
		"$suite" >"$apt_dir/sources.list"
	_kernel_apt "$apt_dir" update >/dev/null || die "cannot read the $suite package list"
	local image
	image=$(apt-cache -o Dir::Etc::SourceList="$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null \
		-o Dir::State::Lists="$apt_dir/lists" -o Dir::Cache="$apt_dir/cache" -o Dir::State::Status=/dev/null \
		show linux-image-amd64 2>/dev/null |
		sed -n 's/^Depends:.*\(linux-image-[0-9][^ ]*-amd64\).*/\1/p' | head -n1)
	[ -n "$image" ] || die "no linux-image-amd64 in $suite"
	chmod 0755 "$apt_dir"
	# Newer packages keep the image itself in linux-binary-VERSION, under
	# /usr/lib/modules rather than /boot.
	local pkg
	for pkg in "$image" "linux-binary-${image#linux-image-}"; do
		(cd "$apt_dir" && _kernel_apt "$apt_dir" download "$pkg" >/dev/null 2>&1) || continue
		dpkg-deb -x "$apt_dir/${pkg}"_*.deb "$apt_dir/x" || die "cannot unpack $pkg"
	done
	local found
	found=$(find "$apt_dir/x" -type f -name 'vmlinuz*' | head -n1)
	[ -n "$found" ] || die "no kernel image in $image from $suite"
	cp "$found" "$dir/vmlinuz.new"
	mv "$dir/vmlinuz.new" "$dir/vmlinuz"
	echo "$image" >"$dir/package"
	rm -rf "$apt_dir"
	say "kernel $label: $image"
}
_fetch_kernel 5.10 bullseye
_fetch_kernel newest sid
