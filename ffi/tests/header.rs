//! `ffi/include/madang.h` is exactly what the pinned cbindgen generates from `ffi/src`.
//! After changing the C API, regenerate it: `MADANG_BLESS=1 cargo test -p madang-ffi --test header`.

use std::path::Path;

#[test]
fn checked_in_header_is_current() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).unwrap();
    // Version macros from the crate version, so C can check at compile time what it builds
    // against (and madang_version() at run time).
    config.after_includes = Some(format!(
        "\n#define MADANG_VERSION_MAJOR {}\n#define MADANG_VERSION_MINOR {}\n\
         #define MADANG_VERSION_PATCH {}\n#define MADANG_VERSION_STRING \"{}\"\n\
         /* MAJOR * 10000 + MINOR * 100 + PATCH, for #if comparisons. */\n\
         #define MADANG_VERSION_NUMBER ({} * 10000 + {} * 100 + {})",
        env!("CARGO_PKG_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MINOR"),
        env!("CARGO_PKG_VERSION_PATCH"),
        env!("CARGO_PKG_VERSION"),
        env!("CARGO_PKG_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MINOR"),
        env!("CARGO_PKG_VERSION_PATCH"),
    ));
    let bindings = cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen could not read ffi/src");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let generated = String::from_utf8(generated).unwrap();
    let path = crate_dir.join("include/madang.h");
    if std::env::var_os("MADANG_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "ffi/include/madang.h is stale; regenerate: MADANG_BLESS=1 cargo test -p madang-ffi --test header"
    );
}
