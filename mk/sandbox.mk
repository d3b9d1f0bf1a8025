# Sandboxed code execution (crates/sandbox): what its tests need on the machine, and its
# benchmark. The tests run every tier that works here and skip (loudly, with the reason) the
# others, unless BATON_REQUIRE_TIERS lists them.

# OCI runtimes (oci tier: crun or runc) and gVisor (gvisor tier); python3 and bash are used by
# the hostile-payload suite; docker.io (dockerd, containerd) lets the docker tier's tests start
# a private daemon of their own (the host's daemon, if any, is never touched). It is skipped
# when a dockerd is already installed (Docker's own docker-ce conflicts with docker.io).
SANDBOX_DEBS ?= runc crun runsc python3 bash docker.io
SANDBOX_BENCH_RUNS ?= 100
SANDBOX_BENCH_CONCURRENT ?= 100

.PHONY: sandbox-deps sandbox-test sandbox-bench sandbox-microvm-image sandbox-docker-image

# Installs only what is missing (a no-op in well under a second when all is there).
sandbox-deps:
	@missing=""; \
	for p in $(SANDBOX_DEBS); do \
	  case $$p in docker.io) { command -v dockerd || [ -x /usr/sbin/dockerd ]; } >/dev/null 2>&1 && continue;; esac; \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
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
	@cargo run -q --release -p baton-sandbox --example sandbox_bench -- $(SANDBOX_BENCH_RUNS) $(SANDBOX_BENCH_CONCURRENT)

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

# The docker tier's default image (the policy's docker_image, or BATON_DOCKER_IMAGE, names
# another). Images are never pulled: this one is made from Debian packages fetched by apt from
# its configured sources (no other network), unpacked without maintainer scripts into a
# merged-/usr root with a generated passwd/group (uid 1000 `sandbox`) and no setuid bits.
# $(DOCKER_ROOTFS) is that root as a tarball (the docker tests import it into their private
# daemon); `make sandbox-docker-image` also imports it into the daemon at DOCKER_HOST (or
# /var/run/docker.sock) when one answers.
DOCKER_IMAGE ?= baton-sandbox:debian
DOCKER_ROOTFS ?= /var/lib/baton/docker/rootfs.tar
DOCKER_IMAGE_DEBS ?= bash dash coreutils diffutils findutils grep sed mawk gzip tar util-linux hostname procps python3

$(DOCKER_ROOTFS):
	@set -e; sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	work=$$(mktemp -d); trap 'rm -rf "$$work"' EXIT; \
	mkdir -p "$$work/debs/partial" "$$work/root"; : > "$$work/status"; \
	get() { apt-get install -qq -y --download-only --no-install-recommends \
	  -o Dir::State::status="$$work/status" -o Dir::Cache::archives="$$work/debs" \
	  -o Debug::NoLocking=1 -o APT::Sandbox::User="$$(id -un)" $(DOCKER_IMAGE_DEBS) >/dev/null; }; \
	get || { $$sudo apt-get update -qq && get; }; \
	cd "$$work/root"; \
	mkdir -p usr/bin usr/sbin usr/lib usr/lib64; for d in bin sbin lib lib64; do ln -s usr/$$d $$d; done; \
	for f in ../debs/*.deb; do dpkg-deb --fsys-tarfile "$$f" | tar -x --keep-directory-symlink -C .; done; \
	rm -rf usr/share/doc usr/share/man usr/share/info usr/share/locale var/cache/* var/lib/dpkg etc/cron.daily; \
	[ -e usr/bin/awk ] || ln -s mawk usr/bin/awk; \
	find . -xdev -type f -perm /6000 -exec chmod ug-s {} +; \
	mkdir -p work tmp dev proc sys etc; chmod 1777 tmp; \
	printf '%s\n' 'root:x:0:0:root:/root:/usr/sbin/nologin' 'sandbox:x:1000:1000:sandbox:/work:/bin/sh' \
	  'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin' > etc/passwd; \
	printf '%s\n' 'root:x:0:' 'sandbox:x:1000:' 'nogroup:x:65534:' > etc/group; \
	echo 'include /etc/ld.so.conf.d/*.conf' > etc/ld.so.conf; /sbin/ldconfig -r . 2>/dev/null || true; \
	if [ "$$(id -u)" -eq 0 ]; then chroot . /usr/bin/python3 -m compileall -q -j 0 /usr/lib/python3 >/dev/null 2>&1 || true; fi; \
	tar --owner=0 --group=0 --numeric-owner -C . -cf ../rootfs.tar .; \
	$$sudo mkdir -p $(dir $(DOCKER_ROOTFS)); $$sudo mv ../rootfs.tar $(DOCKER_ROOTFS); \
	echo "sandbox: docker image root in $(DOCKER_ROOTFS) ($$(du -h $(DOCKER_ROOTFS) | cut -f1))"

sandbox-docker-image: $(DOCKER_ROOTFS)
	@if docker version >/dev/null 2>&1; then \
	  docker import -c 'USER 1000:1000' -c 'WORKDIR /work' -c 'CMD ["/bin/sh"]' \
	    -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin' \
	    $(DOCKER_ROOTFS) $(DOCKER_IMAGE) >/dev/null && echo "sandbox: imported $(DOCKER_IMAGE)"; \
	else echo "sandbox: no Docker daemon answers here; import later with: docker import $(DOCKER_ROOTFS) $(DOCKER_IMAGE)"; fi

TEST_DEPS += sandbox-deps $(DOCKER_ROOTFS)

# The tiers this machine kind provides (root, cgroups, crun/runc, runsc, docker.io): `make test`
# fails when a test of one of them would skip, so a sandbox that silently stops working here is
# a failure, not a pass. Elsewhere set it to what that machine provides (empty: skips only).
# The microvm tier cannot boot here (nested KVM), so it is not listed.
SANDBOX_REQUIRE_TIERS ?= process,oci,gvisor,docker
test-rust: export BATON_REQUIRE_TIERS ?= $(SANDBOX_REQUIRE_TIERS)
sandbox-test: export BATON_REQUIRE_TIERS ?= $(SANDBOX_REQUIRE_TIERS)
BENCH_TARGETS += sandbox-bench
