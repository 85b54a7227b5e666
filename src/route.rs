//! Which backends may answer a request, in which order. Pure: tests call it without a network.

pub mod retry;

use crate::config::BackendConfig;
use crate::openai::ApiError;
use std::sync::Arc;

/// One place to try: a backend (by index in the registry) and the model to ask it for.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub backend: usize,
    pub model: String,
}

/// What the plan needs to know beyond the request's model.
pub struct PlanInput<'a> {
    pub backends: &'a [&'a BackendConfig],
    /// Each backend's models now (configured and discovered); empty = takes any model.
    pub models: &'a [Arc<Vec<String>>],
    /// `x-hermes-backend`: this backend first.
    pub pinned: Option<&'a str>,
    pub primary: Option<&'a str>,
    pub fallback: Option<&'a str>,
}

/// `auto` may go anywhere (primary, then fallback, then the configured order); a concrete model
/// only to backends that serve it. Backends `available` says are down go last, so a request is
/// still tried somewhere when everything looks down.
pub fn plan(model: &str, input: &PlanInput<'_>, available: impl Fn(usize) -> bool) -> Result<Vec<Candidate>, ApiError> {
    let auto = model == "auto";
    let rank = |name: &str| -> u8 {
        if Some(name) == input.pinned {
            0
        } else if Some(name) == input.primary {
            1
        } else if Some(name) == input.fallback {
            2
        } else {
            3
        }
    };
    let serves = |i: usize| input.models.get(i).is_none_or(|m| m.is_empty() || m.iter().any(|x| x == model));
    if let Some(pin) = input.pinned {
        match input.backends.iter().position(|b| b.name == pin) {
            None => return Err(ApiError::bad_request(format!("x-hermes-backend: no enabled backend is named '{pin}'."), None)),
            Some(i) if !auto && !serves(i) => {
                return Err(ApiError::bad_request(format!("x-hermes-backend: backend '{pin}' does not serve model `{model}`."), Some("model")))
            }
            Some(_) => {}
        }
    }
    let mut candidates: Vec<(bool, u8, usize, Candidate)> = input
        .backends
        .iter()
        .enumerate()
        .filter(|(i, _)| auto || serves(*i))
        .map(|(i, b)| {
            let default = input.models.get(i).and_then(|m| m.first()).map(String::as_str);
            let model = if auto { default.unwrap_or("auto").to_string() } else { model.to_string() };
            (!available(i), rank(&b.name), i, Candidate { backend: i, model })
        })
        .collect();
    if candidates.is_empty() {
        return Err(ApiError::model_not_found(model));
    }
    candidates.sort_by_key(|(down, rank, i, _)| (*down, *rank, *i));
    Ok(candidates.into_iter().map(|(_, _, _, c)| c).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EnvSource, Policies};

    fn backends() -> Vec<BackendConfig> {
        let env = EnvSource::from_pairs([
            ("HERMES_BACKENDS_ENABLED", "a,b,c"),
            ("BACKEND_A_TYPE", "custom"),
            ("BACKEND_A_HOST", "127.0.0.1"),
            ("BACKEND_A_MODELS", "m1,m2"),
            ("BACKEND_B_TYPE", "custom"),
            ("BACKEND_B_HOST", "127.0.0.1"),
            ("BACKEND_B_MODELS", "m2"),
            ("BACKEND_C_TYPE", "sim"),
        ]);
        crate::config::Config::from_env(&env, Policies::builtin(), false).unwrap().backends
    }

    fn models(b: &[BackendConfig]) -> Vec<Arc<Vec<String>>> {
        b.iter().map(|b| Arc::new(b.models.clone())).collect()
    }

    fn names(c: &[Candidate], b: &[BackendConfig]) -> Vec<String> {
        c.iter().map(|c| format!("{}:{}", b[c.backend].name, c.model)).collect()
    }

    #[test]
    fn concrete_models_go_only_where_served() {
        let b = backends();
        let refs: Vec<&BackendConfig> = b.iter().collect();
        let m = models(&b);
        let input = PlanInput { backends: &refs, models: &m, pinned: None, primary: Some("b"), fallback: None };
        assert_eq!(names(&plan("m2", &input, |_| true).unwrap(), &b), ["b:m2", "a:m2"]);
        assert_eq!(names(&plan("m1", &input, |_| true).unwrap(), &b), ["a:m1"]);
        let e = plan("gpt-9", &input, |_| true).unwrap_err();
        assert_eq!((e.status, e.code), (404, Some("model_not_found")));
    }

    #[test]
    fn auto_prefers_primary_then_fallback_and_skips_down_backends() {
        let b = backends();
        let refs: Vec<&BackendConfig> = b.iter().collect();
        let m = models(&b);
        let input = PlanInput { backends: &refs, models: &m, pinned: None, primary: Some("c"), fallback: Some("b") };
        assert_eq!(names(&plan("auto", &input, |_| true).unwrap(), &b), ["c:sim-c", "b:m2", "a:m1"]);
        // c is down: it goes last, not away
        assert_eq!(names(&plan("auto", &input, |i| i != 2).unwrap(), &b), ["b:m2", "a:m1", "c:sim-c"]);
    }

    #[test]
    fn a_pin_goes_first_and_must_exist() {
        let b = backends();
        let refs: Vec<&BackendConfig> = b.iter().collect();
        let m = models(&b);
        let input = PlanInput { backends: &refs, models: &m, pinned: Some("a"), primary: Some("b"), fallback: None };
        assert_eq!(names(&plan("m2", &input, |_| true).unwrap(), &b), ["a:m2", "b:m2"]);
        let bad = PlanInput { backends: &refs, models: &m, pinned: Some("zz"), primary: None, fallback: None };
        assert_eq!(plan("m2", &bad, |_| true).unwrap_err().status, 400);
    }
}
