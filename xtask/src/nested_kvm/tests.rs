use super::*;

fn sh(script: &str) -> std::process::Output {
    Command::new("sh").arg("-c").arg(script).output().unwrap()
}

#[test]
fn init_is_valid_shell_that_reads_its_params_and_powers_off() {
    let out = Command::new("sh")
        .args(["-n", "-c", INIT])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(INIT.starts_with("#!/bin/busybox sh\n"));
    for needed in [
        ". /lodger/params",
        "eval \"$QEMU\" </dev/null",
        "kvm-steal-time=$PV",
        "mount -t devtmpfs",
        "poweroff -f",
        "sched/min_granularity_ns",
    ] {
        assert!(INIT.contains(needed), "/init lacks {needed:?}");
    }
    // Every way out of /init after the guest's QEMU powers L1 off.
    assert!(INIT.trim_end().ends_with("\noff"));
    // The guest's QEMU comes from xtask only.
    assert!(!INIT.contains("-accel"));
}

fn boot(bootargs: &str) -> Boot {
    Boot {
        arch: Arch::Aarch64,
        host: crate::host::Host::NestedKvm(Settings::DEFAULT),
        smp: 4,
        mem: crate::qemu::GUEST_MEMORY,
        el2: false,
        image: PathBuf::from("/t/lodger"),
        bootargs: bootargs.into(),
    }
}

#[test]
fn params_survive_the_shell() {
    let settings = Settings {
        pv: Pv::Off,
        l1_load: 3,
    };
    let boot = boot("app=x it's=$HOME -- a \"b c\"");
    let qemu = l2_command_line(&boot, settings, "1:7.2+dfsg-7+deb12u7").unwrap();
    let text = params(settings, 4, &qemu);
    assert!(
        text.starts_with("SMP=4\nPV=off\nL1_LOAD=3\nL1_SLICE_MS=100\nQEMU="),
        "{text}"
    );
    let out = sh(&format!(
        "{text}printf '%s|%s|%s|%s|' \"$SMP\" \"$PV\" \"$L1_LOAD\" \"$L1_SLICE_MS\"; \
         eval \"printf '<%s>' $QEMU\""
    ));
    let words: String = qemu.iter().map(|w| format!("<{w}>")).collect();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("4|off|3|100|{words}")
    );
}

#[test]
fn l1_runs_the_kvm_hosts_command_line() {
    let settings = Settings {
        pv: Pv::Off,
        ..Settings::DEFAULT
    };
    let boot = boot("app=selftest");
    // bookworm's QEMU, L1's.
    let qemu = l2_command_line(&boot, settings, "1:7.2+dfsg-7+deb12u7").unwrap();
    assert_eq!(qemu, kvm::command_line(&boot, Pv::Off, "/lodger/guest"));
    assert_eq!(
        cmd::quote(&qemu),
        "qemu-system-aarch64 -M virt,gic-version=3 -accel kvm -cpu host,kvm-steal-time=off \
         -smp 4 -m 256M -nodefaults -display none -serial stdio -monitor none -no-reboot \
         -kernel /lodger/guest -append app=selftest"
    );
    let err = l2_command_line(&boot, settings, "1:5.0-14").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("L1's qemu-system-arm is QEMU 5.0.0, too old"),
        "{err}"
    );
    assert!(l2_command_line(&boot, settings, "").is_err());
}

#[test]
fn stamp_names_recipe_init_and_packages() {
    let info = |name: &str, version: &str| PackageInfo {
        name: name.into(),
        version: version.into(),
        architecture: "arm64".into(),
        depends: vec![],
    };
    let infos = [
        info(KERNEL_META, "6.1.192-2"),
        info("busybox-static", "1:1.35"),
    ];
    let a = stamp("linux-image-6.1.0-56-cloud-arm64", &infos);
    assert!(a.starts_with(&format!("lodger nested-kvm L1, recipe {RECIPE}\ninit ")));
    assert!(a.ends_with(
        "\nkernel linux-image-6.1.0-56-cloud-arm64\nbusybox-static 1:1.35\nlinux-image-cloud-arm64 6.1.192-2\n"
    ));
    assert_ne!(a, stamp("linux-image-6.1.0-57-cloud-arm64", &infos));
    let newer = [
        info(KERNEL_META, "6.1.193-1"),
        info("busybox-static", "1:1.35"),
    ];
    assert_ne!(a, stamp("linux-image-6.1.0-56-cloud-arm64", &newer));
    assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
}

#[test]
fn base_tree_layout() {
    let libs = [
        ("libc.so.6", "/x/libc.so.6"),
        (DYNAMIC_LOADER, "/x/ld-linux-aarch64.so.1"),
        ("libz.so.1", "/x/libz.so.1.2.13"),
    ]
    .map(|(n, f)| (n.to_owned(), PathBuf::from(f)))
    .into();
    let tree = base_tree(Path::new("/b/busybox"), Path::new("/q/qemu"), &libs).unwrap();
    assert_eq!(
        tree.list(),
        [
            "bin",
            "bin/busybox",
            "dev",
            "init",
            "lib",
            "lib/aarch64-linux-gnu",
            "lib/aarch64-linux-gnu/ld-linux-aarch64.so.1",
            "lib/aarch64-linux-gnu/libc.so.6",
            "lib/aarch64-linux-gnu/libz.so.1",
            "lib/ld-linux-aarch64.so.1",
            "proc",
            "sys",
            "tmp",
            "usr",
            "usr/bin",
            "usr/bin/qemu-system-aarch64",
        ]
    );
    let no_loader = [("libc.so.6".to_owned(), PathBuf::from("/x/libc.so.6"))].into();
    assert!(base_tree(Path::new("/b"), Path::new("/q"), &no_loader).is_err());
}

#[test]
fn run_tree_holds_guest_and_params() {
    let boot = boot("app=selftest");
    let tree = run_tree(&boot, Settings::DEFAULT, &["q".into()]).unwrap();
    assert_eq!(tree.list(), ["lodger", "lodger/guest", "lodger/params"]);
}
