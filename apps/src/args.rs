//! `key=value` app arguments.

use kernel::exit::status;

/// Returns the value of `cpu=N` (default 0), or logs why it is invalid.
pub fn target_cpu(args: &[&str]) -> Result<usize, u8> {
    let mut cpu = 0;
    for arg in args {
        match arg.split_once('=') {
            Some(("cpu", n)) => match n.parse::<usize>() {
                Ok(n) if kernel::smp::is_online(n) => cpu = n,
                _ => {
                    log::error!(
                        "bad `{arg}`: expected cpu=N with N an online CPU (0..{})",
                        kernel::smp::online_count()
                    );
                    return Err(status::USAGE);
                }
            },
            _ => {
                log::error!("unknown argument `{arg}`; valid: cpu=N");
                return Err(status::USAGE);
            }
        }
    }
    Ok(cpu)
}
