# vmictl: every entry point. Run as root on Debian 12.
#   make setup  install the Debian packages and npm modules the project needs
#   make build  compile TypeScript into dist/
#   make vm     build the test VM image (test-vms/)
#   make demo   all of the above, boot the test VM and run the main job against it
#   make test   all of the above, then every stage of the test matrix (TAP), each on its own guest:
#               test-main (6.1, every test), test-la57 (5-level paging), test-trixie (6.12),
#               test-sid (7.x), test-distro (Debian 12 with docker and podman); README.md lists them
#   make bench  the benchmarks against a freshly booted test VM
#   make distro-image  build the distro test VM (Debian 12, systemd, docker, podman; test-vms/distro/)
#   make test-distro   boot it, run test/distro/*, stop it
#   make fuzz   every fuzz harness for FUZZ_TIME seconds each (default 60; or FUZZ_RUNS inputs; FUZZ=name for one)
SHELL := /bin/bash
DEBS := qemu-system-x86 qemu-utils busybox-static runc dwarves cpio gzip xz-utils gcc clang libc6-dev gdb python3 socat ca-certificates
# the integrity tests' rootkit module is built with the test kernel's own compiler and kbuild tools
DEBS += gcc-12 make binutils libelf1
# the distro test VM's disk image (make distro-image): mmdebstrap builds the tree, mkfs.ext4 the disk
DEBS += mmdebstrap e2fsprogs
TEST_RUN := $(CURDIR)/test-vms/run-test
DEMO_RUN := $(CURDIR)/test-vms/run

