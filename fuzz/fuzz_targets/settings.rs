#![no_main]
//! The settings file parser and checker: any text gives settings or errors, never a panic.

use libfuzzer_sys::fuzz_target;
use portcullis::config::Settings;

fuzz_target!(|text: &str| {
    match Settings::parse(text, "fuzz.yaml", |_| None) {
        Ok(_) => {}
        // Every error must be reportable (its Display is what the operator sees).
        Err(errors) => assert!(!errors.0.is_empty(), "an error value without errors"),
    }
});
