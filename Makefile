# Set-up is part of every target: the first run creates .venv, installs the
# pinned dependencies, builds the interfaces into the environment and
# installs this package; later runs only redo the steps whose inputs changed.

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMPS := $(VENV)/.stamps
INTERFACES_BUILD := $(VENV)/build/interfaces
# The suite runs on one pytest-xdist worker per CPU (at most 4), a test file
# per worker: much of it waits on DDS, subprocesses and timers. Each worker
# gets its own ROS domain (test/conftest.py). PYTEST_PARALLEL= runs it serially.
PYTEST_PARALLEL ?= -n auto --maxprocesses 4 --dist loadfile
PYTEST_ARGS ?=

# Keep DDS discovery on this machine unless the caller chose otherwise.
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST

.PHONY: demo test lint colcon design-cpu design-cuda design-cpu-check design-perception \
	design-ctranslate2 vocabulary-map \
	constraints clean
demo: $(STAMPS)/package
	$(BIN)/dyn-dnn-ros system demo

test: $(STAMPS)/package
	$(BIN)/python -m pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)

# The design-time pipeline on this CPU (Dynamic-HAT steps 2-5): latency dataset,
# predictor, sweep, design report. It refreshes the shipped library, plot and
# reduced space, so it names them; the commands alone write under runs/. Every
# step resumes from runs/design when interrupted; `time` prints each step's cost.
# The sweep times no random cloud (--random 0): design-cpu-check compares its
# candidates with 1,000 random sub-networks timed in the same rounds, then times
# the comparisons within 5 % of a verdict again, to 30 samples, and those still
# within 2.9 % to 100 (docs/results.md gives its time). The sweep's timed
# candidates are kept beside the library (SWEEP_CANDIDATES) so the check, which
# takes longer than the pipeline, can run later on a machine where runs/ is gone. Without that file (a library
# from before it existed) the check compares the library's own points only.
DESIGN_RUN := runs/design
SWEEP_CANDIDATES := config/generated/sweep_candidates_cpu.csv
design-cpu: $(STAMPS)/package
	time $(BIN)/dyn-dnn-ros design latency --device cpu --out $(DESIGN_RUN)/latency_cpu.csv
	time $(BIN)/dyn-dnn-ros design predictor --data $(DESIGN_RUN)/latency_cpu.csv
	time $(BIN)/dyn-dnn-ros design sweep --device cpu --count 10 --max-finalists 48 --beams 1 3 \
	  --gap 0.05 --per-gap 6 --fill-searches 6 --fill-gap 0.03 --fill-iterations 8 --random 0 \
	  --samples-log $(DESIGN_RUN)/latency_cpu.csv.samples.jsonl \
	  --library config/generated/operating_points_translation_cpu_torch.yaml --plot docs/pareto_cpu.png
	cp $(DESIGN_RUN)/sweep_cpu/random.csv $(SWEEP_CANDIDATES)
	time $(BIN)/dyn-dnn-ros design report --library config/generated/operating_points_translation_cpu_torch.yaml \
	  --out config/generated/design_space_reduced_cpu.yaml

# The same pipeline on a CUDA GPU, sized to minutes (scripts/design_cuda.sh says
# how): needs a CUDA build of torch in the environment, which this machine's
# pinned CPU wheel is not; on a GPU machine without the venv, run the script
# with PYTHON=python3.
# The CPU library the translation node runs by default: CTranslate2 int8 with the
# vocabulary map, every candidate and point timed on that engine, then every
# point timed again as the node holds them (docs/engines.md). Resumes from
# runs/design_ctranslate2 and runs/retime_ctranslate2 when interrupted.
design-ctranslate2: $(STAMPS)/package
	time $(BIN)/dyn-dnn-ros design ctranslate2-library --run-dir runs/design_ctranslate2 \
	  --fitness-sentences 100 --candidates 160 --rounds 6 \
	  --library runs/design_ctranslate2/operating_points_translation_cpu.yaml
	time $(BIN)/dyn-dnn-ros design ctranslate2-retime \
	  --library runs/design_ctranslate2/operating_points_translation_cpu.yaml \
	  --out config/generated/operating_points_translation_cpu.yaml

# The CTranslate2 engine's target shortlist, from the training corpus (its valid
# and test splits held out). A new map means a new library: run design-ctranslate2
# after it (the library records the map's digest and a worker checks it).
vocabulary-map: $(STAMPS)/package
	time $(BIN)/dyn-dnn-ros translation vocabulary-map --corpus-dir data/corpus \
	  --out models/translation/vocabulary_map.txt

design-cuda: $(STAMPS)/package
	PYTHON=$(BIN)/python scripts/design_cuda.sh

# WeNet's design-space exploration into the shipped perception library, plot and
# shuffle ablation table; it also rewrites the shipped model's calibrations
# (models/perception/wenet/calibration.safetensors) for the points it finds.
design-perception: $(STAMPS)/package
	time $(BIN)/dyn-dnn-ros perception dse --out config/generated/operating_points_perception_cpu.yaml \
	  --plot docs/perception_pareto.png --ablation --ablation-table docs/perception_ablation.md \
	  --model-out models/perception/wenet

design-cpu-check: $(STAMPS)/package
	time $(BIN)/python bench/front_vs_random.py --random 1000 --random-seed 1 \
	  $$(test -f $(SWEEP_CANDIDATES) && echo --candidates $(SWEEP_CANDIDATES)) \
	  --cache $(DESIGN_RUN)/sweep_cpu/fitness_cache.json --plot docs/front_vs_random_cpu.png

lint: $(STAMPS)/package
	$(BIN)/python -m pytest test/test_lint.py

# The ROS-host route: build both packages with colcon into build/ install/.
colcon: $(STAMPS)/package
	AMENT_PREFIX_PATH=$(abspath $(VENV)) CMAKE_PREFIX_PATH=$(abspath $(VENV)) \
	  $(BIN)/colcon build --base-paths . interfaces

$(STAMPS)/venv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q pip==24.3.1 setuptools==79.0.1 wheel==0.48.0
	mkdir -p $(STAMPS) && touch $@

$(STAMPS)/deps: requirements.txt constraints.txt $(STAMPS)/venv
	$(BIN)/python -m pip install -q -r requirements.txt -c constraints.txt
	touch $@

$(STAMPS)/interfaces: $(STAMPS)/deps interfaces/CMakeLists.txt interfaces/package.xml \
		$(wildcard msg/*.msg srv/*.srv)
	mkdir -p $(INTERFACES_BUILD)
	cmake -S interfaces -B $(INTERFACES_BUILD) -DCMAKE_BUILD_TYPE=Release \
	  -DCMAKE_PREFIX_PATH=$(abspath $(VENV)) -DCMAKE_INSTALL_PREFIX=$(abspath $(VENV)) \
	  -DPython3_EXECUTABLE=$(abspath $(BIN))/python -DBUILD_TESTING=OFF > $(VENV)/build/interfaces.log
	cmake --build $(INTERFACES_BUILD) -j 2 >> $(VENV)/build/interfaces.log
	cmake --install $(INTERFACES_BUILD) >> $(VENV)/build/interfaces.log
	touch $@

# Editable install: code changes need no reinstall, and a checkout reads
# config/ and models/ from the source tree (dyn_dnn_ros/share.py).
$(STAMPS)/package: $(STAMPS)/interfaces setup.py setup.cfg package.xml \
		$(wildcard launch/*.py config/*.yaml config/*/*.yaml models/*/*)
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation --use-pep517 -e .
	touch $@

constraints:
	$(BIN)/python -m pip freeze --exclude-editable | sort > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) build install log
