#![no_main]

use libfuzzer_sys::fuzz_target;

// Same property as tests/no_panic.rs: never panic, and whatever loads prints
// back to an equal configuration.
fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(loaded) = lb_config::parse_str(&text, "fuzz.conf") {
        let printed = loaded.config.to_keepalived_string();
        let again = lb_config::parse_str(&printed, "printed.conf").expect("printed config parses");
        assert_eq!(loaded.config, again.config);
    }
});
