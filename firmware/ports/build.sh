#!/usr/bin/env bash
# Builds the bare-metal firmware images into the cargo target directory, where the platform
# plugins look for them: QEMU's Cortex-M (plain and DSP kernels), RV64GC and RV32IMAFC boards;
# the silicon ports stm32 (F405, which the `qemu` plugin also runs on netduinoplus2; F411,
# F746, H743), rp2040 (RP2040, RP2350), nrf52 (nRF52840), esp32 (ESP32-C3) and riscv (K210, BL602).
# The ESP32-S3 (Xtensa) needs Espressif's toolchain and is not built here (docs/platforms.md).
# Needs: rustup target add thumbv7em-none-eabihf thumbv6m-none-eabi thumbv8m.main-none-eabihf riscv64gc-unknown-none-elf riscv32imafc-unknown-none-elf riscv32imc-unknown-none-elf riscv32imac-unknown-none-elf
# With --check, also lints each image (clippy -D warnings) and checks its formatting.
set -euo pipefail
cd "$(dirname "$0")/../.."
target="${CARGO_TARGET_DIR:-$PWD/target}"
check=0
[ "${1:-}" = "--check" ] && check=1

build() { # port, rust target, target dir, extra args…
  local port=$1 rt=$2 dir=$3
  shift 3
  local args=(--release --manifest-path "firmware/ports/$port/Cargo.toml" --target "$rt" --target-dir "$dir" "$@")
  echo "building $port for $rt${*:+ ($*)}"
  cargo build --quiet "${args[@]}"
  if [ $check = 1 ]; then
    cargo clippy --quiet "${args[@]}" -- -D warnings
    cargo fmt --manifest-path "firmware/ports/$port/Cargo.toml" -- --check
  fi
}

if [ $check = 1 ]; then
  # The Cortex-M ports' shared start-up library, linted on its own.
  cargo clippy --quiet --manifest-path firmware/ports/cortex-m-start/Cargo.toml --target thumbv7em-none-eabihf --target-dir "$target" -- -D warnings
  cargo fmt --manifest-path firmware/ports/cortex-m-start/Cargo.toml -- --check
  cargo clippy --quiet --manifest-path firmware/ports/riscv-start/Cargo.toml --target riscv32imc-unknown-none-elf --target-dir "$target" -- -D warnings
  cargo fmt --manifest-path firmware/ports/riscv-start/Cargo.toml -- --check
fi
build qemu-mps2 thumbv7em-none-eabihf "$target"
build qemu-mps2 thumbv7em-none-eabihf "$target/fw-dsp" --features dsp
build stm32 thumbv7em-none-eabihf "$target"
build stm32 thumbv7em-none-eabihf "$target/fw-stm32f411" --no-default-features --features f411
build stm32 thumbv7em-none-eabihf "$target/fw-stm32f746" --no-default-features --features f746
build stm32 thumbv7em-none-eabihf "$target/fw-stm32h743" --no-default-features --features h743
build rp2040 thumbv6m-none-eabi "$target"
build rp2040 thumbv8m.main-none-eabihf "$target/fw-rp2350" --no-default-features --features rp2350
build nrf52 thumbv7em-none-eabihf "$target"
build esp32 riscv32imc-unknown-none-elf "$target"
build riscv riscv64gc-unknown-none-elf "$target"
build riscv riscv32imac-unknown-none-elf "$target/fw-bl602" --no-default-features --features bl602
build qemu-riscv riscv64gc-unknown-none-elf "$target"
build qemu-riscv riscv32imafc-unknown-none-elf "$target"
echo "images are in $target (variants in $target/fw-dsp, fw-stm32f411, fw-stm32f746, fw-stm32h743, fw-rp2350, fw-bl602)"
