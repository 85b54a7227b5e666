//! Ollama's NDJSON, cut anywhere, must become the same well-formed OpenAI SSE, or an error.
#![no_main]

use hermes::backends::ollama_wire::NdjsonToSse;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fn translator() -> NdjsonToSse {
    NdjsonToSse::new("chatcmpl-1".into(), "m".into(), 1, true)
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else { return };
    let whole = translator().feed(stream);
    let mut t = translator();
    let pieces: Result<Vec<u8>, String> = stream.chunks(usize::from(cut % 32) + 1).try_fold(Vec::new(), |mut out, c| {
        out.extend(t.feed(c)?);
        Ok(out)
    });
    match (whole, pieces) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b);
            common::assert_openai_sse(&a);
        }
        (Err(_), Err(_)) => {}
        (a, b) => panic!("whole {a:?} but cut up {b:?}"),
    }
});
