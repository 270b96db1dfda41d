# distrorun — build, install, test, demo and benchmark.
#
# The compile-time paths come from the same variables that `make install`
# uses, so an installed binary always finds its config and its helper.

PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
SYSCONFDIR  ?= $(PREFIX)/etc
LIBEXECDIR  ?= $(PREFIX)/libexec
DESTDIR     ?=
CARGO       ?= cargo

BUILD_ENV = DISTRORUN_SYSCONFDIR=$(SYSCONFDIR) DISTRORUN_LIBEXECDIR=$(LIBEXECDIR)
HELPER    = $(LIBEXECDIR)/distrorun/distrorun-helper

# Static-pie binaries: no dynamic loader work on each launch, and no shared
# library loaded into the setuid helper. The explicit --target keeps the flag
# off proc macros and build scripts (see ci/lib.sh).
HOST     := $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')
RELEASE   = target/$(HOST)/release

.PHONY: all build install install-apparmor test demo bench clean

all: build

build:
	RUSTFLAGS="-C target-feature=+crt-static" $(BUILD_ENV) \
		$(CARGO) build --release --locked --workspace --target $(HOST)

install: build
	install -D -m 0755 $(RELEASE)/distrorun $(DESTDIR)$(BINDIR)/distrorun
	install -D -m 0755 $(RELEASE)/distrorun-helper $(DESTDIR)$(HELPER)
	install -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/distrorun.d
	@if [ "$$(id -u)" = 0 ]; then \
		chown root:root $(DESTDIR)$(HELPER) && chmod 4755 $(DESTDIR)$(HELPER); \
		echo "installed $(DESTDIR)$(HELPER) setuid root"; \
	else \
		echo "not root: the helper is installed without its setuid bit. As root, run:"; \
		echo "  chown root:root $(DESTDIR)$(HELPER)"; \
		echo "  chmod 4755 $(DESTDIR)$(HELPER)"; \
	fi

# Ubuntu 23.10 and later confine unprivileged user namespaces with AppArmor;
# this profile lets distrorun (and only it) keep using them, so it does not
# need to fall back to the setuid helper there.
APPARMOR_DIR ?= /etc/apparmor.d
install-apparmor:
	install -d -m 0755 $(DESTDIR)$(APPARMOR_DIR)
	printf '%s\n' \
		'abi <abi/4.0>,' \
		'include <tunables/global>' \
		'' \
		'profile distrorun $(BINDIR)/distrorun flags=(unconfined) {' \
		'  userns,' \
		'  include if exists <local/distrorun>' \
		'}' > $(DESTDIR)$(APPARMOR_DIR)/distrorun
	@if [ -z "$(DESTDIR)" ] && command -v apparmor_parser >/dev/null; then \
		apparmor_parser -r $(APPARMOR_DIR)/distrorun; \
	fi

test:
	ci/test

demo:
	ci/demo

bench:
	ci/bench/run

clean:
	$(CARGO) clean
