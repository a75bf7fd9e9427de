# tamanet — build, boot and test the unikernel.
#
#   make                 build build/tamanet-$(TARGET)
#   make qemu            build and boot it under QEMU on a private tap network
#   make test            everything: firmware build checks, host tests under
#                        -race, fuzz smoke runs, end-to-end tests under QEMU;
#                        fails when it cannot build or boot the firmware
#   make test-host       the host tests only, for machines without the
#                        TamaGo distribution, QEMU, root or /dev/net/tun
#   make bench           per-packet benchmarks, the QEMU system benchmark and
#                        tamanet against a Linux guest on the same QEMU
#   make linuxguest      assemble the Linux guests from Debian's packages
#                        (downloaded once, cached in ~/.cache/tamanet)
#   make ab A=IMAGE      the system benchmark on image A and on this tree's
#                        image (or B=IMAGE), alternately, medians of each
#   make soak            mixed traffic for DURATION (default 30m) under QEMU
#   make profile         sample the guest under QEMU while WORKLOAD runs:
#                        a pprof profile in build/, top entries printed
#
# Variables: TARGET=microvm|mx6ullevk|usbarmory, ACCEL=auto|kvm|tcg,
# IP=10.0.0.1/24 GW=10.0.0.2 MAC=02:00:00:00:00:01 (checked before building),
# IP=dhcp with FALLBACK=10.0.0.1/24 (static address if no DHCP server
# answers; empty: none), DNS=10.0.0.2 (comma-separated name servers).
# usbarmory images default to IP=dhcp FALLBACK=10.0.0.1/24; the QEMU
# targets stay static. `make qemu IP=dhcp` runs dnsmasq on the tap.
# IP6=fd00::10:1/64 (static IPv6 address; IP6= for none: link-local and SLAAC
# addresses come on their own; usbarmory images default to none).
# OFFLOADS=on|off (default on): off makes the NIC driver negotiate no
# checksum or segmentation offload (virtio-net), for A/B runs.
# make profile: WORKLOAD=tx|rx|rr|idle (tx: the host reads chargen, rx: the
# host writes to discard, rr: 64-byte TCP echo round trips, idle: none),
# PROFILE_SECONDS=20 (sampling time), PROFILE_HZ=100 (samples a second).

TARGET ?= microvm
ACCEL  ?= auto
ifeq ($(TARGET),usbarmory)
  IP       ?= dhcp
  FALLBACK ?= 10.0.0.1/24
  # On a real LAN IPv6 comes from the link-local address and SLAAC.
  IP6      ?=
endif
IP     ?= 10.0.0.1/24
FALLBACK ?=
DNS    ?=
# LOOKUP=name:port builds in the name-lookup self-test (see cmd/unikernel).
LOOKUP ?=
GW     ?= 10.0.0.2
MAC    ?= 02:00:00:00:00:01
IP6    ?= fd00::10:1/64
OFFLOADS ?= on
BENCHCOUNT ?= 5
CI_FUZZTIME ?= 5s

GO     ?= go
BUILD  := build
IMAGE  := $(BUILD)/tamanet-$(TARGET)
PKG    := github.com/tamanet/tamanet

ifeq ($(TARGET),microvm)
  GOARCH_T := amd64
  GOENV_T  :=
  TEXT     := 0x10010000
  TAGS     := microvm
else ifeq ($(TARGET),mx6ullevk)
  GOARCH_T := arm
  GOENV_T  := GOARM=7
  TEXT     := 0x80010000
  TAGS     := mx6ullevk,linkramsize
  IMXCFG   ?= board/nxp/mx6ullevk/imximage.cfg
else ifeq ($(TARGET),usbarmory)
  GOARCH_T := arm
  GOENV_T  := GOARM=7
  TEXT     := 0x80010000
  TAGS     := usbarmory,linkramsize
  # 512 MB boards; board/usbarmory/mk2/imximage-1gb.cfg for 1 GB ones.
  IMXCFG   ?= board/usbarmory/mk2/imximage.cfg
else
  $(error unknown TARGET=$(TARGET): use microvm, mx6ullevk or usbarmory)
endif

