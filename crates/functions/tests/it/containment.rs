//! Runaway functions are stopped with a typed error, and the runtime keeps serving.

use std::sync::Arc;

use runnel_functions::{DeployOptions, InvokeError};

use crate::fake::{FakeHost, deploy, event, example, runtime};

#[test]
fn infinite_loop_stops_at_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let options = DeployOptions { deadline_ms: 20, ..DeployOptions::default() };
    let function =
        runtime.deploy("loop", &example("loop.wat"), Arc::new(FakeHost::default()), options).expect("deploy");
    for _ in 0..2 {
        assert_eq!(function.invoke(&[event(1, None, None)]), Err(InvokeError::Timeout { deadline_ms: 20 }));
    }
}

#[test]
fn memory_bomb_stops_at_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let options = DeployOptions { memory_bytes_max: 4 * 1024 * 1024, ..DeployOptions::default() };
    let function =
        runtime.deploy("bomb", &example("memory-bomb.wat"), Arc::new(FakeHost::default()), options).expect("deploy");
    for _ in 0..2 {
        assert_eq!(
            function.invoke(&[event(1, None, None)]),
            Err(InvokeError::OutOfMemory { memory_bytes_max: 4 * 1024 * 1024 })
        );
    }
}

/// The host lowering a batch larger than the function's memory limit hits the same limit
/// inside `cabi_realloc`.
#[test]
fn batch_larger_than_memory_limit_is_out_of_memory() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let options = DeployOptions { memory_bytes_max: 256 * 1024, ..DeployOptions::default() };
    let function =
        runtime.deploy("enrich", &example("enrich.wat"), Arc::new(FakeHost::with_users()), options).expect("deploy");
    let value = vec![1u8; 64 * 1024];
    let events: Vec<_> = (0..8).map(|i| event(i, Some(b"k"), Some(&value))).collect();
    assert_eq!(function.invoke(&events), Err(InvokeError::OutOfMemory { memory_bytes_max: 256 * 1024 }));
}

#[test]
fn trap_is_reported_as_trap() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let function = deploy(&runtime, "trap", "trap.wat", Arc::new(FakeHost::default()));
    match function.invoke(&[event(1, None, None)]) {
        Err(InvokeError::Trap(message)) => {
            assert!(message.contains("divide by zero"), "{message}")
        }
        other => panic!("expected a trap, got {other:?}"),
    }
}

/// Failures of some functions leave the runtime, their pool slots and other functions
/// working, including while they run concurrently.
#[test]
fn runtime_keeps_serving_after_failures() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let short = DeployOptions { deadline_ms: 10, memory_bytes_max: 1024 * 1024 };
    let host = Arc::new(FakeHost::with_users());
    let enrich = deploy(&runtime, "enrich", "enrich.wat", host.clone());
    let looping = runtime.deploy("loop", &example("loop.wat"), host.clone(), short).expect("deploy");
    let bomb = runtime.deploy("bomb", &example("memory-bomb.wat"), host.clone(), short).expect("deploy");
    let trap = deploy(&runtime, "trap", "trap.wat", host.clone());
    let batch = [event(1, Some(b"alice"), Some(b"v"))];

    std::thread::scope(|scope| {
        let failing = scope.spawn(|| {
            for _ in 0..20 {
                assert!(matches!(looping.invoke(&batch), Err(InvokeError::Timeout { .. })));
                assert!(matches!(bomb.invoke(&batch), Err(InvokeError::OutOfMemory { .. })));
                assert!(matches!(trap.invoke(&batch), Err(InvokeError::Trap(_))));
            }
        });
        // More invocations than pool slots, so slots of failed instances are reused.
        for _ in 0..200 {
            let outputs = enrich.invoke(&batch).expect("enrich keeps working");
            assert_eq!(outputs.len(), 1);
        }
        failing.join().expect("no panic");
    });
    assert_eq!(enrich.invoke(&batch).expect("invoke").len(), 1);
}
