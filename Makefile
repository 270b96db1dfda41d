# distrorun — build, install, test, demo and benchmark.
#
# The compile-time paths come from the same variables that `make install`
# uses, so an installed binary always finds its config and its helper.

PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
SYSCONFDIR  ?= $(PREFIX)/etc
LIBEXECDIR  ?= $(PREFIX)/libexec
DATADIR     ?= $(PREFIX)/share
MANDIR      ?= $(DATADIR)/man
# Where each shell looks for completions of installed programs.
BASHCOMPDIR ?= $(DATADIR)/bash-completion/completions
ZSHCOMPDIR  ?= $(DATADIR)/zsh/site-functions
FISHCOMPDIR ?= $(DATADIR)/fish/vendor_completions.d
DESTDIR     ?=
CARGO       ?= cargo
TARGET_DIR  ?= target

BUILD_ENV = DISTRORUN_SYSCONFDIR=$(SYSCONFDIR) DISTRORUN_LIBEXECDIR=$(LIBEXECDIR)
HELPER    = $(LIBEXECDIR)/distrorun/distrorun-helper

# Linked static-pie, so that no launch pays the dynamic loader; names that
# the host's files do not answer go to NSS through getent (see ci/lib.sh).
# The explicit --target keeps the binaries in one place whatever RUSTFLAGS
# say, and the flag comes last so that it wins over one already there.
HOST     := $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')
RELEASE   = $(TARGET_DIR)/$(HOST)/release

.PHONY: all build install install-files uninstall install-apparmor uninstall-apparmor deb test demo bench clean

all: build

build:
	$(BUILD_ENV) RUSTFLAGS="$(strip $(RUSTFLAGS) -C target-feature=+crt-static)" $(CARGO) build --release --locked --workspace --target $(HOST) --target-dir $(TARGET_DIR)

# What `make install` installs, and the directories it had to create for
# them; `make uninstall` removes exactly these, and a directory only when
# it is empty (an admin's configs in distrorun.d stay). The list of created
# directories is kept beside the helper, so that uninstall finds it with the
# same variables.
INSTALLED = $(BINDIR)/distrorun $(HELPER) \
	$(MANDIR)/man1/distrorun.1 $(MANDIR)/man5/distrorun.conf.5 \
	$(BASHCOMPDIR)/distrorun $(ZSHCOMPDIR)/_distrorun $(FISHCOMPDIR)/distrorun.fish
INSTALL_DIRS = $(BINDIR) $(LIBEXECDIR)/distrorun $(SYSCONFDIR)/distrorun.d \
	$(MANDIR)/man1 $(MANDIR)/man5 $(BASHCOMPDIR) $(ZSHCOMPDIR) $(FISHCOMPDIR)
CREATED_DIRS = $(LIBEXECDIR)/distrorun/installed-directories

install: build
	$(MAKE) --no-print-directory install-files

