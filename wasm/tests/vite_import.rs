//! `wasm/pkg` works as an npm dependency of a Vite project: a tiny app (`tests/vite`) imports
//! `madang-wasm`, `vite build` bundles it (JS and the .wasm asset), and the built app runs in
//! headless Chromium.
#![cfg(not(target_arch = "wasm32"))]

use std::path::PathBuf;
use std::process::Command;

use madang::sfu::{Server, ServerConfig};

mod common;
use common::{browser_tools, built_package, workspace};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vite_project_bundles_and_runs_the_package() {
    let root = workspace();
    let pkg = built_package();
    let node_modules = browser_tools().join("node_modules");
    // The app, copied out of the source tree, with the package as its dependency.
    let app = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("vite-app");
    let _ = std::fs::remove_dir_all(&app);
    std::fs::create_dir_all(app.join("node_modules")).unwrap();
    for f in ["index.html", "main.js"] {
        std::fs::copy(root.join("wasm/tests/vite").join(f), app.join(f)).unwrap();
    }
    std::os::unix::fs::symlink(&pkg, app.join("node_modules/madang-wasm")).unwrap();
    std::fs::write(
        app.join("vite.config.mjs"),
        "export default { build: { target: 'es2022' }, logLevel: 'warn' };\n",
    )
    .unwrap();
    let out = Command::new("node")
        .arg(node_modules.join("vite/bin/vite.js"))
        .arg("build")
        .current_dir(&app)
        .output()
        .expect("node runs (scripts/setup.sh installs nodejs)");
    assert!(
        out.status.success(),
        "vite build failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let assets: Vec<String> = std::fs::read_dir(app.join("dist/assets"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(assets.iter().any(|a| a.ends_with(".wasm")), "{assets:?}");
    assert!(assets.iter().any(|a| a.ends_with(".js")), "{assets:?}");

    // The built app loads and runs the module in a browser.
    let server = Server::bind(ServerConfig {
        static_dir: Some(app.join("dist")),
        ..ServerConfig::dev()
    })
    .await
    .unwrap();
    let url = format!("http://localhost:{}/", server.http_addr().port());
    let out = tokio::process::Command::new("node")
        .arg(root.join("core/tests/browser/open.mjs"))
        .args([url.as_str(), "viteResult", "30"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the built app did not run:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(result["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(result["connect"], "function");
    assert_eq!(result["error"], "function");
    server.shutdown().await;
}
