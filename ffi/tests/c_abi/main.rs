//! The C ABI seen from C: `madang.h` compiled by the system C compiler with warnings as
//! errors, the example linked against the static and the shared library and run, and the
//! header checked against the exported symbols and result codes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use madang_ffi::madang_result;

mod client;

/// Tests that keep the cores busy (valgrind, AddressSanitizer, compiling, running clients)
/// share this lock for reading; a test that measures what a network does to media takes it
/// for writing, so that what it measures is the network and not the test runner starving its
/// clients of CPU (under valgrind beside it, a C client on `lte` lost a picture to a late
/// repair; beside the other client runs, a Rust peer decoded 79 of 150 of its pictures).
static CPU: RwLock<()> = RwLock::new(());

/// Held while a test keeps the CPU busy.
fn cpu_heavy() -> RwLockReadGuard<'static, ()> {
    CPU.read().unwrap_or_else(|e| e.into_inner())
}

/// Held while a test measures timing: no CPU-heavy test runs beside it.
fn timing_sensitive() -> RwLockWriteGuard<'static, ()> {
    CPU.write().unwrap_or_else(|e| e.into_inner())
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Directory holding freshly built `libmadang_ffi.{a,so}`: `cargo test` builds only the rlib
/// for integration tests, so this builds the C libraries once, into the same target dir.
fn lib_dir() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().unwrap();
            let profile = exe.parent().unwrap().parent().unwrap().to_path_buf();
            let target = profile.parent().unwrap();
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args([
                "build",
                "--quiet",
                "-p",
                "madang-ffi",
                "--lib",
                "--target-dir",
            ])
            .arg(target)
            .current_dir(workspace());
            if profile.file_name().is_some_and(|p| p == "release") {
                cmd.arg("--release");
            }
            assert!(
                cmd.status().unwrap().success(),
                "building libmadang_ffi failed"
            );
            for lib in ["libmadang_ffi.a", "libmadang_ffi.so"] {
                assert!(
                    profile.join(lib).exists(),
                    "{lib} not in {}",
                    profile.display()
                );
            }
            profile
        })
        .clone()
}

fn header() -> String {
    std::fs::read_to_string(workspace().join("ffi/include/madang.h")).unwrap()
}

fn cc() -> String {
    std::env::var("CC").unwrap_or_else(|_| "cc".into())
}

/// How a C program is linked against madang.
#[derive(Clone, Copy)]
enum Link {
    /// `libmadang_ffi.a` plus the system libraries it needs (openh264 is C++).
    Static,
    /// `-lmadang_ffi` from the build directory; run with `LD_LIBRARY_PATH` set to it.
    Shared,
}

/// Compiles `source` with warnings as errors and `flags`, linked to madang, into `out`.
fn compile(source: &Path, out: &Path, flags: &[&str], link: Link) {
    let dir = lib_dir();
    let mut cmd = Command::new(cc());
    cmd.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-I"])
        .arg(workspace().join("ffi/include"))
        .args(flags)
        .arg(source);
    match link {
        Link::Static => {
            cmd.arg(dir.join("libmadang_ffi.a"))
                .args(["-lstdc++", "-lpthread", "-ldl", "-lm"])
        }
        Link::Shared => cmd
            .arg(format!("-L{}", dir.display()))
            .args(["-lmadang_ffi", "-lm"]),
    };
    let status = cmd
        .arg("-o")
        .arg(out)
        .status()
        .expect("a C compiler (cc) is needed; scripts/setup.sh installs build-essential");
    assert!(
        status.success(),
        "C compile/link of {} failed",
        source.display()
    );
}

fn embed_server_c() -> PathBuf {
    workspace().join("examples/c/embed_server.c")
}

fn tmp(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name)
}

/// `embed_server.c` linked statically, built once for the tests that run it.
fn static_example() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = tmp("embed_server_static");
            compile(&embed_server_c(), &exe, &[], Link::Static);
            exe
        })
        .clone()
}

