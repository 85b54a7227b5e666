//! A client's body at the Responses and Messages doors: decoded into the internal request (or
//! refused with a 4xx in the door's own shape), then a fixed chat answer and stream encoded back
//! for it, whole and event by event; every output must be what the door's SDK can read.
#![no_main]

use bytes::Bytes;
use hermes::doors::openai::Endpoint;
use hermes::doors::{decode, DoorKind};
use libfuzzer_sys::fuzz_target;

const ANSWER: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hi","tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#;
const STREAM: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"finish_reason\":null}]}\n\ndata: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\n\ndata: [DONE]\n\n";

fuzz_target!(|data: &[u8]| {
    for kind in [DoorKind::Responses, DoorKind::Messages] {
        let earlier = |_: &str| Some(vec![serde_json::json!({"role": "user", "content": "before"})]);
        let request = match decode(kind, Endpoint::ChatCompletions, data, "req_0123456789abcdef", earlier) {
            Ok(r) => r,
            Err(e) => {
                assert!((400..500).contains(&e.status()), "{e:?}");
                let body: serde_json::Value = serde_json::from_slice(&kind.error_body(&e)).expect("error body is JSON");
                assert!(body["error"]["message"].is_string(), "{body}");
                continue;
            }
        };
        assert!(request.body.get("messages").is_some_and(|m| m.is_array()));
        let (whole, _) = request.door.encode(&Bytes::from_static(ANSWER.as_bytes()), "m").expect("a good chat answer encodes");
        let _: serde_json::Value = serde_json::from_slice(&whole).expect("encoded answer is JSON");
        if let Some(mut encoder) = request.door.stream_encoder("m") {
            let mut out = Vec::new();
            for event in STREAM.split_inclusive("\n\n") {
                out.extend_from_slice(&encoder.feed(event.as_bytes()));
            }
            let text = String::from_utf8(out).expect("stream is UTF-8");
            for event in text.split_terminator("\n\n") {
                let data = event.lines().find_map(|l| l.strip_prefix("data: ")).unwrap_or_else(|| panic!("no data: {event:?}"));
                let _: serde_json::Value = serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}: {data:?}"));
            }
        }
    }
});
