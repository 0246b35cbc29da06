# rdmesh: one multi-call binary (build/rdmesh), Criterion unit tests, namespace
# integration tests. `make test` and `make demo` install missing Debian packages first.

SANITIZE ?=
comma := ,
CC ?= cc
ifeq ($(SANITIZE),)
BUILD := build
SANFLAGS :=
else
BUILD := build/san-$(subst $(comma),-,$(SANITIZE))
SANFLAGS := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
endif
# The sanitizers of `make unit-san` (and of make test's unit-san stage), and their build.
SAN := address,undefined
SAN_BUILD := build/san-$(subst $(comma),-,$(SAN))
# Builds started by `make test` and friends run JOBS compilers at once unless make was
# given its own -j.
JOBS ?= $(shell nproc)
PAR = $(if $(filter -j%,$(MAKEFLAGS)),,-j$(JOBS))

PKGS := yaml-0.1 libpcap libibverbs librdmacm libndpi openssl libmicrohttpd gnutls libcurl json-c
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CRIT_CFLAGS = $(shell pkg-config --cflags criterion 2>/dev/null)
CRIT_LIBS = $(shell pkg-config --libs criterion 2>/dev/null)

# build/rdmesh is linked with link-time optimisation: the per-packet path crosses files of
# every layer (frame, flow table, clock, the stages), and their small functions are then
# inlined across them (tests/bench/insns.sh: about 6 % fewer instructions per packet). The
# objects carry both forms (fat), so the tests and tools link them as plain objects.
# Not in sanitizer builds.
LTO := $(if $(SANITIZE),,-flto=auto -ffat-lto-objects)
CFLAGS ?= -O2 -g
CFLAGS += -std=gnu11 -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -D_GNU_SOURCE \
	-I. $(PKG_CFLAGS) $(SANFLAGS) $(LTO) -MMD -MP
LDFLAGS += $(SANFLAGS)
LDLIBS += $(PKG_LIBS) -lpthread -lm

# Debian packages the build, the tests and the demo need. One list, used by `make deps`.
DEB_PKGS := gcc make pkg-config clang libyaml-dev libpcap-dev libcriterion-dev libssl-dev \
	libibverbs-dev librdmacm-dev libndpi-dev iproute2 iputils-ping procps tcpdump \
	qemu-system-x86 busybox-static cpio kmod rdma-core ibverbs-utils rdmacm-utils perftest \
	sockperf haproxy gnuplot-nox clang-format libclang-rt-14-dev libndpi-bin curl openssl dnsutils dnsmasq-base python3 libmicrohttpd-dev \
	libgnutls28-dev libcurl4-openssl-dev libjson-c-dev etcd-server etcd-client podman runc mmdebstrap \
	containernetworking-plugins iptables python3-yaml python3-kubernetes valgrind tshark

