use super::*;

#[test]
fn metapackage_target() {
    let text = "Package: linux-image-cloud-arm64\nSource: linux-signed-arm64 (6.1.192+2)\n\
                Version: 6.1.192-2\nArchitecture: arm64\n\
                Depends: linux-image-6.1.0-56-cloud-arm64 (= 6.1.192-2)\n";
    let meta = &parse_packages(text)[0];
    assert_eq!(
        dependency_matching(meta, "linux-image-", "-cloud-arm64").unwrap(),
        "linux-image-6.1.0-56-cloud-arm64"
    );
    // Other dependencies, and the metapackage's own name, do not match.
    let text = "Package: linux-image-cloud-arm64\nVersion: 6.12.9-1~bpo12+1\n\
                Depends: linux-base, linux-image-cloud-arm64, linux-image-6.12.9+bpo-cloud-arm64:arm64\n";
    let meta = &parse_packages(text)[0];
    assert_eq!(
        dependency_matching(meta, "linux-image-", "-cloud-arm64").unwrap(),
        "linux-image-6.12.9+bpo-cloud-arm64"
    );
    let text = "Package: linux-image-cloud-arm64\nVersion: 1\nDepends: linux-base\n";
    let err =
        dependency_matching(&parse_packages(text)[0], "linux-image-", "-cloud-arm64").unwrap_err();
    assert!(
        err.to_string()
            .contains("no linux-image-*-cloud-arm64 package"),
        "{err}"
    );
}

#[test]
fn packages_and_depends() {
    let text = "Package: qemu-system-arm\nVersion: 1:7.2+dfsg-7+deb12u18+b3\nArchitecture: arm64\n\
                Depends: libaio1 (>= 0.3.93), libc6 (>= 2.34), default-dbus | dbus:any,\n libz1:any (>= 1)\n\
                Description: QEMU\n long text: with a colon\n\n\
                Package: libc6\nVersion: 2.36-9\nArchitecture: arm64\nPre-Depends: libgcc-s1\n";
    let infos = parse_packages(text);
    assert_eq!(infos.len(), 2);
    assert_eq!(infos[0].name, "qemu-system-arm");
    assert_eq!(infos[0].version, "1:7.2+dfsg-7+deb12u18+b3");
    assert_eq!(
        infos[0].depends,
        ["libaio1", "libc6", "default-dbus", "libz1"]
    );
    assert_eq!(
        infos[0].deb_name(),
        "qemu-system-arm_1%3a7.2+dfsg-7+deb12u18+b3_arm64.deb"
    );
    assert_eq!(infos[1].depends, ["libgcc-s1"]);
    assert_eq!(parse_depends(""), Vec::<String>::new());
}

#[test]
fn readelf_sections() {
    let one = "\nDynamic section at offset 0x1 contains 3 entries:\n  Tag Type Name/Value\n \
               0x0000000000000001 (NEEDED)             Shared library: [libz.so.1]\n \
               0x000000000000000e (SONAME)             Library soname: [libfoo.so.1]\n \
               0x0000000000000001 (NEEDED)             Shared library: [libc.so.6]\n";
    assert_eq!(parse_readelf(one)[""], ["libz.so.1", "libc.so.6"]);
    let two = "\nFile: a/libc.so.6\n\n 0x1 (NEEDED) Shared library: [ld-linux-aarch64.so.1]\n\
               \nFile: b/busybox\n\nThere is no dynamic section in this file.\n";
    let sections = parse_readelf(two);
    assert_eq!(sections["a/libc.so.6"], ["ld-linux-aarch64.so.1"]);
    assert!(sections["b/busybox"].is_empty());
}

fn index(entries: &[(&str, &str)]) -> LibIndex {
    let mut index = LibIndex::default();
    for (name, package) in entries {
        index.insert(name, package, PathBuf::from(format!("{package}/{name}")));
    }
    index
}

fn fake_needed(
    graph: &'static [(&'static str, &'static [&'static str])],
) -> impl FnMut(&[PathBuf]) -> Result<HashMap<PathBuf, Vec<String>>> {
    move |files| {
        Ok(files
            .iter()
            .map(|f| {
                let key = f.to_string_lossy();
                let names = graph
                    .iter()
                    .find(|(file, _)| *file == key)
                    .map(|(_, names)| names.iter().map(|s| s.to_string()).collect())
                    .unwrap_or_default();
                (f.clone(), names)
            })
            .collect())
    }
}

