# customdiff: one Makefile for everything. CPU-only by default; CUDA objects when nvcc is
# found (force with CUDA=1 or CUDA=0). BUILD names the output folder (helpers and asan use
# their own so parallel builds never share objects).
BUILD   ?= build
CC      ?= gcc
CXX     ?= g++
OPT     ?= -O2
CFLAGS  ?= $(OPT) -g -march=x86-64-v2 -fopenmp -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare -Wno-missing-field-initializers -Wno-format-truncation
CFLAGS  += -std=gnu11 -I. -MMD -MP -D_GNU_SOURCE
CXXFLAGS ?= $(OPT) -g -fopenmp -Wall
CXXFLAGS += -std=c++17 -I. -MMD -MP
LDLIBS  := -lcurl -llmdb -lturbojpeg -lpng -lwebp -lwebpdemux -lgif -lcjson -lutf8proc -lmicrohttpd \
           -l:libfaiss.a -llapacke -lopenblas -llapack -lstdc++ -lgomp -lpthread -lm
VERSION := 0.1.0
JOBS    ?= $(shell nproc 2>/dev/null || echo 2)
CFLAGS  += -DCD_VERSION=\"$(VERSION)\"

NVCC    ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
ifeq ($(origin CUDA), undefined)
  CUDA := $(if $(NVCC),1,0)
endif
CUDA_HOME ?= /usr/local/cuda
NVCCFLAGS ?= -O3 -std=c++17 -I. -lineinfo --expt-relaxed-constexpr \
             -gencode=arch=compute_90,code=sm_90 -gencode=arch=compute_90,code=compute_90
ifeq ($(CUDA),1)
  CFLAGS += -DCD_CUDA=1 -I$(CUDA_HOME)/include
  ifneq ($(wildcard $(CUDA_HOME)/include/cudnn.h),)
    CUDNN_LIB := -lcudnn
  else
    NVCCFLAGS += -DCD_NO_CUDNN
  endif
  LDLIBS += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 $(CUDNN_LIB) -lcublasLt -lcublas -lcudart
endif

# Library sources: core/, kernels/, model/ (layering rules in DESIGN.md).
LIB_C   := $(wildcard core/*.c kernels/*.c model/*.c)
LIB_CXX := $(wildcard core/*.cpp)
LIB_CU  := $(if $(filter 1,$(CUDA)),$(wildcard kernels/*.cu model/*.cu))
LIB_OBJ := $(LIB_C:%.c=$(BUILD)/obj/%.o) $(LIB_CXX:%.cpp=$(BUILD)/obj/%.o) $(LIB_CU:%.cu=$(BUILD)/obj/%.cu.o)
LIB     := $(BUILD)/libcustomdiff.a

# Each stage folder becomes build/bin/customdiff-<folder>.
STAGES  := index retrieve preprocess train sample compress merge export verify tiny-model
BINS    := $(foreach s,$(STAGES),$(if $(wildcard $(s)/*.c),$(BUILD)/bin/customdiff-$(s))) $(BUILD)/bin/customdiff
TESTS_C := $(wildcard tests/test_*.c)
TESTS   := $(TESTS_C:tests/%.c=$(BUILD)/tests/%)
TEST_SUPPORT := $(filter-out tests/test_%.c,$(wildcard tests/*.c))
TEST_SUPPORT_OBJ := $(TEST_SUPPORT:%.c=$(BUILD)/obj/%.o)
BENCH_C := $(wildcard bench/*.c)
BENCHES := $(BENCH_C:bench/%.c=$(BUILD)/bench/%)

# Keep test/bench objects (made through chained pattern rules, make would delete them as
# intermediates). Only these: a blanket .SECONDARY would let a missing library object
# (a new core/*.c) go unbuilt when the archive is newer than its source.
.SECONDARY: $(TESTS_C:%.c=$(BUILD)/obj/%.o) $(BENCH_C:%.c=$(BUILD)/obj/%.o)
.PHONY: all build deps test test-cuda demo asan fuzz bench clean print-target
TOOLS   := $(if $(wildcard tests/tools/httpd_main.c),$(BUILD)/tests/httpd)
# make / make all: install missing Debian packages first (make deps), then build in parallel.
all: deps
	@$(MAKE) --no-print-directory -j$(JOBS) build
build: $(BINS) $(TESTS) $(BENCHES) $(TOOLS) print-target

print-target:
	@if [ "$(CUDA)" = 1 ]; then echo "customdiff: built with CUDA (sm_90 + compute_90 PTX) from $(NVCC)"; else echo "customdiff: built CPU-only (CUDA=0)"; fi

deps:
	@./tools/deps.sh

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@
$(BUILD)/obj/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -c $< -o $@
$(BUILD)/obj/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	@rm -f $@
	ar rcs $@ $^

# One explicit link rule per stage folder (its objects + the library).
define stage_rule
$(BUILD)/bin/customdiff-$(1): $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard $(1)/*.c)) $(LIB)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(CFLAGS) $$^ -o $$@ $$(LDLIBS)
endef
$(foreach s,$(STAGES),$(eval $(call stage_rule,$(s))))
$(BUILD)/bin/customdiff: $(BUILD)/obj/cli/customdiff.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)
$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(TEST_SUPPORT_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)
$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

# loopback server (pre): the standalone test HTTP server used by the demo and bench_download
$(BUILD)/tests/httpd: $(BUILD)/obj/tests/tools/httpd_main.o $(BUILD)/obj/tests/httpd.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

# make test: everything that needs no GPU; ends with "N passed, N failed".
test: deps
	@$(MAKE) --no-print-directory -j$(JOBS) build
	@BUILD=$(BUILD) ./tests/run.sh

test-cuda: deps
	@$(MAKE) --no-print-directory -j$(JOBS) CUDA=1 build
	@BUILD=$(BUILD) CD_DEVICE=cuda ./tests/run.sh cuda

asan: deps
	@$(MAKE) --no-print-directory -j$(JOBS) BUILD=build-asan CUDA=0 OPT="-O1 -fsanitize=address,undefined -fno-omit-frame-pointer" build
	@BUILD=build-asan ASAN_OPTIONS=detect_leaks=0 ./tests/run.sh

fuzz: deps
	@BUILD=$(BUILD) ./tests/fuzz/run.sh

bench: all
	@./bench/run.sh

demo: deps
	@$(MAKE) --no-print-directory -j$(JOBS) build
	@BUILD=$(BUILD) ./tools/demo.sh

clean:
	rm -rf build build-*

# Reproducible runs: make run MANIFEST=manifests/NAME.mk (see manifests/run.mk).
ifdef MANIFEST
include $(MANIFEST)
include manifests/run.mk
endif

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
