# coretuned — one Makefile, a few knobs:
#   make            build bin/coretuned and bin/coretune (release, -O2)
#   make run        install missing Debian packages, build, start the daemon on 127.0.0.1:8080, state in ./var
#   make test       install, build, run every test (unit + end-to-end), then the same under ASan/UBSan
#   make asan       unit + end-to-end tests built with -fsanitize=address,undefined
#   make bench      trainer throughput against PyTorch (long; not part of test)
#   make install    coretuned (sbindir), coretune (bindir), the dashboard ($(datadir)/coretuned/web), the
#                   systemd unit (its paths rewritten to these), the config (never overwritten), man pages
#                   and docs; GNU variables: DESTDIR, PREFIX (/usr/local), exec_prefix, bindir, sbindir,
#                   sysconfdir (/etc), datadir, mandir, docdir, UNITDIR (from pkg-config systemd)
#   make uninstall  removes exactly what install wrote (the config only while it is the untouched example)
#   V=1             show the commands
#   CUDA=1 / CUDA=0 the GPU backend on / off (default: on when /usr/local/cuda/bin/nvcc exists)
# Sources are found by wildcard: a new .c file in a module folder is built without touching this file.

O       ?= build/rel
BIN     ?= bin
SAN     ?=
CC      ?= cc
PYTHON  ?= /usr/bin/python3
DESTDIR ?=
# GNU installation directories; each can be set on the command line (make install bindir=/opt/ct/bin)
PREFIX      ?= /usr/local
prefix      ?= $(PREFIX)
exec_prefix ?= $(prefix)
bindir      ?= $(exec_prefix)/bin
sbindir     ?= $(exec_prefix)/sbin
# /etc whatever the prefix: the daemon's built-in config path and the unit's ConfigurationDirectory= are there
sysconfdir  ?= /etc
datarootdir ?= $(prefix)/share
datadir     ?= $(datarootdir)
mandir      ?= $(datarootdir)/man
docdir      ?= $(datarootdir)/doc/coretuned
UNITDIR     ?= $(or $(shell pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null),/lib/systemd/system)
VERSION     := $(shell sed -n 's/^\#define CORETUNED_VERSION "\(.*\)"/\1/p' common/version.h)

PKGS    := libmicrohttpd jansson sqlite3 libuv openblas libpng libjpeg zlib libcurl nettle libarchive
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
TEST_CFLAGS := $(shell pkg-config --cflags cmocka 2>/dev/null)
TEST_LIBS   := $(shell pkg-config --libs cmocka 2>/dev/null)

OPT     := -O2
ifneq ($(SAN),)
OPT     := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
endif
CFLAGS  ?=
CFLAGS  += -std=gnu11 -g $(OPT) -march=x86-64-v2 -Wall -Wextra -fopenmp -MMD -MP -I. $(PKG_CFLAGS)
LDFLAGS += $(OPT) -fopenmp
LDLIBS  += $(PKG_LIBS) -ldnnl -lm -lpthread

# CUDA=1: the GPU backend, linked with cuDNN and cudart from CUDA_HOME (found at run time through the rpath;
# not cuBLAS, see trainer/gpu/gpu_layers.cu). cudart loads the driver lazily, so the binaries start, and
# see no devices, where there is none.
# Default: on when nvcc is there, except in sanitizer builds (ASan/TSan and CUDA's runtime do not mix).
CUDA_HOME ?= /usr/local/cuda
NVCC      ?= $(CUDA_HOME)/bin/nvcc
ifeq ($(origin CUDA),undefined)
CUDA := $(if $(SAN)$(TSAN),0,$(if $(wildcard $(NVCC)),1,0))
endif
# SASS for Ampere (sm_80) and Hopper (sm_90), PTX of sm_90 for anything newer (the driver JITs it)
CUDA_ARCH ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
             -gencode arch=compute_90,code=compute_90
NVCCFLAGS ?= -std=c++17 -O2 -g -Xcompiler -Wall,-Wextra -MMD -MP -I. $(CUDA_ARCH)
ifeq ($(CUDA),1)
LDLIBS  += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudnn -lcudart -lstdc++
endif

ifeq ($(V),1)
Q :=
else
Q := @
endif

