//! Anthropic's event stream, cut anywhere, must become well-formed OpenAI SSE, or an error.
#![no_main]

use hermes::backends::anthropic::StreamTranslator;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else { return };
    let whole = StreamTranslator::new("m".into(), cut & 1 == 0).feed(stream);
    let mut t = StreamTranslator::new("m".into(), cut & 1 == 0);
    let mut pieces = Vec::new();
    let mut failed = false;
    for c in stream.chunks(usize::from(cut % 32) + 1) {
        match t.feed(c) {
            Ok(out) => pieces.extend(out),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    common::assert_openai_sse(&pieces);
    // `created` is the clock's second, so compare the events' count, not their bytes.
    match whole {
        Ok(out) if !failed => assert_eq!(out.windows(2).filter(|w| w == b"\n\n").count(), pieces.windows(2).filter(|w| w == b"\n\n").count()),
        Ok(_) => panic!("the cut-up stream failed where the whole one did not"),
        Err(_) => assert!(failed, "the whole stream failed where the cut-up one did not"),
    }
});
