# devlock - one non-recursive make for the broker, the client library, the
# CLI, and the tests. Objects go to build/ (build/asan/ for the sanitizer
# variant). `make help` lists the targets.

CC      ?= cc
CFLAGS  ?= -O2 -g
WERROR  ?= 1
PREFIX  ?= /usr/local
DESTDIR ?=
B       ?= build

PKGS      := libwebsockets hiredis libcjson uuid libuv openssl libcurl
# The client library speaks WebSocket itself (client/lc_ws.c): no libwebsockets.
CLI_PKGS  := libcurl libcjson openssl

WARN := -std=c11 -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2
ifeq ($(WERROR),1)
WARN += -Werror
endif
ALL_CFLAGS = $(CFLAGS) $(WARN) -D_GNU_SOURCE -MMD -MP -Icommon -I$(B)/gen
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CLI_CFLAGS = $(shell pkg-config --cflags $(CLI_PKGS) 2>/dev/null)
CLI_LIBS   = $(shell pkg-config --libs $(CLI_PKGS) 2>/dev/null)

.DEFAULT_GOAL := all
.PHONY: all deps run test test-unit test-integration test-e2e test-asan clean help \
        install uninstall deb examples bench fuzz fuzz-targets chaos test-valgrind

# ---- common/: libcommon.a, linked into everything -------------------------
COMMON_SRC := $(wildcard common/*.c)
COMMON_OBJ := $(COMMON_SRC:%.c=$(B)/%.o)
$(B)/common/%.o: common/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c $< -o $@
$(B)/libcommon.a: $(COMMON_OBJ)
	@mkdir -p $(@D)
	$(AR) rcs $@ $^
# The client library links common/ into a shared object.
$(B)/pic/common/%.o: common/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -fPIC -fvisibility=hidden -c $< -o $@

# ---- server/: devlockd ----------------------------------------------------
SERVER_SRC := $(wildcard server/*.c)
SERVER_OBJ := $(SERVER_SRC:%.c=$(B)/%.o) $(B)/gen/lua_scripts.o $(B)/gen/web_assets.o
LUA_SRC    := server/lua/prelude.lua $(filter-out server/lua/prelude.lua,$(sort $(wildcard server/lua/*.lua)))
WEB_SRC    := $(sort $(wildcard server/web/*))

$(B)/gen/lua_scripts.c: $(LUA_SRC) scripts/embed.sh
	@mkdir -p $(@D)
	sh scripts/embed.sh lua $(LUA_SRC) > $@
$(B)/gen/web_assets.c: $(WEB_SRC) scripts/embed.sh
	@mkdir -p $(@D)
	sh scripts/embed.sh web $(WEB_SRC) > $@
$(B)/gen/%.o: $(B)/gen/%.c
	$(CC) $(ALL_CFLAGS) -Iserver -c $< -o $@

$(B)/server/%.o: server/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -Iserver $(PKG_CFLAGS) -c $< -o $@

# pollset.c's uv_poll_start, uv_poll_stop and uv_close stand in for libuv's,
# also for lws's dlopen()ed libuv plugin: they must be in the dynamic table
POLLSET_EXPORTS := -Wl,--export-dynamic-symbol=uv_poll_start -Wl,--export-dynamic-symbol=uv_poll_stop \
                   -Wl,--export-dynamic-symbol=uv_close
$(B)/devlockd: $(SERVER_OBJ) $(B)/libcommon.a
	$(CC) $(CFLAGS) -o $@ $^ $(PKG_LIBS) -lm $(POLLSET_EXPORTS) $(LDFLAGS)

# ---- client/: liblockclient (.so + .a), lockctl, examples ------------------
LC_MAJOR   := 1
LC_VERSION := 1.2.0
LIB_SRC    := $(wildcard client/*.c)
LIB_OBJ    := $(LIB_SRC:%.c=$(B)/pic/%.o) $(COMMON_SRC:%.c=$(B)/pic/%.o)
CLI_SRC    := $(wildcard client/cli/*.c)
EXAMPLE_SRC := $(wildcard client/examples/*.c)
EXAMPLES   := $(EXAMPLE_SRC:client/examples/%.c=$(B)/examples/%)

$(B)/pic/client/%.o: client/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -Iclient/include $(CLI_CFLAGS) -fPIC -fvisibility=hidden -pthread -c $< -o $@
$(B)/liblockclient.so.$(LC_VERSION): $(LIB_OBJ) client/lockclient.map
	$(CC) $(CFLAGS) -shared -Wl,-soname,liblockclient.so.$(LC_MAJOR) \
	  -Wl,--version-script=client/lockclient.map -o $@ $(LIB_OBJ) $(CLI_LIBS) -pthread $(LDFLAGS)
$(B)/liblockclient.so: $(B)/liblockclient.so.$(LC_VERSION)
	ln -sf liblockclient.so.$(LC_VERSION) $(B)/liblockclient.so.$(LC_MAJOR)
	ln -sf liblockclient.so.$(LC_VERSION) $@
$(B)/liblockclient.a: $(LIB_OBJ)
	$(AR) rcs $@ $^
# Regenerated on every run (PREFIX may differ from the last one), but only
# rewritten when its text changes.
$(B)/lockclient.pc: client/lockclient.pc.in lockclient-pc-check
	@mkdir -p $(@D)
	@sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(LC_VERSION)|g' $< > $@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; echo "generated $@ (prefix $(PREFIX))"; fi
.PHONY: lockclient-pc-check
lockclient-pc-check:

$(B)/cli/%.o: client/cli/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -Iclient/include -c $< -o $@
$(B)/lockctl: $(CLI_SRC:client/cli/%.c=$(B)/cli/%.o) $(B)/liblockclient.a $(B)/libcommon.a
	$(CC) $(CFLAGS) -o $@ $^ $(CLI_LIBS) -pthread $(LDFLAGS)
$(B)/examples/%: client/examples/%.c $(B)/liblockclient.a
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -Iclient/include -o $@ $< $(B)/liblockclient.a $(CLI_LIBS) -pthread
# uv_loop drives an lc_loop from libuv (the library itself does not use libuv).
$(B)/examples/uv_loop: client/examples/uv_loop.c $(B)/liblockclient.a
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -Iclient/include $(shell pkg-config --cflags libuv) -o $@ $< \
	  $(B)/liblockclient.a $(CLI_LIBS) $(shell pkg-config --libs libuv) -pthread

ifneq ($(LIB_SRC),)
CLIENT_TARGETS := $(B)/liblockclient.so $(B)/liblockclient.a $(B)/lockclient.pc $(B)/lockctl
endif
examples: $(EXAMPLES)

# ---- tests ------------------------------------------------------------------
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(B)/tests/%)
UNIT_LINK := $(filter-out $(B)/server/main.o,$(SERVER_OBJ)) $(B)/libcommon.a
$(B)/tests/test_%: tests/unit/test_%.c $(UNIT_LINK)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -Iserver -Itests $(PKG_CFLAGS) -o $@ $< $(UNIT_LINK) $(PKG_LIBS) -lm

# Fuzz targets (clang + libFuzzer), built in their own tree: make fuzz-targets B=build/fuzz ...
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(B)/fuzzers/%)
FUZZ_CFLAGS := -O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
FUZZ_SECONDS ?= 60
$(B)/fuzzers/fuzz_%: tests/fuzz/fuzz_%.c $(UNIT_LINK)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -Iserver $(PKG_CFLAGS) -fsanitize=fuzzer,address,undefined -o $@ $< $(UNIT_LINK) $(PKG_LIBS) -lm
# The client library's WebSocket parsers: lc_ws.c and common/ only, no server objects.
FUZZ_CLIENT_WS_SRC := client/lc_ws.c $(COMMON_SRC)
$(B)/fuzzers/fuzz_client_ws: tests/fuzz/fuzz_client_ws.c $(FUZZ_CLIENT_WS_SRC)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -Iclient -Iclient/include $(CLI_CFLAGS) -fsanitize=fuzzer,address,undefined -o $@ $< $(FUZZ_CLIENT_WS_SRC) $(CLI_LIBS) -pthread
fuzz-targets: $(FUZZ_BIN)
fuzz:
	$(MAKE) B=build/fuzz CC=clang WERROR=0 CFLAGS="$(FUZZ_CFLAGS)" fuzz-targets
	sh tests/fuzz/run.sh $(FUZZ_SECONDS)

# Benchmarks: lockbench (tests/bench/) against a private Redis and devlockd; docs/BENCHMARKS.md.
BENCH_SRC := $(wildcard tests/bench/*.c)
$(B)/lockbench: $(BENCH_SRC) $(wildcard tests/bench/*.h) $(B)/libcommon.a
	$(CC) $(ALL_CFLAGS) $(shell pkg-config --cflags openssl) -o $@ $(BENCH_SRC) $(B)/libcommon.a $(shell pkg-config --libs openssl)
bench: $(B)/devlockd $(B)/lockbench
	sh scripts/install-deps.sh bench
	B=$(B) sh scripts/bench.sh

# The library client of the library-client chaos checker (tests/chaos/holders.js).
# Linked with the whole archive: it refers to the 1.1 self-fencing accessors
# weakly (it also runs against a 1.0 keepalive), and a weak reference alone
# would not pull their object out of the archive.
ifneq ($(LIB_SRC),)
LC_HOLDER := $(B)/tests/lc_holder
endif
$(B)/tests/lc_holder: tests/chaos/lc_holder.c $(B)/liblockclient.a
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -Iclient/include -o $@ $< -Wl,--whole-archive $(B)/liblockclient.a -Wl,--no-whole-archive $(CLI_LIBS) -pthread

all: $(B)/devlockd $(CLIENT_TARGETS) $(UNIT_BIN) $(LC_HOLDER)

deps:
	@sh scripts/install-deps.sh test

run:
	@sh scripts/install-deps.sh run
	$(MAKE) $(B)/devlockd
	sh scripts/run-local.sh

test: deps
	$(MAKE) all
	sh scripts/run-tests.sh

test-unit: all
	sh scripts/run-tests.sh unit
test-integration: all
	sh scripts/run-tests.sh integration semantics ops
test-e2e: all
	sh scripts/run-tests.sh e2e

test-asan:
	$(MAKE) B=build/asan CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer" all
	DEVLOCK_BUILD=build/asan sh scripts/run-tests.sh unit integration semantics ops

# The unit and integration suites with devlockd and the unit tests under valgrind.
test-valgrind: all
	VALGRIND=1 sh scripts/run-tests.sh unit integration

# install / uninstall honour PREFIX and DESTDIR. LIBDIR is for packagers
# (debian/rules puts the library under /usr/lib/<multiarch triplet>; the
# installed lockclient.pc then names that directory). The man pages and the
# bash completion go where man(1) and bash-completion look under PREFIX; the
# completion only when client/cli/lockctl.bash exists.
LIBDIR  ?= $(PREFIX)/lib
MANDIR  ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
install: $(B)/devlockd $(CLIENT_TARGETS)
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/bin \
	  $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man8
	install -m 644 client/include/lockclient.h $(DESTDIR)$(PREFIX)/include/
	install -m 755 $(B)/liblockclient.so.$(LC_VERSION) $(DESTDIR)$(LIBDIR)/
	ln -sf liblockclient.so.$(LC_VERSION) $(DESTDIR)$(LIBDIR)/liblockclient.so.$(LC_MAJOR)
	ln -sf liblockclient.so.$(LC_VERSION) $(DESTDIR)$(LIBDIR)/liblockclient.so
	install -m 644 $(B)/liblockclient.a $(DESTDIR)$(LIBDIR)/
	if [ "$(LIBDIR)" = "$(PREFIX)/lib" ]; then install -m 644 $(B)/lockclient.pc $(DESTDIR)$(LIBDIR)/pkgconfig/; \
	else sed 's|^libdir=.*|libdir=$(LIBDIR)|' $(B)/lockclient.pc > $(DESTDIR)$(LIBDIR)/pkgconfig/lockclient.pc && \
	  chmod 644 $(DESTDIR)$(LIBDIR)/pkgconfig/lockclient.pc; fi
	install -m 755 $(B)/lockctl $(B)/devlockd $(DESTDIR)$(PREFIX)/bin/
	install -m 644 docs/lockctl.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 644 docs/devlockd.8 $(DESTDIR)$(MANDIR)/man8/
	if [ -f client/cli/lockctl.bash ]; then install -d $(DESTDIR)$(BASHCOMPDIR) && \
	  install -m 644 client/cli/lockctl.bash $(DESTDIR)$(BASHCOMPDIR)/lockctl; fi

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/include/lockclient.h $(DESTDIR)$(LIBDIR)/liblockclient.* \
	  $(DESTDIR)$(LIBDIR)/pkgconfig/lockclient.pc $(DESTDIR)$(PREFIX)/bin/lockctl $(DESTDIR)$(PREFIX)/bin/devlockd \
	  $(DESTDIR)$(MANDIR)/man1/lockctl.1 $(DESTDIR)$(MANDIR)/man8/devlockd.8 $(DESTDIR)$(BASHCOMPDIR)/lockctl

# Debian packages (debian/): devlockd, liblockclient1, liblockclient-dev,
# lockctl. Built by dpkg-buildpackage from a copy of the tree in $(B)/deb/
# (the source tree stays clean); the .debs, .changes and .buildinfo land in
# $(B)/deb/. No tests inside the package build: `make test` runs them (the
# `package` suite installs these .debs and smoke-tests them). The packaged
# version must be LC_VERSION: checked here so the two cannot drift apart.
# DEB_BUILD_OPTIONS: without noautodbgsym the -dbgsym packages are built too.
DEB_BUILD_OPTIONS ?= nocheck noautodbgsym parallel=2
DEB_DIR := $(B)/deb
DEB_SRC := $(DEB_DIR)/devlock-$(LC_VERSION)
deb:
	@v=$$(dpkg-parsechangelog -l debian/changelog -SVersion); case $$v in $(LC_VERSION)-*) ;; \
	  *) echo "debian/changelog is at $$v, the Makefile's LC_VERSION at $(LC_VERSION)"; exit 1;; esac
	rm -rf $(DEB_DIR)
	mkdir -p $(DEB_SRC)
	tar -cf - --exclude=./build --exclude='./build-*' --exclude=./$(B) --exclude=./.git --exclude=./var --exclude=./tests/node_modules . \
	  | tar -xf - -C $(DEB_SRC)
	cd $(DEB_SRC) && DEB_BUILD_OPTIONS="$(DEB_BUILD_OPTIONS)" dpkg-buildpackage -us -uc -b
	@ls $(DEB_DIR)/*.deb

clean:
	rm -rf build

# Long chaos run: 10 minutes of mutual exclusion under injected faults, then
# the generative edge checker until 200 000 operations (tests/chaos/edges.js,
# docs/reliability.md), then 5 minutes of liblockclient holders
# (tests/chaos/holders.js); SEED=n repeats a schedule, CHAOS_ARGS adds flags
# (e.g. --edges-only, --holders-only). The short form runs in `make test`.
chaos: $(B)/devlockd $(LC_HOLDER)
	DEVLOCK_BUILD=$(B) node tests/chaos/run.js --long $(if $(SEED),--seed $(SEED)) $(CHAOS_ARGS)

help:
	@echo "make run    - install deps, build, start a private redis-server and devlockd"
	@echo "make test   - install deps, build, run every test suite"
	@echo "make all | test-unit | test-integration | test-e2e | test-asan | install | examples | clean"

-include $(shell find $(B) -name '*.d' 2>/dev/null)
