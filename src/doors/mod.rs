//! The shapes requests arrive in. Today one door, OpenAI's (chat completions and embeddings);
//! each door decodes into the one internal request that routing and the backends read.

pub mod openai;