# trainer/gpu/: the CUDA backend (gpu_*.cu) or its stand-in (gpu_none.c: no devices); the fuzz build
# always takes the stand-in
TRAINER_SRC := $(wildcard common/*.c trainer/*.c trainer/gpu/*.c)
GPU_CU_SRC  := $(wildcard trainer/gpu/*.cu)
SPEC_SRC    := $(wildcard spec/*.c)
SERVICE_SRC := $(wildcard storage/*.c core/*.c api/*.c) $(filter-out daemon/main.c,$(wildcard daemon/*.c))
CLI_SRC     := $(wildcard cli/*.c)
TEST_SRC    := $(wildcard tests/unit/test_*.c)
BENCH_SRC   := $(wildcard bench/*.c)

ifeq ($(CUDA),1)
TRAINER_OBJ := $(filter-out %/gpu_none.o,$(TRAINER_SRC:%.c=$(O)/%.o)) $(GPU_CU_SRC:%.cu=$(O)/%.o)
else
TRAINER_OBJ := $(TRAINER_SRC:%.c=$(O)/%.o)
endif
SPEC_OBJ    := $(SPEC_SRC:%.c=$(O)/%.o)
SERVICE_OBJ := $(SERVICE_SRC:%.c=$(O)/%.o) $(O)/gen/api/openapi_doc.o
CLI_OBJ     := $(CLI_SRC:%.c=$(O)/%.o)
TEST_BINS   := $(TEST_SRC:tests/unit/%.c=$(BIN)/tests/%)
BENCH_BINS  := $(BENCH_SRC:bench/%.c=$(BIN)/bench/%)

LIBTRAINER  := $(O)/libtrainer.a
LIBSPEC     := $(O)/libspec.a
LIBSERVICE  := $(O)/libservice.a

.PHONY: all deps run test unit e2e asan bench clean golden reproduce reproduce-quick reproduce-sweeps install \
	uninstall
all: $(BIN)/coretuned $(BIN)/coretune $(TEST_BINS)

deps:
	@scripts/deps.sh

$(O)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) $(if $(filter tests/%,$<),$(TEST_CFLAGS)) -c $< -o $@

# docs/openapi.yaml is compiled into the daemon (api/openapi_doc.h): served from wherever it runs
%/gen/api/openapi_doc.c: docs/openapi.yaml scripts/embed.sh
	@mkdir -p $(dir $@)
	$(Q)scripts/embed.sh $< api_openapi_yaml > $@.tmp && mv $@.tmp $@

.SECONDARY: $(O)/gen/api/openapi_doc.c
$(O)/gen/%.o: $(O)/gen/%.c
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) -c $< -o $@


$(O)/%.o: %.cu
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  NVCC    $<")
	$(Q)$(NVCC) $(NVCCFLAGS) -c $< -o $@

# the setting in a file rewritten only when it changes, so CUDA=0 after CUDA=1 (or back) rebuilds the library
CUDA_STAMP := $(O)/cuda.stamp
$(shell mkdir -p $(O) && [ "$$(cat $(CUDA_STAMP) 2>/dev/null)" = "$(CUDA)" ] || echo $(CUDA) > $(CUDA_STAMP))

$(LIBTRAINER): $(TRAINER_OBJ) $(CUDA_STAMP)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $(filter %.o,$^)

$(LIBSPEC): $(SPEC_OBJ)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

$(LIBSERVICE): $(SERVICE_OBJ)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

$(BIN)/coretuned: $(O)/daemon/main.o $(LIBSERVICE) $(LIBSPEC) $(LIBTRAINER)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# the client links the job spec and the trainer (coretune train), never the service
$(BIN)/coretune: $(CLI_OBJ) $(LIBSPEC) $(LIBTRAINER)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BIN)/tests/%: $(O)/tests/unit/%.o $(LIBSERVICE) $(LIBSPEC) $(LIBTRAINER)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(TEST_LIBS)

$(BIN)/bench/%: $(O)/bench/%.o $(LIBTRAINER)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# the yardstick of bench-api links libmicrohttpd only
$(BIN)/bench/api_peer: $(O)/bench/api_peer.o
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(shell pkg-config --libs libmicrohttpd) -lpthread

# the long-history loader writes through the storage layer, so it links the service
$(BIN)/bench/history_load: $(O)/bench/history_load.o $(LIBSERVICE) $(LIBSPEC) $(LIBTRAINER)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

run: deps
	@$(MAKE) --no-print-directory all
	@mkdir -p var
	exec $(BIN)/coretuned --listen 127.0.0.1:8080 --data-dir var

# Every test: unit binaries (each in its own process) and end-to-end tests against the real daemon,
# first in the release build, then under AddressSanitizer + UBSan.
test: deps
	@$(MAKE) --no-print-directory all
	@tests/run.sh $(BIN)
	@$(MAKE) --no-print-directory fuzz-quick
	@$(MAKE) --no-print-directory soak-quick
	@$(MAKE) --no-print-directory asan

asan:
	@$(MAKE) --no-print-directory O=build/asan BIN=build/asan/bin SAN=1 all
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		CT_SANITIZED=1 tests/run.sh build/asan/bin

unit: all
	@tests/run.sh $(BIN) unit

e2e: all
	@tests/run.sh $(BIN) e2e

# Regenerate the committed PyTorch fixtures (needs Debian python3-torch; the tests themselves do not).
golden:
	@CT_WITH_TORCH=1 scripts/deps.sh
	for g in gen_model gen_coreloss gen_simclr gen_train; do $(PYTHON) tests/golden/$$g.py tests/fixtures || exit 1; done

bench:
	@CT_WITH_TORCH=1 scripts/deps.sh
	@$(MAKE) --no-print-directory all $(BENCH_BINS)
	@bench/run.sh $(BIN)

# The paper's claim on real data, through the daemon's API, beside the same protocol in PyTorch.
reproduce:
	@CT_WITH_TORCH=1 scripts/deps.sh
	@$(MAKE) --no-print-directory all
	$(PYTHON) reproduce/run.py && $(PYTHON) reproduce/torch_protocol.py && \
		$(PYTHON) reproduce/torch_protocol.py --our-backbone && $(PYTHON) reproduce/ablate.py && \
		$(PYTHON) reproduce/report.py

# The claim again with sweeps: a longer pre-training, hyper-parameters chosen on validation data.
reproduce-sweeps:
	@CT_WITH_TORCH=1 scripts/deps.sh
	@$(MAKE) --no-print-directory all
	$(PYTHON) reproduce/sweeps.py && $(PYTHON) reproduce/torch_protocol.py --sweeps && \
		$(PYTHON) reproduce/sweeps_report.py

reproduce-quick:
	@CT_WITH_TORCH=1 scripts/deps.sh
	@$(MAKE) --no-print-directory all
	$(PYTHON) reproduce/run.py --quick && $(PYTHON) reproduce/torch_protocol.py --quick && \
		$(PYTHON) reproduce/report.py --quick

# ---- install / uninstall ----
# The unit's ExecStart, --config, --web-root and Documentation= are rewritten to the directories above
# (the grep fails the install if systemd/coretuned.service stops matching the sed). The config is installed
# only where none exists, and uninstall removes it only while it is still byte-identical to the example,
# so an admin's edits survive both. Man pages get the version from common/version.h.
INST_WEB   := $(notdir $(wildcard web/*))
INST_DOCS  := README.md docs/operations.md docs/api.md docs/cli.md docs/dashboard.md
INST_MAN   := man1/coretune.1 man5/coretuned.conf.5 man8/coretuned.8
INST_CONF  := $(DESTDIR)$(sysconfdir)/coretuned/coretuned.conf
INST_UNIT  := $(DESTDIR)$(UNITDIR)/coretuned.service
WEB_DIR    := $(datadir)/coretuned/web

install: $(BIN)/coretuned $(BIN)/coretune
	install -d $(DESTDIR)$(bindir) $(DESTDIR)$(sbindir) $(DESTDIR)$(WEB_DIR) $(DESTDIR)$(docdir) \
		$(DESTDIR)$(sysconfdir)/coretuned $(DESTDIR)$(UNITDIR) $(addprefix $(DESTDIR)$(mandir)/,man1 man5 man8)
	install -m 0755 $(BIN)/coretuned $(DESTDIR)$(sbindir)/coretuned
	install -m 0755 $(BIN)/coretune $(DESTDIR)$(bindir)/coretune
	install -m 0644 $(addprefix web/,$(INST_WEB)) $(DESTDIR)$(WEB_DIR)/
	install -m 0644 $(INST_DOCS) $(DESTDIR)$(docdir)/
	for m in $(INST_MAN); do \
		sed -e '1,3s/"coretuned [0-9][0-9.]*"/"coretuned $(VERSION)"/' docs/man/$${m#*/} \
			> $(DESTDIR)$(mandir)/$$m && chmod 0644 $(DESTDIR)$(mandir)/$$m || exit 1; done
	sed -e 's|^ExecStart=/usr/local/sbin/coretuned |ExecStart=$(sbindir)/coretuned |' \
		-e 's| --config /etc/coretuned/coretuned.conf | --config $(sysconfdir)/coretuned/coretuned.conf |' \
		-e 's| --web-root /usr/local/share/coretuned/web| --web-root $(WEB_DIR)|' \
		-e 's|^Documentation=file:/usr/local/share/doc/coretuned/|Documentation=file:$(docdir)/|' \
		systemd/coretuned.service > $(INST_UNIT)
	chmod 0644 $(INST_UNIT)
	grep -q '^ExecStart=$(sbindir)/coretuned --config $(sysconfdir)/coretuned/coretuned.conf .* --web-root $(WEB_DIR)' \
		$(INST_UNIT) || { echo "install: cannot rewrite the paths in systemd/coretuned.service" >&2; exit 1; }
	CORETUNED_CONFIG= $(BIN)/coretuned --example-config > $(DESTDIR)$(docdir)/coretuned.conf.example
	[ -e $(INST_CONF) ] || install -m 0644 $(DESTDIR)$(docdir)/coretuned.conf.example $(INST_CONF)

