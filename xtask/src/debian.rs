//! Debian packages of a foreign architecture, fetched with the ordinary apt
//! client from the mirror the machine already uses: name resolution, download
//! (`apt-get download`), extraction (`dpkg-deb -x`) and the closure of the
//! shared libraries a binary needs.
//!
//! # Finding the libraries a binary needs
//! For packages that are not installed there is no `dpkg -S`, and `apt-file`
//! would download the whole contents index of the architecture. The method
//! here relies on what `dpkg-shlibdeps` guarantees instead: a package that
//! ships an ELF depends on the package of every library that ELF needs
//! (NEEDED), unless the library ships in the package itself. So, starting
//! from the binary:
//!
//! 1. read NEEDED of each ELF reached so far (`aarch64-linux-gnu-readelf -d`),
//!    and look each name up in the libraries of the packages extracted so far
//!    ([`LibIndex`]); follow the ones found ([`walk`]);
//! 2. for the names still missing, fetch the dependencies of the packages
//!    whose ELFs need them, library packages first ([`next_packages`]);
//! 3. repeat until nothing is missing; a name that no dependency provides is
//!    an error, never skipped.
//!
//! For `qemu-system-arm` on bookworm this takes four rounds and ends with 50
//! libraries from 45 packages.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::cmd;
use crate::progress::{self, Step};

/// The readelf that reads the NEEDED entries of arm64 binaries (Debian
/// package `binutils-aarch64-linux-gnu`).
pub const READELF: &str = "aarch64-linux-gnu-readelf";

/// Where packages keep the shared libraries a binary may load by name
/// (Debian's multiarch directories and the traditional ones), relative to
/// the package root. Only files directly inside count.
const LIB_DIRS: &[&str] = &[
    "lib/aarch64-linux-gnu",
    "usr/lib/aarch64-linux-gnu",
    "lib",
    "usr/lib",
];

/// True when this process runs as root (and so may change apt's setup).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Makes sure apt knows the packages of the foreign architecture `arch`:
/// `dpkg --add-architecture` and `apt-get update` when it is not added yet,
/// or when apt has no package lists for it. `probe` is a package of that
/// architecture that must be known afterwards.
pub fn ensure_architecture(arch: &str, probe: &str) -> Result<()> {
    let foreign = cmd::output(Command::new("dpkg").arg("--print-foreign-architectures"))
        .context("dpkg is needed to fetch Debian packages")?;
    let added = foreign.lines().any(|line| line.trim() == arch);
    if added && is_known(&format!("{probe}:{arch}"))? {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "apt does not know the {arch} packages yet; as root, run \
             `dpkg --add-architecture {arch} && apt-get update` (./run.sh install does it)"
        );
    }
    if !added {
        cmd::run(
            Command::new("dpkg")
                .args(["--add-architecture", arch])
                .stdout(io::stderr()),
        )?;
    }
    update()?;
    if !is_known(&format!("{probe}:{arch}"))? {
        bail!("apt still does not know {probe}:{arch} after `apt-get update`: does the mirror serve {arch}?");
    }
    Ok(())
}

/// `apt-get update` (as root only).
pub fn update() -> Result<()> {
    cmd::run(
        Command::new("apt-get")
            .args(["-q", "update"])
            .stdout(io::stderr()),
    )
}

/// Whether apt has a candidate for `package` (`name:arch`).
fn is_known(package: &str) -> Result<bool> {
    let mut cmd = Command::new("apt-cache");
    cmd.args(["show", "--no-all-versions", package]);
    let out = cmd::output_unchecked(&mut cmd)?;
    Ok(out.status.success() && !out.stdout.is_empty())
}

/// The package a metapackage's candidate depends on whose name matches
/// `prefix*suffix` (e.g. `linux-image-6.1.0-56-cloud-arm64` for
/// `linux-image-cloud-arm64`, what `apt-cache depends` would show): the
/// mirror replaces versions over time, so the name is resolved on every
/// preparation, never pinned.
pub fn dependency_matching(meta: &PackageInfo, prefix: &str, suffix: &str) -> Result<String> {
    meta.depends
        .iter()
        .find(|name| {
            name.len() > prefix.len() + suffix.len()
                && name.starts_with(prefix)
                && name.ends_with(suffix)
        })
        .cloned()
        .with_context(|| {
            format!(
                "{} {} depends on no {prefix}*{suffix} package (it depends on {:?})",
                meta.name, meta.version, meta.depends
            )
        })
}

/// What `apt-cache show` says about the candidate version of a package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageInfo {
    pub name: String,
    pub version: String,
    /// `arm64`, or `all` for architecture-independent packages.
    pub architecture: String,
    /// Names from `Pre-Depends` and `Depends`: the first of each set of
    /// alternatives, without versions or `:any`.
    pub depends: Vec<String>,
}

