//! Bounded CI run of the mutation fuzzer (`examples/fuzz_decoders.rs`, docs/fuzzing.md):
//! 20,000 executions per decoder target, zero panics and zero invalid event-log lines.

#[path = "../examples/fuzz_decoders.rs"]
mod fuzz;

use fuzz::{Target, run};

const EXECUTIONS: u64 = 20_000;

#[test]
fn every_decoder_survives_20k_mutated_inputs() {
    let crash_dir = std::env::temp_dir().join(format!("cdcmon-fuzz-{}", std::process::id()));
    let mut summary = Vec::new();
    for target in Target::ALL {
        let r = run(target, EXECUTIONS, 0x5eed, Some(&crash_dir));
        assert_eq!(r.executions, EXECUTIONS);
        // The mutations must leave some inputs decodable, or only the error paths are fuzzed.
        assert!(
            r.decoded > 0 && r.rejected > 0,
            "{}: {} decoded, {} rejected",
            target.name(),
            r.decoded,
            r.rejected
        );
        summary.push((target.name(), r.crashes));
    }
    let crashed: Vec<_> = summary.iter().filter(|(_, c)| *c > 0).collect();
    assert!(
        crashed.is_empty(),
        "crashes {crashed:?}; inputs in {}",
        crash_dir.display()
    );
}