LIB_SRC := $(filter-out orchestrator/main.c,$(wildcard lib/*.c transport/*.c services/*.c node/*.c orchestrator/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TOOL_SRC := $(wildcard tests/tools/*.c)
TOOL_BIN := $(TOOL_SRC:tests/tools/%.c=$(BUILD)/tools/%)

.PHONY: all deps test unit integration test-rdma image bench bench-insns bench-orch bench-rdma demo fuzz fuzz-build fuzz-smoke \
	check-format check-layers unit-san unit-build clean format
all: $(BUILD)/rdmesh

deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null || exit 1; \
	fi

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/librdmesh.a: $(LIB_OBJ)
	@rm -f $@
	@ar rcs $@ $^

$(BUILD)/rdmesh: $(BUILD)/obj/orchestrator/main.o $(BUILD)/librdmesh.a
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) $(if $(LTO),-flto=auto) $^ -o $@ $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(BUILD)/librdmesh.a
	@mkdir -p $(dir $@)
	@echo "  TEST    $@"
	@$(CC) $(CFLAGS) -fno-lto $(CRIT_CFLAGS) $< $(BUILD)/librdmesh.a -o $@ $(LDFLAGS) $(CRIT_LIBS) $(LDLIBS)

$(BUILD)/tools/%: tests/tools/%.c $(BUILD)/librdmesh.a
	@mkdir -p $(dir $@)
	@echo "  TOOL    $@"
	@$(CC) $(CFLAGS) -fno-lto $< $(BUILD)/librdmesh.a -o $@ $(LDFLAGS) $(LDLIBS)

# What CI runs (.ci/run): the format check, the layer check, the unit tests, the
# integration tests (network namespaces and the Soft-RoCE guest; needs root), the unit
# tests again under ASan and UBSan, and a few seconds of every fuzz target. tests/run.sh
# counts every check and ends with one "N passed, N failed" line for all of them.
# With SANITIZE=... everything runs under the sanitizers (then no separate unit-san stage).
test: deps
	@$(MAKE) $(PAR) -s --no-print-directory $(BUILD)/rdmesh $(TEST_BIN) $(TOOL_BIN)
	@BUILD=$(BUILD) SAN_BUILD=$(SAN_BUILD) SAN=$(SAN) FUZZ_SECONDS=$(FUZZ_SMOKE_SECONDS) \
	  tests/run.sh $(if $(SANITIZE),format layers unit integration fuzz,all)

unit: deps
	@$(MAKE) $(PAR) -s --no-print-directory $(BUILD)/rdmesh $(TEST_BIN) $(TOOL_BIN)
	@BUILD=$(BUILD) tests/run.sh unit

integration: deps
	@$(MAKE) $(PAR) -s --no-print-directory $(BUILD)/rdmesh $(TEST_BIN) $(TOOL_BIN)
	@BUILD=$(BUILD) tests/run.sh integration

# The RDMA tests inside the Soft-RoCE guest (QEMU); `make test` runs them too.
test-rdma: deps
	@$(MAKE) $(PAR) -s --no-print-directory $(BUILD)/rdmesh $(TEST_BIN) $(TOOL_BIN)
	@BUILD=$(BUILD) tests/run.sh rdma

# The OCI image (Debian packages only, no registry): localhost/rdmesh:TAG, cached by the
# binary's content (deploy/image/README.md).
image: deps
	@$(MAKE) $(PAR) -s --no-print-directory $(BUILD)/rdmesh
	@deploy/image/build.sh --rdmesh $(BUILD)/rdmesh

# The orchestrator against 1000 simulated nodes (tests/tools/orchsim): join, scale push,
# memory and CPU per node, leader failover on etcd: build/bench/orch.
bench-orch: deps
	@$(MAKE) $(PAR) -s --no-print-directory $(BUILD)/rdmesh $(TOOL_BIN)
	@RDMESH=$(PWD)/$(BUILD)/rdmesh tests/bench/orch.sh --out $(PWD)/$(BUILD)/bench/orch

# The paths side by side on this host (native, overlay, sidecar): build/bench/results.
bench: deps
	@$(MAKE) $(PAR) -s --no-print-directory $(BUILD)/rdmesh $(TOOL_BIN)
	@$(BUILD)/rdmesh bench --out $(PWD)/$(BUILD)/bench/results
	@RDMESH=$(PWD)/$(BUILD)/rdmesh tests/bench/insns.sh --out $(PWD)/$(BUILD)/bench/results/insns

# Instructions per packet of one hop by stage set (callgrind): build/bench/insns.
bench-insns: deps
	@$(MAKE) $(PAR) -s --no-print-directory $(BUILD)/rdmesh
	@RDMESH=$(PWD)/$(BUILD)/rdmesh tests/bench/insns.sh --out $(PWD)/$(BUILD)/bench/insns

# Inside the Soft-RoCE guest: one hop over RDMA against ib_send_lat and TCP
# (hop-rdma.sh), then all four paths (rdmesh bench --rdma).
bench-rdma: deps
	@$(MAKE) $(PAR) -s --no-print-directory $(BUILD)/rdmesh $(TOOL_BIN)
	@mkdir -p $(BUILD)/bench
	@tests/softroce/guest.sh --timeout 1200 --out $(PWD)/$(BUILD)/bench --env BUILD=$(BUILD) -- \
	  'bash tests/bench/hop-rdma.sh && $(BUILD)/rdmesh bench --rdma --guest --out $$RDM_OUT/results-guest'
	@echo "results: $(BUILD)/bench/bench/hop-rdma.{csv,md}, $(BUILD)/bench/results-guest/"

demo: deps
	@$(MAKE) $(PAR) -s --no-print-directory $(BUILD)/rdmesh $(TOOL_BIN)
	@BUILD=$(BUILD) tests/demo.sh

# libFuzzer with ASan and UBSan. Every tests/fuzz/fuzz_NAME.c is a target, build/fuzz/fuzz_NAME,
# its seeds in tests/fuzz/seeds-NAME/ and its working corpus in build/fuzz/corpus-NAME/. The
# project's sources are compiled once with the fuzz flags (build/fuzz/obj) into one archive
# each target links against. `make fuzz` runs every target FUZZ_SECONDS; `make fuzz-smoke`
# (part of `make test`) FUZZ_SMOKE_SECONDS.
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 5
FUZZ_BASE_CFLAGS = -std=gnu11 -g -O1 -D_GNU_SOURCE -I. $(PKG_CFLAGS) -fno-sanitize-recover=all
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_NAMES := $(FUZZ_SRC:tests/fuzz/fuzz_%.c=%)
FUZZ_BIN := $(FUZZ_NAMES:%=build/fuzz/fuzz_%)
FUZZ_OBJ := $(LIB_SRC:%.c=build/fuzz/obj/%.o)

build/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  FUZZCC  $<"
	@clang $(FUZZ_BASE_CFLAGS) -fsanitize=fuzzer-no-link,address,undefined -MMD -MP -c $< -o $@

build/fuzz/librdmesh-fuzz.a: $(FUZZ_OBJ)
	@rm -f $@
	@ar rcs $@ $^

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c build/fuzz/librdmesh-fuzz.a
	@echo "  FUZZ    $@"
	@clang $(FUZZ_BASE_CFLAGS) -fsanitize=fuzzer,address,undefined -MMD -MP $< \
	  build/fuzz/librdmesh-fuzz.a -o $@ $(PKG_LIBS) -lpthread -lm

fuzz-build: deps
	@$(MAKE) $(PAR) -s --no-print-directory $(FUZZ_BIN)

# tests/run.sh fuzz: builds the targets, runs each FUZZ_SECONDS, one check per target.
fuzz: deps
	@FUZZ_SECONDS=$(FUZZ_SECONDS) tests/run.sh fuzz

fuzz-smoke: deps
	@FUZZ_SECONDS=$(FUZZ_SMOKE_SECONDS) tests/run.sh fuzz

# clang-format --dry-run over every tracked C file (one clang-format for all of them):
# names the files that differ.
check-format:
	@files=$$(git ls-files '*.c' '*.h'); \
	out=$$(clang-format --dry-run -Werror $$files 2>&1) && exit_ok=1 || exit_ok=0; \
	if [ $$exit_ok = 0 ] || [ -n "$$out" ]; then \
	  echo "check-format: not clang-formatted (make format fixes them):"; \
	  echo "$$out" | sed -n 's/^\([^: ]*\):[0-9]*:[0-9]*: error:.*/  \1/p' | sort -u; exit 1; \
	fi; echo "check-format: $$(echo $$files | wc -w) files clean"

# Includes point only down the layers (lib < transport < services < node < orchestrator).
check-layers:
	@tests/lint/check-layers.sh

# The unit tests built with ASan and UBSan (build/san-address-undefined) and run.
unit-san: deps
	@SAN_BUILD=$(SAN_BUILD) SAN=$(SAN) tests/run.sh san

# The unit test binaries of this BUILD (tests/run.sh san builds them with SANITIZE=...).
unit-build:
	@$(MAKE) $(PAR) -s --no-print-directory $(TEST_BIN)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