impl PackageInfo {
    /// The file name `apt-get download` gives the package's .deb.
    pub fn deb_name(&self) -> String {
        // apt escapes the epoch's colon in file names.
        let version = self.version.replace(':', "%3a");
        format!("{}_{}_{}.deb", self.name, version, self.architecture)
    }
}

/// `apt-cache show --no-all-versions` for the candidates of `names` in
/// architecture `arch`; fails unless every one is found.
pub fn show(names: &[String], arch: &str) -> Result<Vec<PackageInfo>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let mut cmd = Command::new("apt-cache");
    cmd.args(["show", "--no-all-versions"])
        .args(names.iter().map(|n| format!("{n}:{arch}")));
    let infos = parse_packages(&cmd::output(&mut cmd)?);
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !infos.iter().any(|i| &&i.name == n))
        .collect();
    if !missing.is_empty() {
        bail!("apt has no {arch} package named {missing:?}");
    }
    Ok(infos)
}

/// The paragraphs of `apt-cache show` output.
fn parse_packages(text: &str) -> Vec<PackageInfo> {
    let mut infos = Vec::new();
    for paragraph in text.split("\n\n") {
        let mut fields: HashMap<&str, String> = HashMap::new();
        let mut last: Option<&str> = None;
        for line in paragraph.lines() {
            if line.starts_with([' ', '\t']) {
                // A continuation line (long descriptions, folded fields).
                if let Some(value) = last.and_then(|key| fields.get_mut(key)) {
                    value.push(' ');
                    value.push_str(line.trim());
                }
            } else if let Some((key, value)) = line.split_once(':') {
                fields.insert(key, value.trim().to_owned());
                last = Some(key);
            }
        }
        let field = |key: &str| fields.get(key).cloned().unwrap_or_default();
        let name = field("Package");
        if name.is_empty() {
            continue;
        }
        let mut depends = parse_depends(&field("Pre-Depends"));
        depends.extend(parse_depends(&field("Depends")));
        infos.push(PackageInfo {
            name,
            version: field("Version"),
            architecture: field("Architecture"),
            depends,
        });
    }
    infos
}

/// The package names of a `Depends` field: the first alternative of each
/// entry, without version constraints or architecture qualifiers.
fn parse_depends(field: &str) -> Vec<String> {
    field
        .split(',')
        .filter_map(|entry| {
            let first = entry.split('|').next()?;
            let name = first.split('(').next()?.trim();
            let name = name.split(':').next()?.trim();
            (!name.is_empty()).then(|| name.to_owned())
        })
        .collect()
}

/// `apt-get download` failed: often because apt's lists name versions the
/// mirror has since replaced (`apt-get update` fixes that).
#[derive(Debug)]
pub struct DownloadFailed(String);

impl std::fmt::Display for DownloadFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DownloadFailed {}

/// Packages of one architecture, downloaded into `debs` (kept between runs:
/// a .deb already there is not fetched again) and extracted, one directory
/// each, under `extracted`.
pub struct Fetcher {
    arch: String,
    debs: PathBuf,
    extracted: PathBuf,
    /// What has been fetched, by name.
    packages: BTreeMap<String, PackageInfo>,
}