uninstall:
	[ ! -e $(INST_CONF) ] || ! cmp -s $(INST_CONF) $(DESTDIR)$(docdir)/coretuned.conf.example || rm -f $(INST_CONF)
	rm -f $(DESTDIR)$(sbindir)/coretuned $(DESTDIR)$(bindir)/coretune $(INST_UNIT) \
		$(addprefix $(DESTDIR)$(WEB_DIR)/,$(INST_WEB)) $(addprefix $(DESTDIR)$(docdir)/,$(notdir $(INST_DOCS))) \
		$(DESTDIR)$(docdir)/coretuned.conf.example $(addprefix $(DESTDIR)$(mandir)/,$(INST_MAN))
	-rmdir $(DESTDIR)$(WEB_DIR) $(DESTDIR)$(datadir)/coretuned $(DESTDIR)$(docdir) \
		$(DESTDIR)$(sysconfdir)/coretuned 2>/dev/null

clean:
	rm -rf build bin

-include $(shell find build -name '*.d' 2>/dev/null)

# ---- fuzzing (libFuzzer, Debian clang): tests/fuzz/fuzz_*.c, seeds in tests/fuzz/corpus/, every crash
# found kept in tests/fuzz/regressions/. Its own object dir: every source rebuilt once with clang,
# -fsanitize=fuzzer-no-link,address,undefined (coverage for the fuzzer), the targets linked with fuzzer.
#   make fuzz          each target FUZZ_SECONDS (60) seconds; new inputs go to build/fuzz/corpus
#   make fuzz-quick    the part of make test: every seed and regression, then FUZZ_QUICK_SECONDS (5) each
.PHONY: fuzz fuzz-quick fuzz-build
FUZZ_O       := build/fuzz
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_QUICK_SECONDS ?= 5
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_CFLAGS  := -std=gnu11 -g -O1 -fno-omit-frame-pointer -march=x86-64-v2 -Wall -Wextra -Wno-pass-failed -fopenmp -MMD -MP \
                -I. $(PKG_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer-no-link
FUZZ_SRC     := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS    := $(FUZZ_SRC:tests/fuzz/%.c=$(FUZZ_O)/bin/%)
FUZZ_HELP    := $(filter-out tests/fuzz/fuzz_%,$(wildcard tests/fuzz/*.c))
FUZZ_LIBS    := $(FUZZ_O)/libfuzzhelp.a $(FUZZ_O)/libservice.a $(FUZZ_O)/libspec.a $(FUZZ_O)/libtrainer.a

$(FUZZ_O)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CLANG   $<")
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

$(FUZZ_O)/libtrainer.a: $(TRAINER_SRC:%.c=$(FUZZ_O)/%.o)
$(FUZZ_O)/libspec.a: $(SPEC_SRC:%.c=$(FUZZ_O)/%.o)
$(FUZZ_O)/libservice.a: $(SERVICE_SRC:%.c=$(FUZZ_O)/%.o) $(FUZZ_O)/gen/api/openapi_doc.o
$(FUZZ_O)/gen/%.o: $(FUZZ_O)/gen/%.c
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@
$(FUZZ_O)/libfuzzhelp.a: $(FUZZ_HELP:%.c=$(FUZZ_O)/%.o)
$(FUZZ_LIBS):
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

$(FUZZ_O)/bin/%: $(FUZZ_O)/tests/fuzz/%.o $(FUZZ_LIBS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -fopenmp -o $@ $^ $(PKG_LIBS) -ldnnl -lm -lpthread

.SECONDARY: $(FUZZ_SRC:%.c=$(FUZZ_O)/%.o) $(FUZZ_O)/gen/api/openapi_doc.c
fuzz-build: $(FUZZ_BINS)

fuzz: deps
	@$(MAKE) --no-print-directory fuzz-build
	@tests/fuzz/run.sh $(FUZZ_O)/bin $(FUZZ_SECONDS)

fuzz-quick:
	@$(MAKE) --no-print-directory fuzz-build
	@tests/fuzz/run.sh $(FUZZ_O)/bin $(FUZZ_QUICK_SECONDS)

# The reliability battery (tests/soak, see docs/development.md): kill -9 the daemon at random moments while
# a client works, then check what the client was told against what the database holds. soak: 1000 kills
# (SOAK_KILLS=N), tens of minutes; soak-quick: 50 kills, about a minute, in `make test`.
SOAK_KILLS ?= 1000
.PHONY: soak soak-quick
soak: all
	@$(PYTHON) tests/soak/test_check.py
	@$(PYTHON) tests/soak/soak.py --bin $(BIN) --kills $(SOAK_KILLS)

soak-quick: all
	@$(PYTHON) tests/soak/test_check.py
	@$(PYTHON) tests/soak/soak.py --bin $(BIN) --kills 50 --quick --drain-seconds 30

# Slow clients against the connection policy: trickling headers and unread event streams from 127.0.0.1
# while legitimate requests are timed (p50/p99, failures, daemon RSS, CPU model). Not part of test.
.PHONY: bench-http
bench-http: all
	@$(PYTHON) bench/slowclient.py --bin $(BIN)

# 1,000 event streams on one running job: the daemon's extra RSS and the event -> client spread (p50/p99).
# A job with 1,000,000 metric points and 100,000 events: metrics?max_points=500 and an events page by
# cursor, medians, with the query plans. Neither is part of test.
.PHONY: bench-sse bench-history
bench-sse: all
	@$(PYTHON) bench/sse_fanout.py --bin $(BIN)

bench-history: all $(BIN)/bench/history_load
	@$(PYTHON) bench/history.py --bin $(BIN)

# The request path under load (wrk, 32 connections): /healthz, /readyz, GET job, GET list?limit=20 on a
# daemon holding 1,000 jobs (500 queued, --workers 0), beside a do-nothing libmicrohttpd server
# (bench/api_peer.c); req/s, p50/p99 and the ratio to that server, medians of interleaved rounds.
.PHONY: bench-api
bench-api: all $(BIN)/bench/api_peer
	@$(PYTHON) bench/api.py --bin $(BIN)

# ---- ThreadSanitizer ----
#   make tsan   daemon, client and unit tests built with -fsanitize=thread in build/tsan, then every unit
#               and end-to-end test against them (~5 min on 2 cores: not part of make test)
#   TSAN=1      the knob behind it (SAN=1 stays ASan+UBSan: the two runtimes cannot share a binary)
# OMP_NUM_THREADS=1: Debian's libgomp is not instrumented, so TSan cannot see its barriers and reports
# every OpenMP loop (thousands of false races, and minutes of reporting); one OpenMP thread per calling
# thread keeps every kernel on its job's own worker thread, where races between jobs, the loop and the
# prefetch thread are still seen. e2e jobs set threads=1 themselves. Exit status 66 on any report makes
# the daemon's clean-exit check, the cmocka runner and coretune's exit codes fail; the report is in the
# daemon's log that the failing test prints. tests/tsan.supp lists the proven false positives.
# test_install runs `make install` with the O= and TSAN=1/SAN=1 of the BIN it tests, so
# it finds these binaries up to date and relinks nothing.
TSAN ?=
ifneq ($(TSAN),)
OPT     := -O1 -fno-omit-frame-pointer -fsanitize=thread
endif
.PHONY: tsan
tsan:
	@$(MAKE) --no-print-directory O=build/tsan BIN=build/tsan/bin TSAN=1 all
	@OMP_NUM_THREADS=1 TSAN_OPTIONS="exitcode=66 second_deadlock_stack=1 suppressions=$(CURDIR)/tests/tsan.supp" \
		CT_SANITIZED=1 tests/run.sh build/tsan/bin