CONFIG_LDFLAGS := -X '$(PKG)/internal/config.defaultIP=$(IP)' \
                  -X '$(PKG)/internal/config.defaultGW=$(GW)' \
                  -X '$(PKG)/internal/config.defaultMAC=$(MAC)' \
                  -X '$(PKG)/internal/config.defaultDNS=$(DNS)' \
                  -X '$(PKG)/internal/config.defaultFallback=$(FALLBACK)' \
                  -X '$(PKG)/internal/config.defaultIP6=$(IP6)' \
                  -X '$(PKG)/internal/config.defaultOffloads=$(OFFLOADS)' \
                  -X 'main.lookupTarget=$(LOOKUP)'
LDFLAGS := -s -w -T $(TEXT) -R 0x1000 $(CONFIG_LDFLAGS)
# The unstripped twin make profile symbolizes with: the same flags minus
# -s -w, so the same code at the same addresses (tamanet-profile checks).
SYMLDFLAGS := $(filter-out -s -w,$(LDFLAGS))
SYMIMAGE := $(IMAGE).sym

.PHONY: all build image imx qemu e2e soak test test-host bench linux-bench linuxguest ab profile deps check-config fuzz vet clean FORCE

all: build

build: $(IMAGE)

# The image is rebuilt every time: go's own cache makes that cheap, and it
# keeps IP/GW/MAC changes from being missed.
$(IMAGE): FORCE check-config
	@mkdir -p $(BUILD)
	TAMAGO=$$($(GO) tool -n github.com/usbarmory/tamago/cmd/tamago) && \
	GOOS=tamago GOOSPKG=github.com/usbarmory/tamago GOARCH=$(GOARCH_T) $(GOENV_T) \
	  $$TAMAGO build -tags $(TAGS) -trimpath -ldflags "$(LDFLAGS)" -o $@ ./cmd/unikernel

$(SYMIMAGE): FORCE check-config
	@mkdir -p $(BUILD)
	TAMAGO=$$($(GO) tool -n github.com/usbarmory/tamago/cmd/tamago) && \
	GOOS=tamago GOOSPKG=github.com/usbarmory/tamago GOARCH=$(GOARCH_T) $(GOENV_T) \
	  $$TAMAGO build -tags $(TAGS) -trimpath -ldflags "$(SYMLDFLAGS)" -o $@ ./cmd/unikernel

# i.MX boot image for USB serial download (SDP) or microSD/eMMC at 1 KiB:
# the ELF's loadable sections as a raw binary from TEXT on (.bss and
# .noptrbss as zeros: the boot ROM loads the image into uninitialised DDR),
# behind an IVT and tamago's DCD for the board (IMXCFG, read from the
# tamago module), with the IVT's entry (offset 4) set to the ELF's e_entry
# (ELF header offset 24). Needs mkimage (u-boot-tools) and an ARM objcopy.
OBJCOPY ?= $(shell command -v arm-none-eabi-objcopy || command -v llvm-objcopy || echo arm-none-eabi-objcopy)

ifeq ($(IMXCFG),)
imx:
	@echo "imx: TARGET=$(TARGET) has no i.MX boot image: use TARGET=usbarmory (or mx6ullevk)"; exit 1
else
imx: build
	@command -v mkimage >/dev/null || { echo "imx: mkimage not found: install u-boot-tools"; exit 1; }
	$(OBJCOPY) -O binary -R .note.go.pvh -R .note.go.buildid -R .note.gnu.build-id \
	  --set-section-flags .bss=alloc,load,contents \
	  --set-section-flags .noptrbss=alloc,load,contents $(IMAGE) $(IMAGE).bin
	TAMAGO_DIR=$$($(GO) list -m -f '{{.Dir}}' github.com/usbarmory/tamago) && \
	mkimage -n $$TAMAGO_DIR/$(IMXCFG) -T imximage -e $(TEXT) -d $(IMAGE).bin $(IMAGE).imx
	dd if=$(IMAGE) of=$(IMAGE).imx bs=1 count=4 skip=24 seek=4 conv=notrunc status=none
	@rm -f $(IMAGE).bin
endif

