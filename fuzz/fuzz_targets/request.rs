//! A client's body through everything the gateway does with it before any backend is asked:
//! the checks, the classifier, and the translation to each backend's wire format.
#![no_main]

use hermes::decide::classify::{parse_vocabulary, Classifier};
use hermes::doors::openai::{parse_request, Endpoint};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn classifier() -> &'static Classifier {
    static CLASSIFIER: OnceLock<Classifier> = OnceLock::new();
    CLASSIFIER.get_or_init(|| {
        let vocabulary = parse_vocabulary(include_str!("../../policies/classify.toml")).expect("shipped vocabulary");
        Classifier::new(&vocabulary, hermes::decide::classify::Weights::Shipped).expect("shipped vocabulary")
    })
}

fuzz_target!(|data: &[u8]| {
    for endpoint in [Endpoint::ChatCompletions, Endpoint::Embeddings] {
        let request = match parse_request(endpoint, data) {
            Ok(r) => r,
            Err(e) => {
                // Every refusal is an OpenAI-shaped error a client can read.
                assert!((400..500).contains(&e.status()), "{e:?}");
                let body: serde_json::Value = serde_json::from_slice(&e.body()).expect("error body is JSON");
                assert!(body["error"]["message"].is_string());
                continue;
            }
        };
        assert!(!request.model.trim().is_empty());
        let _ = request.prompt_text();
        let _ = request.include_usage();
        if endpoint == Endpoint::ChatCompletions {
            let _ = classifier().classify(&request);
            let original = bytes::Bytes::copy_from_slice(data);
            let renamed = request.body_for(&original, "other-model");
            let again: serde_json::Value = serde_json::from_slice(&renamed).expect("re-encoded body is JSON");
            assert_eq!(again["model"], "other-model");
            let _ = hermes::backends::ollama_wire::chat_request(&request.body, "m", request.stream);
            let _ = hermes::backends::anthropic::messages_request(&request.body, "m", request.stream);
        }
    }
});
