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

# The link line without CUDA's libraries (the host emulation build, below, links with it).
LDLIBS_HOST := $(LDLIBS)

NVCC    ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
ifeq ($(origin CUDA), undefined)
  CUDA := $(if $(NVCC),1,0)
endif
CUDA_HOME ?= /usr/local/cuda
NVCCFLAGS ?= -O3 -std=c++17 -I. -lineinfo --expt-relaxed-constexpr \
             -gencode=arch=compute_90,code=sm_90 -gencode=arch=compute_80,code=compute_80
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

# Host emulation of the CUDA ops (kernels/emu/, see kernels/emu/emu.h): the GPU-side model
# code (model/*_cuda.c), its tests (tests/test_*_cuda.c but the kernel twins' test) and the
# stages that run it (verify, train, sample) built a second time with CD_CUDA and
# CD_CUDA_EMU into $(BUILD)/emu, linked against the host library plus kernels/emu/*.c: no
# CUDA header, library or GPU. `make test` runs $(BUILD)/emu/tests/test_* (tests/run.sh).
# So: GPU-side C code lives in model/*_cuda.c and includes no CUDA header (only
# kernels/kernels_cuda.h); other library files must not depend on CD_CUDA; a new cd_cuda_*
# symbol gets its emulation in kernels/emu/ (tests/test_emu.sh checks every one has one).
EMU       := $(BUILD)/emu
EMU_CFLAGS = $(filter-out -I$(CUDA_HOME)/include,$(CFLAGS)) -DCD_CUDA=1 -DCD_CUDA_EMU=1
EMU_STAGES := verify train sample
# test_kernels_cuda (twins vs CPU) is left out: on the emulation it compares the CPU with itself
# and takes ~6 min at its real shapes; `make $(EMU)/tests/test_kernels_cuda` builds it to smoke-test
# the test's own code (24 passed here on 2026-11-27) before GPU time is spent on it.
EMU_TESTS_C := $(filter-out tests/test_kernels_cuda.c,$(wildcard tests/test_*_cuda.c))
EMU_TESTS := $(EMU_TESTS_C:tests/%.c=$(EMU)/tests/%)
EMU_LIB   := $(EMU)/libcustomdiff-emu.a
EMU_LIB_OBJ := $(filter-out $(BUILD)/obj/model/%_cuda.o $(BUILD)/obj/%.cu.o,$(LIB_OBJ)) \
               $(patsubst %.c,$(EMU)/obj/%.o,$(wildcard model/*_cuda.c kernels/emu/*.c))
EMU_BINS  := $(foreach s,$(EMU_STAGES),$(if $(wildcard $(s)/*.c),$(EMU)/bin/customdiff-$(s)))

# CPU simulation of the real CUDA source (tests/cudasim/, see tests/test_cudasim.sh): every
# kernels/*.cu rewritten by tests/cudasim/rewrite.py (launches and __shared__ only) and compiled
# by g++ with the simulator (cusim.h: CUDA threads as fibers, WMMA, shuffles, atomics), mocks
# of the CUDA runtime, cuBLAS and cuDNN written from NVIDIA's documented semantics
# (tests/cudasim/cudart.cpp, cublas.cpp, cudnn.cpp: they check every call's arguments and
# address ranges), and the GPU-side model code built with CD_CUDA (not the emulation). Into
# $(BUILD)/sim: customdiff-{verify,train,sample} and tests/test_*_cuda. Needs CUDA's headers
# only (no GPU, no CUDA library); left out when they are missing.
SIM       := $(BUILD)/sim
SIM_OK    := $(if $(wildcard $(CUDA_HOME)/include/cuda_bf16.h $(CUDA_HOME)/include/cudnn.h),1)
SIM_CFLAGS = $(filter-out -I$(CUDA_HOME)/include,$(CFLAGS)) -DCD_CUDA=1 -DCD_CUDA_SIM=1
SIM_CXXFLAGS = -std=c++17 -O2 -g -pthread -MMD -MP -I tests/cudasim -I . -I $(CUDA_HOME)/include \
               -Wall -Wno-unknown-pragmas -Wno-unused-function -Wno-class-memaccess -ffp-contract=fast \
               $(if $(shell grep -qw fma /proc/cpuinfo 2>/dev/null && echo y),-mfma) $(SIM_SAN)
# make asan: the simulation is built with the same sanitizers (cusim.cpp then annotates fiber
# switches), but UBSan's null check: it reports every thread_local read on a fiber stack as a
# load through a null pointer while the load itself works (a real one would fault)
SIM_SAN   := $(filter -fsanitize=% -fno-omit-frame-pointer,$(OPT)) $(if $(findstring undefined,$(OPT)),-fno-sanitize=null)
SIM_MOCKS := $(wildcard tests/cudasim/cusim.cpp tests/cudasim/cudart.cpp tests/cudasim/cublas.cpp tests/cudasim/cudnn.cpp)
SIM_LIB   := $(SIM)/libcustomdiff-sim.a
SIM_LIB_OBJ := $(filter-out $(BUILD)/obj/model/%_cuda.o $(BUILD)/obj/%.cu.o,$(LIB_OBJ)) \
               $(patsubst %.c,$(SIM)/obj/%.o,$(wildcard model/*_cuda.c)) \
               $(patsubst %.cu,$(SIM)/obj/%.cu.o,$(wildcard kernels/*.cu)) \
               $(patsubst %.cpp,$(SIM)/obj/%.o,$(SIM_MOCKS))
SIM_TESTS_C := $(wildcard tests/test_*_cuda.c)
SIM_TESTS := $(if $(SIM_OK),$(SIM_TESTS_C:tests/%.c=$(SIM)/tests/%))
SIM_BINS  := $(if $(SIM_OK),$(foreach s,$(EMU_STAGES),$(SIM)/bin/customdiff-$(s)))
# the simulator's own test programs (tests/test_cudasim.sh runs them): the mocks against
# hand-worked cases (test_cublas, test_cudnn, test_graph); kernels against their CPU references
# through the whole simulated library: test (the 16-bit flash attention), test_norm
SIM_PROGS := $(if $(SIM_OK),$(patsubst tests/cudasim/%.cpp,$(SIM)/cudasim/%,$(wildcard tests/cudasim/test*.cpp)))
SIM_RT    := $(patsubst %.cpp,$(SIM)/obj/%.o,$(wildcard tests/cudasim/cusim.cpp tests/cudasim/cudart.cpp))
# the GPU benchmarks through the simulation: a smoke run (--tiny) before a GPU's minutes are spent
SIM_BENCH_C := $(wildcard bench/bench_*_cuda.c)
SIM_BENCHES := $(if $(SIM_OK),$(SIM_BENCH_C:bench/%.c=$(SIM)/bench/%))

# Keep test/bench objects (made through chained pattern rules, make would delete them as
# intermediates). Only these: a blanket .SECONDARY would let a missing library object
# (a new core/*.c) go unbuilt when the archive is newer than its source.
.SECONDARY: $(TESTS_C:%.c=$(BUILD)/obj/%.o) $(BENCH_C:%.c=$(BUILD)/obj/%.o) $(TEST_SUPPORT_OBJ) \
            $(EMU_TESTS_C:%.c=$(EMU)/obj/%.o) $(SIM_TESTS_C:%.c=$(SIM)/obj/%.o) $(SIM_BENCH_C:%.c=$(SIM)/obj/%.o) \
            $(patsubst %.cu,$(SIM)/gen/%.cpp,$(wildcard kernels/*.cu)) $(patsubst %.cpp,$(SIM)/obj/%.o,$(wildcard tests/cudasim/*.cpp))
.PHONY: all build deps test test-cuda test-sim demo asan fuzz bench clean print-target emu sim
TOOLS   := $(if $(wildcard tests/tools/httpd_main.c),$(BUILD)/tests/httpd)
# make / make all: install missing Debian packages first (make deps), then build in parallel.
all: deps
	@$(MAKE) --no-print-directory -j$(JOBS) build
build: $(BINS) $(TESTS) $(BENCHES) $(TOOLS) emu sim print-target
emu: $(EMU_BINS) $(EMU_TESTS)
sim: $(SIM_BINS) $(SIM_TESTS) $(SIM_PROGS) $(SIM_BENCHES)

print-target:
	@if [ "$(CUDA)" = 1 ]; then echo "customdiff: built with CUDA (sm_90 code + compute_80 PTX: Hopper natively, Ampere and newer by JIT) from $(NVCC)"; else echo "customdiff: built CPU-only (CUDA=0)"; fi

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

# the host emulation build (see EMU above)
$(EMU)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(EMU_CFLAGS) -c $< -o $@
$(EMU_LIB): $(EMU_LIB_OBJ)
	@mkdir -p $(dir $@)
	@rm -f $@
	ar rcs $@ $^
define emu_stage_rule
$(EMU)/bin/customdiff-$(1): $(patsubst %.c,$(EMU)/obj/%.o,$(wildcard $(1)/*.c)) $(EMU_LIB)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(EMU_CFLAGS) $$^ -o $$@ $$(LDLIBS_HOST)
endef
$(foreach s,$(EMU_STAGES),$(eval $(call emu_stage_rule,$(s))))
$(EMU)/tests/%: $(EMU)/obj/tests/%.o $(TEST_SUPPORT_OBJ) $(EMU_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(EMU_CFLAGS) $^ -o $@ $(LDLIBS_HOST)

# the CPU simulation of the CUDA source (see SIM above)
$(SIM)/gen/%.cpp: %.cu tests/cudasim/rewrite.py
	@mkdir -p $(dir $@)
	@python3 tests/cudasim/rewrite.py $< $@ > /dev/null
$(SIM)/obj/%.cu.o: $(SIM)/gen/%.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(SIM_CXXFLAGS) -include cusim.h -c $< -o $@
$(SIM)/obj/tests/cudasim/%.o: tests/cudasim/%.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(SIM_CXXFLAGS) -c $< -o $@
$(SIM)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(SIM_CFLAGS) -c $< -o $@
$(SIM_LIB): $(SIM_LIB_OBJ)
	@mkdir -p $(dir $@)
	@rm -f $@
	ar rcs $@ $^
define sim_stage_rule
$(SIM)/bin/customdiff-$(1): $(patsubst %.c,$(SIM)/obj/%.o,$(wildcard $(1)/*.c)) $(SIM_LIB)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(SIM_CFLAGS) $$^ -o $$@ $$(LDLIBS_HOST)
endef
$(foreach s,$(EMU_STAGES),$(eval $(call sim_stage_rule,$(s))))
$(SIM)/cudasim/test_%: $(SIM)/obj/tests/cudasim/test_%.o $(SIM)/obj/tests/cudasim/%.o $(SIM_RT)
	@mkdir -p $(dir $@)
	$(CXX) -pthread $(SIM_SAN) $^ -o $@ -lopenblas -lm
$(SIM)/cudasim/test_graph: $(SIM)/obj/tests/cudasim/test_graph.o $(SIM_RT)
	@mkdir -p $(dir $@)
	$(CXX) -pthread $(SIM_SAN) $^ -o $@ -lm
$(SIM)/cudasim/test $(SIM)/cudasim/test_norm: $(SIM)/cudasim/%: $(SIM)/obj/tests/cudasim/%.o $(SIM_LIB)
	@mkdir -p $(dir $@)
	$(CXX) -pthread -fopenmp $(SIM_SAN) $^ -o $@ $(LDLIBS_HOST)
$(SIM)/tests/%: $(SIM)/obj/tests/%.o $(TEST_SUPPORT_OBJ) $(SIM_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(SIM_CFLAGS) $^ -o $@ $(LDLIBS_HOST)
$(SIM)/bench/%: $(SIM)/obj/bench/%.o $(SIM_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(SIM_CFLAGS) $^ -o $@ $(LDLIBS_HOST)

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

# make test-cuda's tests on the CPU simulation of the CUDA source (see SIM above): every GPU
# test and customdiff-verify --device cuda on every golden set, through the real kernels and
# the mocked cuBLAS/cuDNN. No GPU needed; slow (hours on 2 cores: each CUDA thread is a fiber).
# make test runs the fast part of it.
test-sim: deps
	@$(MAKE) --no-print-directory -j$(JOBS) build
	@BUILD=$(SIM) ./tests/run.sh cuda

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

-include $(shell find $(BUILD)/obj $(EMU)/obj $(SIM)/obj -name '*.d' 2>/dev/null)
