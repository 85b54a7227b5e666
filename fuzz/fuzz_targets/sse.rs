//! An upstream's SSE stream, cut anywhere: the scanner (usage, errors, [DONE]) and the event
//! splitter must see the same thing however the bytes arrive.
#![no_main]

use hermes::backends::sse::{EventSplitter, SseScanner};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else { return };
    let chunk = usize::from(cut % 32) + 1;

    let scanner = || {
        let mut s = SseScanner::default();
        s.text = Some(String::new());
        s
    };
    let mut whole = scanner();
    whole.feed(stream);
    let mut pieces = scanner();
    stream.chunks(chunk).for_each(|c| pieces.feed(c));
    assert_eq!(
        (whole.usage, whole.saw_done, whole.data_events, &whole.text, &whole.error),
        (pieces.usage, pieces.saw_done, pieces.data_events, &pieces.text, &pieces.error)
    );

    let all = EventSplitter::default().feed(stream);
    let mut splitter = EventSplitter::default();
    let cut_up: Vec<_> = stream.chunks(chunk).flat_map(|c| splitter.feed(c)).collect();
    assert_eq!(all, cut_up);
});
