/// What a client's SDK needs from a translated stream: events of one `data:` line of JSON, the
/// `[DONE]` marker, or the usage comment Hermes reads itself.
pub fn assert_openai_sse(out: &[u8]) {
    let text = std::str::from_utf8(out).expect("SSE out is UTF-8");
    assert!(text.is_empty() || text.ends_with("\n\n"), "{text:?}");
    for event in text.split_terminator("\n\n") {
        if event == "data: [DONE]" {
            continue;
        }
        let json = event
            .strip_prefix("data: ")
            .or_else(|| event.strip_prefix(hermes::backends::sse::USAGE_COMMENT))
            .unwrap_or_else(|| panic!("not an event: {event:?}"));
        let v: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json:?}"));
        assert!(v.is_object());
    }
}