.PHONY: setup build vm demo test test-main test-trixie test-la57 test-sid test-distro distro-image bench clean stop fuzz
setup:
	@missing=$$(for p in $(DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "setup: installing $$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -q && apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@[ -n "$$(ls /var/lib/apt/lists/*Packages 2>/dev/null)" ] || apt-get update -q
	@if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then npm ci --no-audit --no-fund; fi

build: setup
	npx tsc -p tsconfig.json

vm: build
	$(MAKE) -C test-vms image profile

demo: build vm
	@bash -c 'set -a; eval "$$(./test-vms/run.sh start $(DEMO_RUN))"; set +a; \
	  echo; echo "== vmictl status"; ./bin/vmictl status; \
	  echo; echo "== vmictl kernel"; ./bin/vmictl kernel; \
	  echo; echo "== vmictl ps"; ./bin/vmictl ps; \
	  echo; echo "== vmictl top web"; ./bin/vmictl top web; \
	  export VMICTL_VMLINUX=$(CURDIR)/test-vms/build/vmlinux; \
	  echo; echo "== vmictl check (the guest kernel against its vmlinux)"; ./bin/vmictl check; \
	  echo; echo "== vmictl exec web -- /bin/hostname (injected syscalls, behind the integrity guard)"; ./bin/vmictl exec web -- /bin/hostname; \
	  echo; echo "The test VM keeps running: source test-vms/run/vm.env to use it, make stop to end it."'

stop:
	./test-vms/run.sh stop $(DEMO_RUN)

# Every guest of the matrix, each stage run even when one before it failed; the last line sums them
# all. Which tests run on which guest: README.md, "The test matrix".
TEST_STAGES := test-main test-la57 test-trixie test-sid test-distro
test: build vm
	@rm -f .tap-output*.txt; rc=0; \
	for stage in $(TEST_STAGES); do \
	  start=$$(date +%s); \
	  $(MAKE) --no-print-directory $$stage || { rc=1; echo "== $$stage FAILED"; }; \
	  echo "== $$stage took $$(( $$(date +%s) - start )) s"; \
	done; \
	echo "== every guest of the matrix ($(TEST_STAGES)):"; \
	cat .tap-output*.txt | node .ci/tap-summary.js || rc=1; \
	exit $$rc

# The 6.1 initramfs VM, 4-level paging, its DWARF profile: every test under test/ but test/distro.
test-main: build vm
	@rm -f .tap-output.txt; \
	env_out=$$(./test-vms/run.sh start $(TEST_RUN)) || exit 1; \
	set -a; eval "$$env_out"; VMICTL_DBG_VMLINUX=$(CURDIR)/test-vms/build/vmlinux; set +a; \
	trap './test-vms/run.sh stop $(TEST_RUN)' EXIT; \
	npx tap --reporter=tap --jobs=1 2>&1 | tee .tap-output.txt; rc=$${PIPESTATUS[0]}; \
	node .ci/tap-summary.js .tap-output.txt; srs=$$?; \
	[ $$rc -eq 0 ] && [ $$srs -eq 0 ]

# The second kernel of the matrix (Debian 13, 6.12): a subset of the VM tests, with no profile file
# for it anywhere, so vmictl builds its profile from guest memory (cached in a temporary dir).
# IMAGE_DIR is exported: a test that boots a VM of its own boots this kernel too (the integrity test
# without a vmlinux boots one for the rootkit).
# The 6.12 and 7.x stages split the VM tests between them, to keep CI within its hour.
# Under this machine's TCG the 6.12 guest has panicked in its page and slab allocators, twice while
# booting (before vmictl connects) and once mid-run in a guest shell's clone(): a boot that panics
# is tried up to four times (BOOT_ATTEMPTS), and a run whose guest panicked is run once more on a
# fresh VM, after printing the panic (the console is kept).
TRIXIE_TESTS := test/kernel/from-memory-vm.test.ts test/kernel/kaslr-vm.test.ts test/containers/containers-vm.test.ts \
	test/ops/ops-vm.test.ts test/integrity/integrity-novmlinux-vm.test.ts
TRIXIE_INJECT := test/inject/child-vm.test.ts
# The newest Debian kernel (sid's cloud kernel, 7.x), the same way: a subset of the VM tests with no
# profile file, the profile built from guest memory, the integrity test without a vmlinux included
# (its rootkit built by sid's gcc-16 and binutils, fetched for it). A vmlinux-mode check is not:
# the 7.x -dbg vmlinux has no relocation sections to tell what KASLR changed.
SID_TESTS := test/kernel/kaslr-vm.test.ts test/containers/containers-vm.test.ts \
	test/vm/qmp-only-vm.test.ts test/ops/exec-vm.test.ts test/integrity/integrity-novmlinux-vm.test.ts \
	test/integrity/escapes-vm.test.ts
SID_INJECT := test/inject/inject-vm.test.ts
# and from-memory-vm once the DWARF profile of sid's -dbg package is built (into a temporary
# directory, never profiles/, so that the other tests still find no profile file): the BTF layout
# against it, ps with it, and ps with no profile at all
SID_DWARF := test/kernel/from-memory-vm.test.ts
test-trixie: STAGE_KERNEL := trixie
test-trixie: STAGE_NAME := the Debian 13 kernel (6.12)
test-trixie: STAGE_TESTS := $(TRIXIE_TESTS)
test-trixie: STAGE_INJECT := $(TRIXIE_INJECT)
test-sid: STAGE_KERNEL := sid
test-sid: STAGE_NAME := Debian sid's kernel
test-sid: STAGE_TESTS := $(SID_TESTS)
test-sid: STAGE_INJECT := $(SID_INJECT)
test-sid: STAGE_DWARF := $(SID_DWARF)
# One recipe for each kernel of the matrix that has no profile file: boot its image, run its two
# batches of tests (three with STAGE_DWARF), and run them once more on a fresh VM when the guest
# kernel panicked.
test-trixie test-sid: build
	@$(MAKE) --no-print-directory -C test-vms image KERNEL=$(STAGE_KERNEL)
	@image=$(CURDIR)/test-vms/build-$(STAGE_KERNEL); out=.tap-output-$(STAGE_KERNEL).txt; \
	cache=$$(mktemp -d); run=$(TEST_RUN)-$(STAGE_KERNEL); \
	trap './test-vms/run.sh stop '"$$run"'; rm -rf '"$$cache" EXIT; \
	for attempt in 1 2; do \
	  rm -f $$out; \
	  env_out=$$(IMAGE_DIR=$$image READY_TIMEOUT=$${READY_TIMEOUT:-600} BOOT_ATTEMPTS=$${BOOT_ATTEMPTS:-4} ./test-vms/run.sh start $$run) || exit 1; \
	  set -a; eval "$$env_out"; XDG_CACHE_HOME=$$cache; IMAGE_DIR=$$image; set +a; \
	  echo "== the same tests on $(STAGE_NAME) ($$(awk '$$1 ~ /^linux-image-/ {print $$1}' $$image/manifest.txt | head -n 1)), with no profile file"; \
	  npx tap --reporter=tap --jobs=1 $(STAGE_TESTS) 2>&1 | tee $$out; rc=$${PIPESTATUS[0]}; \
	  npx tap --reporter=tap --jobs=1 $(STAGE_INJECT) 2>&1 | tee -a $$out; rc2=$${PIPESTATUS[0]}; rc3=0; \
	  if [ -n "$(STAGE_DWARF)" ]; then \
	    $(MAKE) --no-print-directory -C test-vms profile KERNEL=$(STAGE_KERNEL) PROFILES=$$cache/dwarf || exit 1; \
	    echo "== with the DWARF profile of its -dbg package, from $$cache/dwarf"; \
	    VMICTL_TEST_DWARF_PROFILES=$$cache/dwarf VMICTL_DBG_VMLINUX=$$image/vmlinux npx tap --reporter=tap --jobs=1 $(STAGE_DWARF) 2>&1 | tee -a $$out; rc3=$${PIPESTATUS[0]}; \
	  fi; \
	  node .ci/tap-summary.js $$out; srs=$$?; \
	  if [ $$rc -eq 0 ] && [ $$rc2 -eq 0 ] && [ $$rc3 -eq 0 ] && [ $$srs -eq 0 ]; then exit 0; fi; \
	  if [ $$attempt -eq 1 ] && grep -q 'Kernel panic' $$run/console.log 2>/dev/null; then \
	    cp $$run/console.log $$run/console.crash.log; \
	    echo "== the guest kernel panicked during this run (its console is kept in $$run/console.crash.log):"; \
	    grep -m 3 -E 'Oops|RIP: 0010|Kernel panic' $$run/console.crash.log; \
	    echo "== the failures above may be that crash: running the same tests once more on a freshly booted VM"; \
	    rm -rf "$$cache"/*; continue; \
	  fi; \
	  exit 1; \
	done

# The same 6.1 image booted with 5-level paging (QEMU -cpu max has LA57; la57=off is run.sh's
# default): the direct map, vmalloc and vmemmap lie outside the 4-level kernel half and user space
# reaches 2^56, so these tests fail wherever something assumes 4-level paging. Every VM test of
# the 4-level run runs here too (about 7 minutes on an idle machine, 12 under load); the unit tests
# do not depend on the guest and run once, in test-main.
LA57_TESTS := $(sort $(shell find test -name '*-vm.test.ts' ! -path 'test/distro/*'))
test-la57: build vm
	@rm -f .tap-output-la57.txt; run=$(TEST_RUN)-la57; \
	trap './test-vms/run.sh stop '"$$run" EXIT; \
	env_out=$$(CPU=max ./test-vms/run.sh start $$run) || exit 1; \
	set -a; eval "$$env_out"; CPU=max; VMICTL_DBG_VMLINUX=$(CURDIR)/test-vms/build/vmlinux; set +a; \
	echo "== every VM test on the 6.1 kernel under 5-level paging (CPU=max)"; \
	npx tap --reporter=tap --jobs=1 $(LA57_TESTS) 2>&1 | tee .tap-output-la57.txt; rc=$${PIPESTATUS[0]}; \
	node .ci/tap-summary.js .tap-output-la57.txt; srs=$$?; \
	[ $$rc -eq 0 ] && [ $$srs -eq 0 ]

# The distro VM: a Debian 12 disk (systemd, AppArmor, docker, containerd, podman) whose containers
# the engines make at boot. It runs the same bookworm cloud kernel as the initramfs VM, so the
# profile make vm builds serves it. Its tests read their own VMICTL_DISTRO_* variables.
DISTRO_RUN := $(CURDIR)/test-vms/run-distro
distro-image: build
	@$(MAKE) --no-print-directory -C test-vms distro-image

test-distro: build distro-image
	@$(MAKE) --no-print-directory -C test-vms profile
	@rm -f .tap-output-distro.txt; \
	trap './test-vms/run.sh stop $(DISTRO_RUN)' EXIT; \
	env_out=$$(IMAGE_DIR=$(CURDIR)/test-vms/build-distro ./test-vms/run.sh start $(DISTRO_RUN)) || exit 1; \
	export $$(echo "$$env_out" | sed -n 's/^VMICTL_\([A-Z_]*\)=\(.*\)$$/VMICTL_DISTRO_\1=\2/p'); \
	npx tap --reporter=tap --jobs=1 test/distro/*.test.ts 2>&1 | tee .tap-output-distro.txt; rc=$${PIPESTATUS[0]}; \
	node .ci/tap-summary.js .tap-output-distro.txt; srs=$$?; \
	[ $$rc -eq 0 ] && [ $$srs -eq 0 ]

bench: build vm distro-image
	@run=$$(mktemp -d "$${TMPDIR:-/tmp}/vmictl-bench.XXXXXX") || exit 1; \
	trap './test-vms/run.sh stop "$$run"; rm -rf "$$run"' EXIT; trap 'exit 130' INT; trap 'exit 143' TERM; trap 'exit 129' HUP; \
	echo "bench: booting the test VM with $${VMICTL_BENCH_GROUPS:-50} extra container groups of 20 tasks (VMICTL_BENCH_GROUPS=0: the standard VM)"; \
	env_out=$$(APPEND="pti=on vmictl.bench=$${VMICTL_BENCH_GROUPS:-50}" READY_TIMEOUT=600 ./test-vms/run.sh start "$$run") || exit 1; \
	set -a; eval "$$env_out"; set +a; \
	node dist/bench/run.js
	@if [ -f test-vms/build-trixie/initrd.cpio.gz ]; then \
	  run=$$(mktemp -d); cache=$$(mktemp -d); trap './test-vms/run.sh stop "$$run"; rm -rf "$$run" "$$cache"' EXIT; \
	  env_out=$$(IMAGE_DIR=$(CURDIR)/test-vms/build-trixie ./test-vms/run.sh start "$$run") || exit 1; \
	  set -a; eval "$$env_out"; XDG_CACHE_HOME=$$cache; set +a; \
	  echo "bench: the Debian 13 kernel (6.12, make test-trixie builds it): the automatic profile"; \
	  VMICTL_BENCH_ONLY=auto-profile node dist/bench/run.js; \
	fi
	@run=$$(mktemp -d); trap './test-vms/run.sh stop "$$run"; rm -rf "$$run"' EXIT; \
	echo "bench: the distro VM (Debian 12, docker and podman): ps, exec, cp, pause beside the engines' own"; \
	env_out=$$(IMAGE_DIR=$(CURDIR)/test-vms/build-distro ./test-vms/run.sh start "$$run") || exit 1; \
	set -a; eval "$$env_out"; set +a; \
	VMICTL_BENCH_ONLY=distro node dist/bench/run.js

fuzz: build
	FUZZ_TIME=$${FUZZ_TIME:-60} node --expose-gc dist/test/fuzz/run.js $(FUZZ)

clean:
	rm -rf dist .tap-output.txt
	$(MAKE) -C test-vms clean
