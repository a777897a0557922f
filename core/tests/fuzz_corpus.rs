//! Replays the fuzz targets' corpora (`fuzz/corpus/<target>/`) and the inputs that once
//! crashed one (`fuzz/regressions/<target>/`) through the same entry points, so that the
//! normal suite keeps what fuzzing found, without a fuzz run (`scripts/fuzz.sh` runs one).
#![cfg(feature = "fuzzing")]

use std::path::Path;

fn inputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<(String, Vec<u8>)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_target_replays_its_corpus_and_regressions_without_a_panic() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    for (target, run) in madang::fuzzing::TARGETS {
        assert!(
            fuzz.join("fuzz_targets")
                .join(format!("{target}.rs"))
                .exists(),
            "no fuzz target for {target}"
        );
        let corpus = inputs(&fuzz.join("corpus").join(target));
        assert!(!corpus.is_empty(), "{target} has no corpus");
        let regressions = inputs(&fuzz.join("regressions").join(target));
        for (name, data) in corpus.iter().chain(&regressions) {
            let outcome = std::panic::catch_unwind(|| run(data));
            assert!(outcome.is_ok(), "{target} panicked on {name}");
        }
        println!(
            "{target}: {} corpus inputs, {} regressions",
            corpus.len(),
            regressions.len()
        );
    }
}
