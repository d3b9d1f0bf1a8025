# Sandboxed code execution (crates/sandbox): what its tests need on the machine, and its
# benchmark. The tests run every tier that works here and skip (with the reason) the others.

# OCI runtimes (oci tier: crun or runc) and gVisor (gvisor tier); python3 and bash are used by
# the hostile-payload suite.
SANDBOX_DEBS ?= runc crun runsc python3 bash
SANDBOX_BENCH_RUNS ?= 100
SANDBOX_BENCH_CONCURRENT ?= 100

.PHONY: sandbox-deps sandbox-test sandbox-bench sandbox-microvm-image

# Installs only what is missing (a no-op in well under a second when all is there).
sandbox-deps:
	@missing=""; \
	for p in $(SANDBOX_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "sandbox: installing$$missing"; \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@command -v bandit >/dev/null 2>&1 || { \
	  echo "sandbox: installing Bandit (pip)"; \
	  python3 -m pip install --quiet bandit 2>/dev/null || python3 -m pip install --quiet --break-system-packages bandit; \
	  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true; \
	}

sandbox-test: sandbox-deps
	cargo test -p baton-sandbox

sandbox-bench: sandbox-deps
	@cargo run -q --release -p baton-sandbox --example bench -- $(SANDBOX_BENCH_RUNS) $(SANDBOX_BENCH_CONCURRENT)

# The microvm tier's image: a Debian kernel and a busybox initramfs whose /init runs the
# request (a shell script passed on the kernel command line) and reports on the serial console.
# Guests have busybox only. Not part of `make test`: the tier is offered only where a KVM
# guest boots, and `baton sandbox doctor` says why not elsewhere.
MICROVM_DIR ?= /var/lib/baton/microvm

sandbox-microvm-image:
	@set -e; sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	missing=""; for p in qemu-system-x86 busybox-static cpio; do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing; fi; \
	work=$$(mktemp -d); trap 'rm -rf "$$work"' EXIT; cd "$$work"; \
	kpkg=$$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $$2; exit}'); \
	[ -n "$$kpkg" ] || { echo "sandbox: cannot find the Debian kernel package"; exit 1; }; \
	apt-get download -q "$$kpkg"; dpkg-deb -x "$$kpkg"_*.deb kernel; \
	mkdir -p root/bin root/proc root/dev root/work root/tmp; \
	cp /bin/busybox root/bin/busybox; \
	printf '%s\n' '#!/bin/busybox sh' \
	  '/bin/busybox --install -s /bin' \
	  'mount -t proc proc /proc; mount -t devtmpfs dev /dev 2>/dev/null' \
	  'arg() { sed -n "s/.*$$1=\([^ ]*\).*/\1/p" /proc/cmdline; }' \
	  'disk=$$(arg baton.disk); pids=$$(arg baton.pids)' \
	  'mount -t tmpfs -o size=$$disk tmpfs /work; mount -t tmpfs -o size=$$disk tmpfs /tmp' \
	  'arg baton.req | base64 -d > /tmp/.req.sh' \
	  '(ulimit -u $$pids; sh /tmp/.req.sh > /tmp/.out 2> /tmp/.err); code=$$?' \
	  'echo BATON-STDOUT; base64 /tmp/.out; echo BATON-END; echo BATON-STDERR; base64 /tmp/.err; echo BATON-END' \
	  'echo "BATON-EXIT $$code"; poweroff -f' > root/init; \
	chmod 755 root/init; \
	(cd root && find . | cpio -o -H newc --quiet | gzip -9) > initrd.img; \
	$$sudo mkdir -p $(MICROVM_DIR); \
	$$sudo cp kernel/boot/vmlinuz-* $(MICROVM_DIR)/vmlinuz; $$sudo cp initrd.img $(MICROVM_DIR)/initrd.img; \
	echo "sandbox: microVM image in $(MICROVM_DIR) (check it with: baton sandbox doctor)"

TEST_DEPS += sandbox-deps
BENCH_TARGETS += sandbox-bench
