//! Deliberately panics to exercise the panic path on any CPU.

use crate::args::target_cpu;

pub fn main(args: &[&str]) -> u8 {
    let cpu = match target_cpu(args) {
        Ok(cpu) => cpu,
        Err(code) => return code,
    };
    kernel::smp::run_on(cpu, &|cpu| {
        panic!("deliberate panic requested by app=panic on CPU {cpu}")
    });
    log::error!("the panic on CPU {cpu} did not end the run");
    kernel::exit::status::FAILURE
}
