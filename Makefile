# jeancore developer and user entry points. Everything installs into ./.venv (created with
# --system-site-packages, so a torch you already have, e.g. a CUDA build, is kept and used).
#
#   make demo        the main job: preprocess a real video, train, render an mp4 with sound,
#                    evaluate (VIDEO=..., AUDIO=..., EXPRESSION=... to use your own files)
#   make test        set up everything on a fresh machine and run the test suite
#   make install     set up and build/install jeancore only
#   make bench       kernel benchmarks -> docs/benchmarks.md numbers (benchmarks/results/*.json);
#                    BENCH_DATA=<preprocessed clip> adds the marching benchmark on a real head
#   make cuda-check  compile-only CUDA build against torch 2.14.1 (CUDA 13.0) in ./.venv-cuda
#
# Variables: PYTHON (python3), TORCH_SPEC (torch==2.13.0, used only if torch is missing),
# JEANCORE_CUDA (AUTO|ON|OFF), JEAN_MEDIA (../shared/media), PYTEST_ARGS.

PYTHON      ?= python3
VENV        ?= .venv
TORCH_SPEC  ?= torch==2.13.0
MEDIAPIPE_SPEC ?= mediapipe==0.10.21
JEAN_MEDIA  ?= $(abspath ../shared/media)
PYTEST_ARGS ?=
VPY          = $(VENV)/bin/python
VPIP         = $(VPY) -m pip
BUILD_TOOLS  = "scikit-build-core>=0.10" "cmake>=3.26" ninja

export JEAN_MEDIA

.PHONY: test install demo bench cuda-check clean

$(VENV)/.ready: pyproject.toml
	@test -x $(VPY) || $(PYTHON) -m venv --system-site-packages $(VENV)
	@$(VPY) -c "import torch" 2>/dev/null && echo "jeancore: using installed torch $$($(VPY) -c 'import torch; print(torch.__version__)')" \
	  || $(VPIP) install -q "$(TORCH_SPEC)"
	$(VPIP) install -q $(BUILD_TOOLS) "tslearn>=0.6"
	@# mediapipe 0.10.21 (offline person segmentation) declares numpy<2 but works with numpy 2:
	@# install it without its declared deps; jeancore's own deps cover what it imports.
	$(VPIP) install -q --no-deps $(MEDIAPIPE_SPEC)
	@touch $@

install: $(VENV)/.ready
	$(VPIP) install -q --no-build-isolation ".[test]"

test: install
	@test -d "$(JEAN_MEDIA)" || { echo "JEAN_MEDIA=$(JEAN_MEDIA) does not exist: point it at the shared media folder"; exit 1; }
	@# run from python_tests/ so the installed package, not the source tree, is imported
	cd python_tests && ../$(VPY) -m pytest $(PYTEST_ARGS)

VIDEO      ?= $(JEAN_MEDIA)/video/obama_20s_450.mp4
AUDIO      ?= $(JEAN_MEDIA)/audio/radio31_8s_en.wav
EXPRESSION ?= $(JEAN_MEDIA)/video/sad_woman_20s_640x360.mp4
DEMO_OUT   ?=

demo: install
	@test -f "$(VIDEO)" || { echo "VIDEO=$(VIDEO) not found: set JEAN_MEDIA or VIDEO"; exit 1; }
	$(VPY) examples/demo.py --video "$(VIDEO)" --audio "$(AUDIO)" \
	  --expression "$(EXPRESSION)" $(if $(DEMO_OUT),--out "$(DEMO_OUT)")

# BENCH_DATA: a folder written by `jean preprocess` (the head the marching benchmark uses)
BENCH_DATA ?=

bench: install
	$(VPY) benchmarks/bench_ops.py
	$(VPY) benchmarks/bench_dtw.py
	$(VPY) benchmarks/bench_preprocess.py
	$(VPY) benchmarks/bench_encoding.py
	$(VPY) benchmarks/bench_contention.py
	@if [ -n "$(BENCH_DATA)" ]; then $(VPY) benchmarks/bench_marching.py "$(BENCH_DATA)"; \
	  else echo "bench_marching.py skipped: set BENCH_DATA to a preprocessed clip (jean preprocess)"; fi

# Compile-only check of the CUDA kernels (no GPU needed): CUDA torch 2.14.1 from local disk.
cuda-check:
	@test -x .venv-cuda/bin/python || $(PYTHON) -m venv .venv-cuda
	.venv-cuda/bin/python -m pip install -q torch==2.14.1 $(BUILD_TOOLS) numpy
	JEANCORE_CUDA=ON TORCH_CUDA_ARCH_LIST="$${TORCH_CUDA_ARCH_LIST:-9.0}" \
	  .venv-cuda/bin/python -m pip install -q --no-build-isolation --no-deps -Cbuild-dir=build/cuda-check .
	.venv-cuda/bin/python .ci/check_cuda_build.py

clean:
	rm -rf build
