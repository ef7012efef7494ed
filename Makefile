# FluxForge developer entry points.  Every target bootstraps .venv on first use
# with nothing but python3 -m venv + pip, so a fresh machine needs no extra tools.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: demo lock test test-unit test-appliance test-image test-image-arm64 bench deb deb-arm64 image image-pi clean

# Every install takes the versions constraints.txt pins (`make lock` renews them), the build's
# own (Cython, numpy, setuptools in pip's isolated build environment) included.  A new venv's pip
# may predate --build-constraint (pip 25.3): it is upgraded to the pinned one with --constraint alone.
PIN := --constraint constraints.txt --build-constraint constraints.txt

$(STAMP): pyproject.toml setup.py constraints.txt $(wildcard cython_ext/*.pyx cython_ext/*.pxd)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade --constraint constraints.txt pip setuptools wheel
	$(PY) -m pip install --quiet $(PIN) -e '.[test,plot,backfill]'
	touch $@

venv: $(STAMP)

# An optional extra installed by name (.venv/.<extra>-stamp), so the editable install (and its
# Cython build) is not redone: Ansible + ansible-lint (`appliance`) only for the appliance test,
# cryptofeed (`bench`) only for bench/collector.py's comparison.
$(VENV)/.%-stamp: $(STAMP) pyproject.toml constraints.txt
	$(PY) -c "import tomllib; print(chr(10).join(tomllib.load(open('pyproject.toml','rb'))['project']['optional-dependencies']['$*']))" > $(VENV)/$*-requirements.txt
	$(PY) -m pip install --quiet $(PIN) -r $(VENV)/$*-requirements.txt
	touch $@

APPLIANCE_STAMP := $(VENV)/.appliance-stamp
BENCH_STAMP := $(VENV)/.bench-stamp

demo: $(STAMP)
	$(VENV)/bin/fluxforge demo

# Everything CI runs: unit + integration (+ reference/differential) tests, then the appliance boot
# test, then the image boot test on the .deb the appliance test built (out/appliance/dist/).
test: test-unit test-appliance
	FLUXFORGE_TEST_DEB="$${FLUXFORGE_TEST_DEB:-$$(ls out/appliance/dist/fluxforge_*_amd64.deb | head -n 1)}" \
		$(MAKE) test-image

# promtool (Debian's prometheus) checks contrib/prometheus/: installed first, needs root if missing.
test-unit: $(STAMP)
	packaging/install-host-deps.sh --unit
	$(PY) -m pytest tests --ignore=tests/appliance --ignore=tests/image $(PYTEST_ARGS)

# Needs root: installs host tools from Debian's archive (packaging/install-host-deps.sh),
# builds the .deb in a clean bookworm root and boots systemd-nspawn containers.
test-appliance: $(APPLIANCE_STAMP)
	packaging/install-host-deps.sh
	$(PY) -m pytest tests/appliance $(PYTEST_ARGS)

# Needs root: builds the amd64 image (from $$FLUXFORGE_TEST_DEB, else a fresh .deb) into out/image/
# and boots it in QEMU (TCG, OVMF): bad config, then fixed config on the ESP (docs/images.md).
test-image: $(STAMP)
	packaging/install-host-deps.sh --image
	$(PY) -m pytest tests/image $(PYTEST_ARGS)

# Opt-in, NOT part of `make test` (slow: the arm64 root is bootstrapped under qemu-user once,
# then cached).  Builds the Pi image (from $$FLUXFORGE_TEST_DEB_ARM64, else a fresh arm64 .deb) into
# out/image-arm64/, checks its boot partition with mtools and its root with debugfs, and boots that
# root in qemu-system-aarch64 -M virt -cpu cortex-a72 (TCG) with the image's own kernel (docs/images.md).
test-image-arm64: $(STAMP)
	packaging/install-host-deps.sh --image-arm64
	FLUXFORGE_TEST_IMAGE_ARM64=1 $(PY) -m pytest tests/image/test_arm64_image.py $(PYTEST_ARGS)

# fluxforge_<version>_amd64.deb in dist/, built in a cached clean bookworm root, lintian-checked.
deb:
	packaging/install-host-deps.sh
	$(PYTHON) packaging/build_deb.py --arch amd64 --out dist

# The Raspberry Pi package, built here under qemu-user emulation (binfmt_misc);
# on an arm64 machine `make deb` builds it natively (docs/appliance.md).
deb-arm64:
	packaging/install-host-deps.sh --arm64
	$(PYTHON) packaging/build_deb.py --arch arm64 --out dist

# dist/fluxforge-<version>-amd64.img (+ .qcow2, .img.zst): bookworm + the .deb, no mounts needed
# (docs/images.md).  Builds the .deb first; the image root is cached by its inputs.
image: $(STAMP)
	packaging/install-host-deps.sh --image
	$(PY) packaging/build_image.py --arch amd64 --out dist

# dist/fluxforge-<version>-rpi-arm64.img (+ .img.zst): the Raspberry Pi 3/4/400/CM4/Zero 2 W card,
# MBR + RASPIFIRM (Debian's raspi-firmware) + RASPIROOT, with the arm64 .deb (docs/images.md).
# The arm64 root runs under qemu-user (binfmt_misc): the first build bootstraps for a long while.
image-pi: $(STAMP)
	packaging/install-host-deps.sh --image-arm64
	$(PY) packaging/build_image.py --arch arm64 --out dist

# bench/_*.py are the benchmarks' helpers, not benchmarks.
bench: $(BENCH_STAMP)
	@for b in bench/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# constraints.txt anew: the newest versions pyproject.toml allows, resolved for Python 3.11
# (packaging/lock_deps.py); then `make test` before committing both.
lock:
	$(PYTHON) packaging/lock_deps.py

clean:
	rm -rf build *.egg-info fluxforge/_kernels/*.so cython_ext/*.c
