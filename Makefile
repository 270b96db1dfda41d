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

.PHONY: all build install test demo bench clean

all: build

build:
	$(BUILD_ENV) $(CARGO) build --release --locked --workspace

install: build
	install -D -m 0755 target/release/distrorun $(DESTDIR)$(BINDIR)/distrorun
	install -D -m 0755 target/release/distrorun-helper $(DESTDIR)$(HELPER)
	install -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/distrorun.d
	@if [ "$$(id -u)" = 0 ]; then \
		chown root:root $(DESTDIR)$(HELPER) && chmod 4755 $(DESTDIR)$(HELPER); \
		echo "installed $(DESTDIR)$(HELPER) setuid root"; \
	else \
		echo "not root: the helper is installed without its setuid bit. As root, run:"; \
		echo "  chown root:root $(DESTDIR)$(HELPER)"; \
		echo "  chmod 4755 $(DESTDIR)$(HELPER)"; \
	fi

test:
	ci/test

demo:
	ci/demo

bench:
	ci/bench/run

clean:
	$(CARGO) clean