fn run_example(exe: &Path, env: &[(&str, &Path)]) {
    let mut cmd = Command::new(exe);
    cmd.arg("senior-centers");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "example failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains(&format!("madang {}", env!("CARGO_PKG_VERSION"))),
        "{stdout}"
    );
    assert!(stdout.contains("signal ws://127.0.0.1:"), "{stdout}");
    assert!(stdout.contains("token "), "{stdout}");
    assert!(stdout.contains("participants 0"), "{stdout}");
    assert!(stdout.contains("stopped cleanly"), "{stdout}");
}

#[test]
fn example_links_statically_and_runs() {
    let _cpu = cpu_heavy();
    run_example(&static_example(), &[]);
}

#[test]
fn example_records_into_the_directory_it_names_and_refuses_one_it_cannot_write() {
    let _cpu = cpu_heavy();
    let dir = tmp("embed-recordings");
    let _ = std::fs::remove_dir_all(&dir);
    run_example(&static_example(), &[("MADANG_RECORD_DIR", &dir)]);
    assert!(dir.is_dir(), "the server made its recording directory");
    // A directory under a file cannot be made: the start fails, with its code.
    let blocked = tmp("embed-recordings-blocked");
    std::fs::write(&blocked, b"a file").unwrap();
    let out = Command::new(static_example())
        .arg("senior-centers")
        .env("MADANG_RECORD_DIR", blocked.join("sub"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("start:"), "{stderr}");
}

#[test]
fn example_links_dynamically_and_runs() {
    let _cpu = cpu_heavy();
    let exe = tmp("embed_server_shared");
    compile(&embed_server_c(), &exe, &[], Link::Shared);
    run_example(&exe, &[("LD_LIBRARY_PATH", &lib_dir())]);
}

/// The library's sources (not its unit tests), concatenated.
fn ffi_sources() -> String {
    let mut files: Vec<PathBuf> = std::fs::read_dir(workspace().join("ffi/src"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.ends_with(".rs") && !name.contains("tests")
        })
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every exported function is declared in the header and every declaration is exported.
#[test]
fn header_matches_exported_functions() {
    let src = ffi_sources();
    let mut exported: Vec<String> = src
        .split("#[unsafe(no_mangle)]")
        .skip(1)
        .map(|rest| {
            let after = &rest[rest.find("fn ").unwrap() + 3..];
            after[..after.find('(').unwrap()].to_owned()
        })
        .collect();
    let header = header();
    let mut declared: Vec<String> = header
        .lines()
        .filter(|l| {
            !["*", "/*", "//"]
                .iter()
                .any(|c| l.trim_start().starts_with(c))
        })
        .filter_map(|l| {
            let open = l.find('(')?;
            let name = l[..open].rsplit([' ', '*']).next()?;
            name.starts_with("madang_").then(|| name.to_owned())
        })
        .collect();
    exported.sort();
    declared.sort();
    assert!(!exported.is_empty());
    assert_eq!(exported, declared, "madang.h is out of step with ffi/src");
}

/// Every exported function runs its body inside the panic boundary and is documented with a
/// `# Safety` section when it takes pointers.
#[test]
fn every_export_runs_inside_the_panic_boundary() {
    let src = ffi_sources();
    let exports: Vec<&str> = src.split("#[unsafe(no_mangle)]").skip(1).collect();
    assert!(exports.len() >= 30, "found only {} exports", exports.len());
    for export in exports {
        // The function runs from its signature to the next item.
        let end = export.find("\n}\n").expect("function end");
        let body = &export[..end];
        let name = &body[body.find("fn ").unwrap() + 3..body.find('(').unwrap()];
        assert!(
            body.contains("ffi_boundary") || body.contains("boundary::guard_with"),
            "{name} does not run inside the panic boundary"
        );
        if body.contains("unsafe extern") {
            let docs = src[..src.find(body).unwrap()]
                .rsplit("\n\n")
                .next()
                .unwrap();
            assert!(docs.contains("# Safety"), "{name} lacks a # Safety section");
        }
    }
}

/// The header's result numbers are the library's.
#[test]
fn header_result_codes_match() {
    let header = header();
    for code in madang_result::ALL {
        let needle = format!("{code:?} = {}", code as u32);
        assert!(header.contains(&needle), "madang.h lacks `{needle}`");
    }
    let declared = header
        .lines()
        .filter(|l| l.trim_start().starts_with("MADANG_RESULT_"))
        .count();
    assert_eq!(
        declared,
        madang_result::ALL.len(),
        "madang.h declares a code the library does not have"
    );
}

/// The example under valgrind: no invalid reads or writes, nothing definitely leaked, across
/// start, token minting and shutdown of the server's threads.
#[test]
fn example_is_clean_under_valgrind() {
    let exe = static_example();
    let _cpu = cpu_heavy();
    let out = Command::new("valgrind")
        .args([
            "--error-exitcode=3",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite",
        ])
        .arg(&exe)
        .output()
        .expect("valgrind is needed; scripts/setup.sh installs it");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "valgrind found errors:\n{stderr}");
    assert!(stderr.contains("ERROR SUMMARY: 0 errors"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("stopped cleanly"));
}

/// The example built with AddressSanitizer (and its leak checker): no errors, no leaks.
#[test]
fn example_is_clean_under_address_sanitizer() {
    let exe = tmp("embed_server_asan");
    let asan = ["-fsanitize=address", "-fno-omit-frame-pointer", "-g"];
    compile(&embed_server_c(), &exe, &asan, Link::Static);
    let _cpu = cpu_heavy();
    let out = Command::new(&exe)
        .env("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=3")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "AddressSanitizer found errors:\n{stderr}"
    );
    assert!(!stderr.contains("ERROR: AddressSanitizer"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("stopped cleanly"));
}

/// The README's "Use from C" example compiles as printed and runs.
#[test]
fn readme_example_compiles_and_runs() {
    let _cpu = cpu_heavy();
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let start = readme.find("```c\n").expect("README has a C example") + 5;
    let code = &readme[start..start + readme[start..].find("```").unwrap()];
    let source = tmp("readme_example.c");
    std::fs::write(&source, code).unwrap();
    let exe = tmp("readme_example");
    compile(&source, &exe, &[], Link::Static);
    let out = Command::new(&exe).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert_eq!(stdout, "joined hall as c1\n");
}

/// `scripts/install-c.sh` installs library, header and a `madang.pc` that pkg-config reads and
/// the Makefile builds against (shared and static).
#[test]
fn install_with_pkg_config() {
    let _cpu = cpu_heavy();
    let prefix = tmp("install-prefix");
    let _ = std::fs::remove_dir_all(&prefix);
    let status = Command::new("bash")
        .arg(workspace().join("scripts/install-c.sh"))
        .arg(&prefix)
        .arg(lib_dir())
        .status()
        .unwrap();
    assert!(status.success(), "install-c.sh failed");
    let pc_path = prefix.join("lib/pkgconfig");
    let version = Command::new("pkg-config")
        .args(["--modversion", "madang"])
        .env("PKG_CONFIG_PATH", &pc_path)
        .output()
        .expect("pkg-config is needed; scripts/setup.sh installs it");
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        env!("CARGO_PKG_VERSION")
    );
    for link in ["shared", "static"] {
        let out = tmp(&format!("pkg-config-{link}"));
        std::fs::create_dir_all(&out).unwrap();
        let status = Command::new("make")
            .arg("-C")
            .arg(workspace().join("examples/c"))
            .args(["--quiet", "-B", "USE_PKG_CONFIG=1"])
            .arg(format!("LINK={link}"))
            .arg(format!("OUT={}", out.display()))
            .arg(out.join("embed_server"))
            .env("PKG_CONFIG_PATH", &pc_path)
            .status()
            .unwrap();
        assert!(status.success(), "make with pkg-config ({link}) failed");
        run_example(&out.join("embed_server"), &[]);
    }
}