# install without building: installs what is in $(RELEASE).
install-files:
	@set -e; new=; \
	if [ -n "$(DESTDIR)" ]; then install -d -m 0755 "$(DESTDIR)"; fi; \
	for d in $(INSTALL_DIRS); do \
		p=$(DESTDIR)$$d; missing=; \
		while [ ! -d "$$p" ]; do missing="$$p $$missing"; p=$$(dirname "$$p"); done; \
		for m in $$missing; do install -d -m 0755 "$$m"; new="$$new$${m#$(DESTDIR)}\n"; done; \
	done; \
	printf '%b' "$$new" >> $(DESTDIR)$(CREATED_DIRS)
	install -m 0755 $(RELEASE)/distrorun $(DESTDIR)$(BINDIR)/distrorun
	install -m 0755 $(RELEASE)/distrorun-helper $(DESTDIR)$(HELPER)
	install -m 0644 man/distrorun.1 $(DESTDIR)$(MANDIR)/man1/distrorun.1
	install -m 0644 man/distrorun.conf.5 $(DESTDIR)$(MANDIR)/man5/distrorun.conf.5
	install -m 0644 completions/distrorun.bash $(DESTDIR)$(BASHCOMPDIR)/distrorun
	install -m 0644 completions/_distrorun $(DESTDIR)$(ZSHCOMPDIR)/_distrorun
	install -m 0644 completions/distrorun.fish $(DESTDIR)$(FISHCOMPDIR)/distrorun.fish
	@if [ "$$(id -u)" = 0 ]; then \
		chown root:root $(DESTDIR)$(HELPER) && chmod 4755 $(DESTDIR)$(HELPER); \
		echo "installed $(DESTDIR)$(HELPER) setuid root"; \
	else \
		echo "not root: the helper is installed without its setuid bit. As root, run:"; \
		echo "  chown root:root $(DESTDIR)$(HELPER)"; \
		echo "  chmod 4755 $(DESTDIR)$(HELPER)"; \
	fi

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	@set -e; list=$(DESTDIR)$(CREATED_DIRS); \
	if [ -f "$$list" ]; then \
		dirs=$$(tac "$$list"); rm -f "$$list"; \
		for d in $$dirs; do \
			if [ -d "$(DESTDIR)$$d" ]; then rmdir --ignore-fail-on-non-empty "$(DESTDIR)$$d"; fi; \
		done; \
	elif [ -d $(DESTDIR)$(LIBEXECDIR)/distrorun ]; then \
		rmdir --ignore-fail-on-non-empty $(DESTDIR)$(LIBEXECDIR)/distrorun; \
	fi

# Ubuntu 23.10 and later confine unprivileged user namespaces with AppArmor;
# apparmor/distrorun lets distrorun (and only it) keep using them, so it does
# not need to fall back to the setuid helper there. AppArmor reads profiles
# from /etc/apparmor.d only, whatever PREFIX is.
APPARMOR_DIR ?= /etc/apparmor.d
install-apparmor:
	install -d -m 0755 $(DESTDIR)$(APPARMOR_DIR)
	sed 's|/usr/bin/distrorun |$(BINDIR)/distrorun |' apparmor/distrorun > $(DESTDIR)$(APPARMOR_DIR)/distrorun
	chmod 0644 $(DESTDIR)$(APPARMOR_DIR)/distrorun
	@if [ -z "$(DESTDIR)" ] && command -v apparmor_parser >/dev/null && \
		[ "$$(cat /sys/module/apparmor/parameters/enabled 2>/dev/null)" = Y ]; then \
		apparmor_parser -r -T $(APPARMOR_DIR)/distrorun; \
	fi

uninstall-apparmor:
	@if [ -z "$(DESTDIR)" ] && command -v apparmor_parser >/dev/null && \
		grep -q '^distrorun ' /sys/kernel/security/apparmor/profiles 2>/dev/null; then \
		apparmor_parser -R $(APPARMOR_DIR)/distrorun; \
	fi
	rm -f $(DESTDIR)$(APPARMOR_DIR)/distrorun

# A Debian package, built with dpkg-buildpackage from a copy of the sources
# (so that the build leaves nothing in this tree but $(DEB_OUT)); see
# debian/ and docs/packaging.md. As root, it first installs the build dependencies
# it lacks.
DEB_OUT ?= target/deb
deb:
	ci/deb-build-deps
	rm -rf $(DEB_OUT) && mkdir -p $(DEB_OUT)/src
	tar --exclude=./target --exclude=./.git --exclude=./config/fuzz/target -cf - . | tar -C $(DEB_OUT)/src -xf -
	cd $(DEB_OUT)/src && dpkg-buildpackage --build=binary --no-sign
	rm -rf $(DEB_OUT)/src
	@ls $(DEB_OUT)/*.deb

test:
	ci/test

demo:
	ci/demo

bench:
	ci/bench/run

clean:
	$(CARGO) clean