const GRAPH: &[(&str, &[&str])] = &[
    ("qemu/qemu", &["libz.so.1", "libglib.so.0", "libc.so.6"]),
    ("zlib1g/libz.so.1", &["libc.so.6"]),
    ("libglib/libglib.so.0", &["libpcre.so.3", "libc.so.6"]),
    ("libc6/libc.so.6", &["ld.so.1"]),
    ("libc6/ld.so.1", &[]),
];

#[test]
fn walk_follows_needed_and_reports_owners_of_missing_names() {
    let roots = [("qemu".to_string(), PathBuf::from("qemu/qemu"))];
    let mut needed = fake_needed(GRAPH);
    let partial = index(&[
        ("libc.so.6", "libc6"),
        ("ld.so.1", "libc6"),
        ("libglib.so.0", "libglib"),
    ]);
    let walked = walk(&roots, &partial, &mut needed).unwrap();
    assert_eq!(
        walked.found.keys().collect::<Vec<_>>(),
        ["ld.so.1", "libc.so.6", "libglib.so.0"]
    );
    assert_eq!(
        walked.missing["libz.so.1"],
        BTreeSet::from(["qemu".to_string()])
    );
    assert_eq!(
        walked.missing["libpcre.so.3"],
        BTreeSet::from(["libglib".to_string()])
    );

    let full = index(&[
        ("libc.so.6", "libc6"),
        ("ld.so.1", "libc6"),
        ("libglib.so.0", "libglib"),
        ("libz.so.1", "zlib1g"),
        ("libpcre.so.3", "libpcre"),
    ]);
    let walked = walk(&roots, &full, &mut needed).unwrap();
    assert!(walked.missing.is_empty());
    assert_eq!(walked.found.len(), 5);
    assert_eq!(walked.found["libz.so.1"], Path::new("zlib1g/libz.so.1"));
}

#[test]
fn next_packages_prefers_libraries() {
    let info = |name: &str, depends: &[&str]| PackageInfo {
        name: name.into(),
        version: "1".into(),
        architecture: "arm64".into(),
        depends: depends.iter().map(|s| s.to_string()).collect(),
    };
    let depends = BTreeMap::from([
        (
            "qemu".to_string(),
            info("qemu", &["libc6", "zlib1g", "qemu-data", "libglib"]),
        ),
        (
            "libglib".to_string(),
            info("libglib", &["libc6", "libpcre", "helper"]),
        ),
    ]);
    let fetched = BTreeSet::from([
        "qemu".to_string(),
        "libc6".to_string(),
        "libglib".to_string(),
    ]);
    let missing = BTreeMap::from([
        (
            "libz.so.1".to_string(),
            BTreeSet::from(["qemu".to_string()]),
        ),
        (
            "libpcre.so.3".to_string(),
            BTreeSet::from(["libglib".to_string()]),
        ),
    ]);
    assert_eq!(
        next_packages(&missing, &depends, &fetched),
        ["libpcre", "zlib1g"]
    );
    // With every library package fetched, the others are tried.
    let fetched: BTreeSet<String> = ["qemu", "libc6", "libglib", "libpcre", "zlib1g"]
        .map(String::from)
        .into();
    assert_eq!(
        next_packages(&missing, &depends, &fetched),
        ["helper", "qemu-data"]
    );
    let fetched: BTreeSet<String> = fetched
        .into_iter()
        .chain(["helper".into(), "qemu-data".into()])
        .collect();
    assert!(next_packages(&missing, &depends, &fetched).is_empty());
}

#[test]
fn links_resolve_inside_the_package() {
    let root = std::env::temp_dir().join(format!("xtask-debian-{}", std::process::id()));
    let lib = root.join("usr/lib/aarch64-linux-gnu");
    fs::create_dir_all(&lib).unwrap();
    fs::write(lib.join("libz.so.1.2.13"), b"ELF").unwrap();
    std::os::unix::fs::symlink("libz.so.1.2.13", lib.join("libz.so.1")).unwrap();
    std::os::unix::fs::symlink(
        "/usr/lib/aarch64-linux-gnu/libz.so.1",
        root.join("usr/lib/libz.so"),
    )
    .unwrap();
    std::os::unix::fs::symlink("libnone.so.1.0", lib.join("libnone.so.1")).unwrap();
    let mut index = LibIndex::default();
    index.add_package("zlib1g", &root).unwrap();
    assert_eq!(
        index.get("libz.so.1").unwrap().1,
        lib.join("libz.so.1.2.13")
    );
    assert_eq!(index.get("libz.so").unwrap().1, lib.join("libz.so.1.2.13"));
    assert!(index.get("libnone.so.1").is_none());
    fs::remove_dir_all(&root).unwrap();
}
