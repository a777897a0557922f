//! What the browser-package tests share: where things are, and what must be built first.

use std::path::{Path, PathBuf};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `wasm/pkg`, checked to be built.
pub fn built_package() -> PathBuf {
    let pkg = workspace().join("wasm/pkg");
    assert!(
        pkg.join("madang_wasm_bg.wasm").exists() && pkg.join("package.json").exists(),
        "{} missing: build it with `bash scripts/build-wasm.sh` (scripts/test.sh does)",
        pkg.display()
    );
    pkg
}

/// The Node.js test tools (`core/tests/browser`), checked to be installed.
pub fn browser_tools() -> PathBuf {
    let dir = workspace().join("core/tests/browser");
    for tool in ["playwright-core", "vite"] {
        assert!(
            dir.join("node_modules").join(tool).exists(),
            "{tool} missing: scripts/setup.sh runs npm install in core/tests/browser"
        );
    }
    dir
}

/// A room server on loopback serving the demo page (`examples/web`, importing `wasm/pkg`,
/// checked to be built), and the Node.js test tools to drive pages with.
#[allow(dead_code)] // not every test binary starts one
pub async fn demo_server() -> (madang::sfu::Server, PathBuf) {
    demo_server_with(None).await
}

/// [`demo_server`], over TLS with `tls` when given (`https://`, `wss://`).
#[allow(dead_code)] // not every test binary starts one
pub async fn demo_server_with(
    tls: Option<madang::sfu::TlsConfig>,
) -> (madang::sfu::Server, PathBuf) {
    demo_server_from(madang::sfu::ServerConfig {
        tls,
        ..madang::sfu::ServerConfig::dev()
    })
    .await
}

/// [`demo_server`] with `config` (its static directory set to the demo page).
#[allow(dead_code)] // not every test binary starts one
pub async fn demo_server_from(config: madang::sfu::ServerConfig) -> (madang::sfu::Server, PathBuf) {
    built_package();
    let browser = browser_tools();
    let config = madang::sfu::ServerConfig {
        static_dir: Some(workspace().join("examples/web")),
        ..config
    };
    (madang::sfu::Server::bind(config).await.unwrap(), browser)
}