# Invalid IP/GW/MAC/DNS/FALLBACK/IP6/OFFLOADS fail the build here, with the reason.
check-config:
	@$(GO) run ./internal/config/check -ip '$(IP)' -gw '$(GW)' -mac '$(MAC)' -dns '$(DNS)' -fallback '$(FALLBACK)' -ip6 '$(IP6)' -offloads '$(OFFLOADS)'

# With IP=dhcp, dnsmasq serves DHCP and DNS on the tap.
qemu: deps build
	$(GO) run ./qemu/cmd/tamanet-qemu -target $(TARGET) -image $(IMAGE) -accel $(ACCEL) $(if $(filter dhcp DHCP,$(IP)),-dhcp)

# The suite leaves the benchmark tests to make bench (qemu/e2e leftOut).
e2e: deps
	$(GO) test -count=1 -timeout 30m -v ./qemu/e2e -args -target $(TARGET) -accel $(ACCEL)

# The soak (qemu/e2e TestSoak): mixed traffic against the firmware for
# DURATION, /stats sampled; fails on an upward trend of heap, goroutines or
# pool occupancy, a service that stops answering, or a leaked counter.
# Samples, plot and figures go to build/soak-$(TARGET)/ (soak.csv,
# soak.svg, summary.txt). make e2e (and so make test) runs it for 2m.
DURATION    ?= 30m
SOAKTIMEOUT ?= 3h
soak: deps
	$(GO) test -count=1 -timeout $(SOAKTIMEOUT) -v -run '^TestSoak$$' ./qemu/e2e -args -target $(TARGET) -accel $(ACCEL) -soak $(DURATION)

# Host tests under the race detector; the allocation tests (*Allocs*)
# count allocations, which -race perturbs, so they run without it.
test-host: vet
	$(GO) test -race -count=1 -timeout 40m -skip Allocs ./...
	$(GO) test -count=1 -timeout 10m -run Allocs ./...
	./.ci/fuzz.sh $(CI_FUZZTIME)

# Everything, in .ci/test.sh: stops at once, saying how to fix it, when the
# firmware cannot be built or booted here; otherwise runs every step and
# ends with "N passed, N failed, N skipped".
test:
	GO=$(GO) ACCEL=$(ACCEL) CI_FUZZTIME=$(CI_FUZZTIME) ./.ci/test.sh

# Host benchmarks (internal/baseline: tamanet against the TamaGo channel
# endpoint path, side by side), the system benchmark under QEMU, then the
# same measurements for tamanet and the baseline firmware (cmd/baseline) on
# mcimx6ul-evk, one table.
bench: deps
	@mkdir -p $(BUILD)
	$(GO) test -run '^$$' -bench . -benchmem -count $(BENCHCOUNT) ./alloc ./nic/... ./stack/... ./internal/baseline | tee $(BUILD)/bench-host.txt
	$(GO) run ./internal/benchsummary < $(BUILD)/bench-host.txt
	$(GO) test -count=1 -timeout 30m -v -run '^TestSystemBenchmark$$' ./qemu/e2e -args -target $(TARGET) -accel $(ACCEL) -bench
	$(GO) test -count=1 -timeout 30m -v -run '^TestCompare$$' ./qemu/e2e -args -compare -accel $(ACCEL)
	$(MAKE) --no-print-directory linux-bench

# tamanet against a Linux guest on the same QEMU machine and NIC (qemu/e2e
# TestLinuxCompare), on each of LINUXTARGETS: the images boot alternately,
# LINUXROUNDS times, LINUXRUNS measurements per boot; medians and ratios
# tamanet/Linux, and an offloads on/off A/B: Linux with QEMU's virtio-net
# offloads off (microvm) and the tamanet image built with OFFLOADS=off. The ARM kernel takes about 25 s to
# boot under TCG, more on a busy host: hence the longer boot timeout.
LINUXTARGETS ?= microvm mx6ullevk
LINUXROUNDS  ?= 3
LINUXRUNS    ?= 2
linux-bench: deps linuxguest
	for t in $(LINUXTARGETS); do \
	  $(MAKE) --no-print-directory build TARGET=$$t OFFLOADS=off IMAGE=$(BUILD)/tamanet-$$t-offloads-off || exit 1; \
	  $(GO) test -count=1 -timeout 120m -v -run '^TestLinuxCompare$$' ./qemu/e2e -args -linux -linux-target $$t \
	    -linux-rounds $(LINUXROUNDS) -compare-runs $(LINUXRUNS) -accel $(ACCEL) -boot-timeout 3m \
	    -image-b $(CURDIR)/$(BUILD)/tamanet-$$t-offloads-off -label-b 'tamanet OFFLOADS=off' || exit 1; \
	done