impl Fetcher {
    pub fn new(arch: &str, debs: PathBuf, extracted: PathBuf) -> Result<Self> {
        for dir in [&debs, &extracted] {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(Fetcher {
            arch: arch.to_owned(),
            debs,
            extracted,
            packages: BTreeMap::new(),
        })
    }

    /// Downloads (when not there yet) and extracts `names`.
    pub fn fetch(&mut self, names: &[String]) -> Result<Vec<PackageInfo>> {
        let names: Vec<String> = names
            .iter()
            .filter(|n| !self.packages.contains_key(*n))
            .cloned()
            .collect();
        let infos = show(&names, &self.arch)?;
        let to_download: Vec<String> = infos
            .iter()
            .filter(|info| !self.debs.join(info.deb_name()).is_file())
            .map(|info| format!("{}:{}", info.name, self.arch))
            .collect();
        // A line of its own under the caller's on a terminal: the packages
        // downloaded (apt's `Get:N` lines), then extracted, of how many.
        let mut step = Step::new(&format!("apt {}", self.arch));
        if !to_download.is_empty() {
            let mut download = Command::new("apt-get");
            download.arg("-q");
            if is_root() {
                // apt drops to the `_apt` user to download, which may not
                // write here; say that root is meant instead of a warning.
                download.args(["-o", "APT::Sandbox::User=root"]);
            }
            // Its progress goes to stderr (or the live line): stdout is
            // for the guest's console.
            download
                .arg("download")
                .args(&to_download)
                .current_dir(&self.debs);
            step.message("downloading");
            let total = to_download.len() as u64;
            let mut got = 0;
            step.run(&mut download, None, |line| {
                progress::apt_fetch(line).then(|| {
                    got += 1;
                    (got, Some(total))
                })
            })
            .map_err(|e| DownloadFailed(format!("{e:#}")))?;
        }
        step.message("extracting");
        for (done, info) in infos.iter().enumerate() {
            step.count(done as u64, Some(infos.len() as u64), None);
            let deb = self.debs.join(info.deb_name());
            if !deb.is_file() {
                bail!("`apt-get download` did not write {}", deb.display());
            }
            let dir = self.dir(&info.name);
            if dir.exists() {
                fs::remove_dir_all(&dir)?;
            }
            cmd::run(
                Command::new("dpkg-deb")
                    .arg("-x")
                    .arg(&deb)
                    .arg(&dir)
                    .stdout(io::stderr()),
            )?;
            self.packages.insert(info.name.clone(), info.clone());
        }
        Ok(infos)
    }

    /// Where package `name` is (or will be) extracted.
    pub fn dir(&self, name: &str) -> PathBuf {
        self.extracted.join(name)
    }

    /// Everything fetched so far.
    pub fn packages(&self) -> &BTreeMap<String, PackageInfo> {
        &self.packages
    }

    /// Deletes the .debs in the download directory that were not used by
    /// this fetcher (older versions the mirror has replaced).
    pub fn prune_downloads(&self) -> Result<()> {
        let used: BTreeSet<String> = self.packages.values().map(|i| i.deb_name()).collect();
        for entry in fs::read_dir(&self.debs)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".deb") && !used.contains(&name) {
                fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }
}

/// The shared libraries found so far: file name (as NEEDED names it) to the
/// package and the file (symbolic links followed inside the package).
#[derive(Default)]
pub struct LibIndex {
    libs: BTreeMap<String, (String, PathBuf)>,
}

impl LibIndex {
    /// Adds the libraries of `package`, extracted at `root`.
    pub fn add_package(&mut self, package: &str, root: &Path) -> Result<()> {
        for dir in LIB_DIRS {
            let dir = root.join(dir);
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
            };
            for entry in entries {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if !name.contains(".so") {
                    continue;
                }
                // A dangling link (to a file of another package) is no library.
                if let Some(file) = resolve_in(root, &entry.path())? {
                    if file.is_file() {
                        self.insert(&name, package, file);
                    }
                }
            }
        }
        Ok(())
    }

    fn insert(&mut self, name: &str, package: &str, file: PathBuf) {
        self.libs
            .entry(name.to_owned())
            .or_insert_with(|| (package.to_owned(), file));
    }

    fn get(&self, name: &str) -> Option<&(String, PathBuf)> {
        self.libs.get(name)
    }
}

/// Follows symbolic links from `path` as the extracted package at `root`
/// would resolve them when installed (an absolute target is inside `root`).
/// `None` when a link leads outside the package.
fn resolve_in(root: &Path, path: &Path) -> Result<Option<PathBuf>> {
    let mut path = path.to_owned();
    for _ in 0..16 {
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        if !meta.file_type().is_symlink() {
            return Ok(Some(path));
        }
        let target = fs::read_link(&path)?;
        path = if target.is_absolute() {
            root.join(target.strip_prefix("/").expect("absolute"))
        } else {
            path.parent().expect("a link has a parent").join(target)
        };
    }
    bail!("{}: too many levels of symbolic links", path.display())
}

/// The NEEDED names of ELF files, in one call: `files` to their NEEDED.
pub type NeededOf<'a> = dyn FnMut(&[PathBuf]) -> Result<HashMap<PathBuf, Vec<String>>> + 'a;

/// Where following NEEDED from the roots led.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Walk {
    /// Every library reached: NEEDED name to the file in its package.
    pub found: BTreeMap<String, PathBuf>,
    /// Names not in the index, each with the packages whose ELFs need it.
    pub missing: BTreeMap<String, BTreeSet<String>>,
}

/// Follows NEEDED from `roots` (package, ELF file) through `index`,
/// breadth first, asking `needed` once per level.
pub fn walk(roots: &[(String, PathBuf)], index: &LibIndex, needed: &mut NeededOf) -> Result<Walk> {
    let mut result = Walk::default();
    let mut level: Vec<(String, PathBuf)> = roots.to_vec();
    while !level.is_empty() {
        let files: Vec<PathBuf> = level.iter().map(|(_, f)| f.clone()).collect();
        let mut names = needed(&files)?;
        let mut next = Vec::new();
        for (package, file) in &level {
            for name in names.remove(file).unwrap_or_default() {
                if result.found.contains_key(&name) {
                    continue;
                }
                match index.get(&name) {
                    Some((owner, lib)) => {
                        result.found.insert(name, lib.clone());
                        next.push((owner.clone(), lib.clone()));
                    }
                    None => {
                        result
                            .missing
                            .entry(name)
                            .or_default()
                            .insert(package.clone());
                    }
                }
            }
        }
        level = next;
    }
    Ok(result)
}

