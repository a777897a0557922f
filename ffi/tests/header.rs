//! `ffi/include/madang.h` is exactly what the pinned cbindgen generates from `ffi/src`.
//! After changing the C API, regenerate it: `MADANG_BLESS=1 cargo test -p madang-ffi --test header`.

use std::path::Path;

#[test]
fn checked_in_header_is_current() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).unwrap();
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
