//! The compiled-component cache: reused across runtimes, verified before loading, rebuilt
//! when damaged; and deploy-time rejection of components that do not fit the world.

use std::sync::Arc;

use runnel_functions::{CacheOutcome, DeployError, DeployOptions};

use crate::fake::{FakeHost, deploy, event, example, runtime};

fn cache_file(dir: &std::path::Path, key: &str) -> std::path::PathBuf {
    dir.join("cache").join(format!("{key}.cwasm"))
}

#[test]
fn second_deploy_reuses_the_compiled_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let host = Arc::new(FakeHost::with_users());
    let first = deploy(&runtime(dir.path()), "enrich", "enrich.wat", host.clone());
    assert_eq!(first.cache_outcome(), &CacheOutcome::Miss);
    assert!(cache_file(dir.path(), first.cache_key()).exists());

    // A new runtime (as after a restart) over the same directory.
    let second = deploy(&runtime(dir.path()), "enrich", "enrich.wat", host.clone());
    assert_eq!(second.cache_outcome(), &CacheOutcome::Hit);
    assert_eq!(second.cache_key(), first.cache_key());
    let batch = [event(1, Some(b"alice"), Some(b"v"))];
    assert_eq!(second.invoke(&batch), first.invoke(&batch));
}

#[test]
fn corrupted_artifact_is_detected_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let host = Arc::new(FakeHost::with_users());
    let first = deploy(&runtime(dir.path()), "enrich", "enrich.wat", host.clone());
    let path = cache_file(dir.path(), first.cache_key());
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();

    let rebuilt = deploy(&runtime(dir.path()), "enrich", "enrich.wat", host.clone());
    match rebuilt.cache_outcome() {
        CacheOutcome::Rebuilt(reason) => assert!(reason.contains("checksum"), "{reason}"),
        other => panic!("expected a rebuild, got {other:?}"),
    }
    assert_eq!(rebuilt.invoke(&[event(1, Some(b"alice"), None)]).unwrap().len(), 1);
    let again = deploy(&runtime(dir.path()), "enrich", "enrich.wat", host.clone());
    assert_eq!(again.cache_outcome(), &CacheOutcome::Hit);
}

#[test]
fn truncated_artifact_is_detected_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let host = Arc::new(FakeHost::with_users());
    let first = deploy(&runtime(dir.path()), "enrich", "enrich.wat", host.clone());
    let path = cache_file(dir.path(), first.cache_key());
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 3]).unwrap();
    let rebuilt = deploy(&runtime(dir.path()), "enrich", "enrich.wat", host.clone());
    assert!(matches!(rebuilt.cache_outcome(), CacheOutcome::Rebuilt(_)));
    std::fs::write(&path, b"short").unwrap();
    let rebuilt = deploy(&runtime(dir.path()), "enrich", "enrich.wat", host);
    assert!(matches!(rebuilt.cache_outcome(), CacheOutcome::Rebuilt(_)));
}

#[test]
fn invalid_components_are_rejected_at_deploy() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let host = Arc::new(FakeHost::default());
    let deploy = |source: &[u8]| runtime.deploy("bad", source, host.clone(), DeployOptions::default());
    assert!(matches!(deploy(b"(component"), Err(DeployError::Wat(_))));
    assert!(matches!(deploy(b"\0asm\x01\0\0\0garbage"), Err(DeployError::Compile(_))));
    // No `handle` export.
    assert!(matches!(deploy(b"(component)"), Err(DeployError::Link(_))));
    // Ambient access the world does not offer.
    let wants_files = br#"(component
        (import "wasi:filesystem/preopens@0.2.0" (instance (export "get-directories" (func))))
    )"#;
    match deploy(wants_files) {
        Err(DeployError::Link(message)) => {
            assert!(message.contains("imports wasi:filesystem/preopens@0.2.0"), "{message}")
        }
        other => panic!("a component importing WASI must not deploy: {other:?}"),
    }
    assert!(matches!(
        runtime.deploy("no/slash", &example("trap.wat"), host.clone(), DeployOptions::default()),
        Err(DeployError::InvalidName { .. })
    ));
    let too_much =
        DeployOptions { memory_bytes_max: runnel_functions::limits::MEMORY_BYTES_MAX + 1, ..DeployOptions::default() };
    assert!(matches!(
        runtime.deploy("big", &example("trap.wat"), host.clone(), too_much),
        Err(DeployError::Limit { field: "memory_bytes_max", .. })
    ));
}