# The Linux guests (qemu/linuxguest): Debian's kernel, busybox-static and
# cmd/linuxguest; the packages are downloaded on first use (as root, armhf
# is added to dpkg's architectures for mx6ullevk) and cached.
linuxguest:
	for t in $(LINUXTARGETS); do $(GO) run ./qemu/cmd/linuxguest -target $$t >/dev/null || exit 1; done

# A/B of two firmware images for TARGET in one run: TestSystemBenchmark boots
# image A, then B, ROUNDS times (five measurements per boot), so both see the
# same host load; benchsummary prints each image's medians over every run.
# B defaults to the image built from this tree: make ab A=old/tamanet-microvm
# C and D, when set, join the rotation.
A      ?=
B      ?= $(IMAGE)
# The test runs in qemu/e2e: every image path is made absolute.
abimg   = $(abspath $(1))
C      ?=
D      ?=
ROUNDS ?= 3
comma  := ,
ab: deps build
	@test -n "$(A)" || { echo "ab: set A=path/to/image (B defaults to $(IMAGE))"; exit 1; }
	@mkdir -p $(BUILD)
	@: > $(BUILD)/ab-$(TARGET).txt
	for i in $$(seq $(ROUNDS)); do for ab in A=$(call abimg,$(A)) B=$(call abimg,$(B)) $(if $(C),C=$(call abimg,$(C))) $(if $(D),D=$(call abimg,$(D))); do \
	  $(GO) test -count=1 -timeout 30m -v -run '^TestSystemBenchmark$$' ./qemu/e2e -args -target $(TARGET) -accel $(ACCEL) -bench -image $${ab#*=} -label $${ab%%=*} >$(BUILD)/ab-run.txt 2>&1; \
	  rc=$$?; cat $(BUILD)/ab-run.txt | tee -a $(BUILD)/ab-$(TARGET).txt; [ $$rc = 0 ] || exit $$rc; \
	done; done
	@echo "A = $(A), B = $(B)$(if $(C),$(comma) C = $(C))$(if $(D),$(comma) D = $(D))"
	$(GO) run ./internal/benchsummary < $(BUILD)/ab-$(TARGET).txt

# The guest profiler (qemu/cmd/tamanet-profile): boots the image under QEMU
# with its gdb stub on a unix socket, runs WORKLOAD from the namespace for
# PROFILE_SECONDS while it stops the guest PROFILE_HZ times a second to read
# its registers and stack, symbolizes with the unstripped twin
# ($(SYMIMAGE)) and writes build/profile-TARGET-WORKLOAD.pb.gz, then prints
# the top entries. make profile TARGET=microvm WORKLOAD=tx
WORKLOAD        ?= tx
PROFILE_SECONDS ?= 20
PROFILE_HZ      ?= 100
PROFILE_OUT     := $(BUILD)/profile-$(TARGET)-$(WORKLOAD).pb.gz
profile: deps build $(SYMIMAGE)
	$(GO) run ./qemu/cmd/tamanet-profile -target $(TARGET) -image $(IMAGE) -symbols $(SYMIMAGE) -accel $(ACCEL) \
	  -workload $(WORKLOAD) -seconds $(PROFILE_SECONDS) -hz $(PROFILE_HZ) -o $(PROFILE_OUT)
	$(GO) tool pprof -top -nodecount=25 $(PROFILE_OUT)

# Runs every fuzz target for FUZZTIME each.
FUZZTIME ?= 10s
fuzz:
	@./.ci/fuzz.sh $(FUZZTIME)

# Installs QEMU and the network tools with apt-get when run as root and they
# are missing; otherwise says what is missing.
deps:
	@./qemu/deps.sh

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt: files above need formatting"; exit 1; }

clean:
	rm -rf $(BUILD)

FORCE:
