//! Deliberately reads an unmapped address to exercise the fault report.

use crate::args::target_cpu;

/// 256 GiB: inside the 39-bit (aarch64) address space, never mapped.
const UNMAPPED: usize = 0x40_0000_0000;

pub fn main(args: &[&str]) -> u8 {
    let cpu = match target_cpu(args) {
        Ok(cpu) => cpu,
        Err(code) => return code,
    };
    log::info!("reading unmapped address {UNMAPPED:#x} on CPU {cpu}");
    kernel::smp::run_on(cpu, &|_| {
        let value = kernel::mm::probe_read(UNMAPPED);
        log::error!("read {value:#x} from an unmapped address without a fault");
    });
    kernel::exit::status::FAILURE
}
