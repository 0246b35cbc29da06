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

PKGS := yaml-0.1 libpcap libibverbs librdmacm libndpi openssl libmicrohttpd
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CRIT_CFLAGS = $(shell pkg-config --cflags criterion 2>/dev/null)
CRIT_LIBS = $(shell pkg-config --libs criterion 2>/dev/null)

CFLAGS ?= -O2 -g
CFLAGS += -std=gnu11 -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -D_GNU_SOURCE \
	-I. $(PKG_CFLAGS) $(SANFLAGS) -MMD -MP
LDFLAGS += $(SANFLAGS)
LDLIBS += $(PKG_LIBS) -lpthread -lm

# Debian packages the build, the tests and the demo need. One list, used by `make deps`.
DEB_PKGS := gcc make pkg-config clang libyaml-dev libpcap-dev libcriterion-dev libssl-dev \
	libibverbs-dev librdmacm-dev libndpi-dev iproute2 iputils-ping procps tcpdump \
	qemu-system-x86 busybox-static cpio kmod rdma-core ibverbs-utils rdmacm-utils perftest \
	sockperf haproxy gnuplot-nox libndpi-bin curl openssl dnsutils dnsmasq-base python3 libmicrohttpd-dev

LIB_SRC := $(filter-out orchestrator/main.c,$(wildcard lib/*.c transport/*.c services/*.c node/*.c orchestrator/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TOOL_SRC := $(wildcard tests/tools/*.c)
TOOL_BIN := $(TOOL_SRC:tests/tools/%.c=$(BUILD)/tools/%)

.PHONY: all deps test unit integration test-rdma bench bench-rdma demo fuzz clean format
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
	@$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(BUILD)/librdmesh.a
	@mkdir -p $(dir $@)
	@echo "  TEST    $@"
	@$(CC) $(CFLAGS) $(CRIT_CFLAGS) $< $(BUILD)/librdmesh.a -o $@ $(LDFLAGS) $(CRIT_LIBS) $(LDLIBS)

$(BUILD)/tools/%: tests/tools/%.c $(BUILD)/librdmesh.a
	@mkdir -p $(dir $@)
	@echo "  TOOL    $@"
	@$(CC) $(CFLAGS) $< $(BUILD)/librdmesh.a -o $@ $(LDFLAGS) $(LDLIBS)

# Unit tests, then the integration tests (network namespaces; needs root).
test: deps
	@$(MAKE) --no-print-directory $(BUILD)/rdmesh $(TEST_BIN) $(TOOL_BIN)
	@BUILD=$(BUILD) tests/run.sh

unit: deps
	@$(MAKE) --no-print-directory $(BUILD)/rdmesh $(TEST_BIN) $(TOOL_BIN)
	@BUILD=$(BUILD) tests/run.sh unit

integration: deps
	@$(MAKE) --no-print-directory $(BUILD)/rdmesh $(TEST_BIN) $(TOOL_BIN)
	@BUILD=$(BUILD) tests/run.sh integration

# The RDMA tests inside the Soft-RoCE guest (QEMU); `make test` runs them too.
test-rdma: deps
	@$(MAKE) --no-print-directory $(BUILD)/rdmesh $(TEST_BIN) $(TOOL_BIN)
	@BUILD=$(BUILD) tests/run.sh rdma

# The paths side by side on this host (native, overlay, sidecar): build/bench/results.
bench: deps
	@$(MAKE) --no-print-directory $(BUILD)/rdmesh $(TOOL_BIN)
	@$(BUILD)/rdmesh bench --out $(PWD)/$(BUILD)/bench/results

# Inside the Soft-RoCE guest: one hop over RDMA against ib_send_lat and TCP
# (hop-rdma.sh), then all four paths (rdmesh bench --rdma).
bench-rdma: deps
	@$(MAKE) --no-print-directory $(BUILD)/rdmesh $(TOOL_BIN)
	@mkdir -p $(BUILD)/bench
	@tests/softroce/guest.sh --timeout 600 --out $(PWD)/$(BUILD)/bench --env BUILD=$(BUILD) -- \
	  'bash tests/bench/hop-rdma.sh && $(BUILD)/rdmesh bench --rdma --guest --out $$RDM_OUT/results-guest'
	@echo "results: $(BUILD)/bench/bench/hop-rdma.{csv,md}, $(BUILD)/bench/results-guest/"

demo: deps
	@$(MAKE) --no-print-directory $(BUILD)/rdmesh $(TOOL_BIN)
	@BUILD=$(BUILD) tests/demo.sh

# libFuzzer with ASan and UBSan, FUZZ_SECONDS each: the frame decoder, the stage
# pipeline (identity, dpi, policy, flowlog) on frames and raw packets, and the control
# channel's message parser (parse, build again, parse again: the same message).
FUZZ_SECONDS ?= 60
FUZZ_CFLAGS = -std=gnu11 -g -O1 -D_GNU_SOURCE -I. $(PKG_CFLAGS) \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
fuzz: deps
	@mkdir -p build/fuzz/corpus build/fuzz/corpus-pipeline build/fuzz/corpus-control
	clang $(FUZZ_CFLAGS) tests/fuzz/fuzz_frame.c transport/frame.c lib/pkt.c -o build/fuzz/fuzz_frame
	clang $(FUZZ_CFLAGS) tests/fuzz/fuzz_control.c $(LIB_SRC) \
	  -o build/fuzz/fuzz_control $(PKG_LIBS) -lpthread -lm
	clang $(FUZZ_CFLAGS) tests/fuzz/fuzz_pipeline.c $(LIB_SRC) -o build/fuzz/fuzz_pipeline \
	  $(PKG_LIBS) -lpthread -lm
	build/fuzz/fuzz_frame -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	  build/fuzz/corpus tests/fuzz/seeds
	build/fuzz/fuzz_pipeline -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	  build/fuzz/corpus-pipeline tests/fuzz/seeds-pipeline
	build/fuzz/fuzz_control -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	  build/fuzz/corpus-control tests/fuzz/seeds-control

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
