//! Components shaped like guest toolchains' output (wit-component's encoding of the WIT,
//! with root-level type imports, shim modules and a start function) link and run: they
//! are the shape JavaScript and Python functions will have.

use std::sync::Arc;

use runnel_functions::{DeployOptions, InvokeError};

use crate::fake::{FakeHost, event, runtime};

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

#[test]
fn wit_component_encodings_of_both_worlds_link() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    for (file, http) in [("wit-component-function.wat", false), ("wit-component-http-function.wat", true)] {
        let function = runtime
            .deploy("generated", &fixture(file), Arc::new(FakeHost::default()), DeployOptions::default())
            .unwrap_or_else(|e| panic!("deploy {file}: {e}"));
        assert_eq!(function.is_http(), http, "{file}");
        // Instantiation runs the start function; the handler body is `unreachable`.
        function.probe().expect("instantiates");
        assert!(matches!(function.invoke(&[event(1, None, None)]), Err(InvokeError::Trap(_))));
    }
}