/// The packages to fetch next for the `missing` libraries: the dependencies
/// of the packages that need them, minus those already `fetched`. Library
/// packages (named `lib*`, `zlib*`) only, while there are any: the other
/// dependencies (data, helpers) rarely ship a library and can be large.
pub fn next_packages(
    missing: &BTreeMap<String, BTreeSet<String>>,
    depends: &BTreeMap<String, PackageInfo>,
    fetched: &BTreeSet<String>,
) -> Vec<String> {
    let candidates: BTreeSet<&String> = missing
        .values()
        .flatten()
        .filter_map(|owner| depends.get(owner))
        .flat_map(|info| &info.depends)
        .filter(|dep| !fetched.contains(*dep))
        .collect();
    let is_lib = |name: &&&String| name.starts_with("lib") || name.starts_with("zlib");
    let libs: Vec<String> = candidates
        .iter()
        .filter(is_lib)
        .map(|s| s.to_string())
        .collect();
    if libs.is_empty() {
        candidates.into_iter().cloned().collect()
    } else {
        libs
    }
}

/// The shared libraries `binary` (in package `package`, already fetched)
/// needs, transitively, fetching the packages that provide them. Returns
/// NEEDED name to file.
pub fn library_closure(
    fetcher: &mut Fetcher,
    package: &str,
    binary: &Path,
) -> Result<BTreeMap<String, PathBuf>> {
    let mut index = LibIndex::default();
    for name in fetcher.packages().keys() {
        index.add_package(name, &fetcher.dir(name))?;
    }
    let mut cache: HashMap<PathBuf, Vec<String>> = HashMap::new();
    let mut needed = |files: &[PathBuf]| -> Result<HashMap<PathBuf, Vec<String>>> {
        let new: Vec<PathBuf> = files
            .iter()
            .filter(|f| !cache.contains_key(*f))
            .cloned()
            .collect();
        cache.extend(readelf_needed(&new)?);
        Ok(files
            .iter()
            .map(|f| (f.clone(), cache.get(f).cloned().unwrap_or_default()))
            .collect())
    };
    let roots = [(package.to_owned(), binary.to_owned())];
    loop {
        let walked = walk(&roots, &index, &mut needed)?;
        if walked.missing.is_empty() {
            return Ok(walked.found);
        }
        let fetched: BTreeSet<String> = fetcher.packages().keys().cloned().collect();
        let next = next_packages(&walked.missing, fetcher.packages(), &fetched);
        if next.is_empty() {
            bail!(
                "no dependency of the packages that need them provides {:?}",
                walked.missing
            );
        }
        for info in fetcher.fetch(&next)? {
            index.add_package(&info.name, &fetcher.dir(&info.name))?;
        }
    }
}

/// NEEDED of each of `files`, from one `readelf -d` call.
fn readelf_needed(files: &[PathBuf]) -> Result<HashMap<PathBuf, Vec<String>>> {
    if files.is_empty() {
        return Ok(HashMap::new());
    }
    let mut cmd = Command::new(READELF);
    cmd.arg("-d").args(files);
    let out = cmd::output(&mut cmd).with_context(|| {
        format!("{READELF} is missing? it is in Debian package binutils-aarch64-linux-gnu (./run.sh install adds it)")
    })?;
    let sections = parse_readelf(&out);
    let mut needed = HashMap::new();
    for file in files {
        // With a single file readelf prints no `File:` header.
        let key = if files.len() == 1 {
            String::new()
        } else {
            file.to_string_lossy().into_owned()
        };
        needed.insert(
            file.clone(),
            sections.get(&key).cloned().unwrap_or_default(),
        );
    }
    Ok(needed)
}

/// `readelf -d` output: the NEEDED names under each `File: PATH` header
/// (under "" before any header).
fn parse_readelf(output: &str) -> HashMap<String, Vec<String>> {
    let mut sections: HashMap<String, Vec<String>> = HashMap::new();
    let mut file = String::new();
    for line in output.lines() {
        if let Some(path) = line.strip_prefix("File: ") {
            file = path.trim().to_owned();
            sections.entry(file.clone()).or_default();
        } else if line.contains("(NEEDED)") {
            if let Some(name) = line
                .split_once("Shared library: [")
                .and_then(|(_, rest)| rest.split_once(']'))
                .map(|(name, _)| name)
            {
                sections
                    .entry(file.clone())
                    .or_default()
                    .push(name.to_owned());
            }
        }
    }
    sections
}

#[cfg(test)]
mod tests;
