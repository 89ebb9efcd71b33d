//! Any bytes as a kernel configuration (`.config` or `autoconf.h`) and as a `#if`
//! expression: reading answers or errs, evaluating answers, never panic, and both take
//! time linear in the input.
#![no_main]

use analyzer::source::{evaluate_if, KernelConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = KernelConfig::parse(data);
    let config = KernelConfig::parse(b"CONFIG_A=y\nCONFIG_B=m\nCONFIG_N=12\nCONFIG_S=\"s\"\n")
        .expect("a configuration");
    let _ = evaluate_if(data, &config);
});
