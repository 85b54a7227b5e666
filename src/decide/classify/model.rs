//! The learned half of the classifier: a multinomial logistic regression over hashed features of
//! the request (word and character n-grams of the last user turn, words of the rest, structure,
//! and the policy vocabulary's hits), trained from labelled prompts.
//!
//! Hand-written rather than taken from linfa or smartcore: those fit dense matrices, and this model
//! is 2^18 sparse hashed features wide; predicting must cost a few microseconds with no allocation
//! beyond the feature list. The whole model is a table of weights, one row of six per bucket.

use super::JobType;
use half::f16;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// Hashed feature buckets: 2^BITS rows of one weight per job type.
const BITS: u32 = 18;
const CLASSES: usize = JobType::ALL.len();
/// How much of a long last turn is read: its start and its end (the ask sits at one of them
/// when material is pasted), bounded so a 4 KiB prompt costs tens of microseconds, not hundreds.
const CHARS_HEAD: usize = 512;
const CHARS_TAIL: usize = 256;
const WORDS_HEAD: usize = 1536;
const WORDS_TAIL: usize = 512;
/// How much of the system prompt and earlier turns is read, nearest the last turn first.
const CONTEXT_CHARS: usize = 1024;
/// How much of the last turn's start its symbols and token shapes are read from.
const SHAPES_HEAD: usize = 768;
/// The first sentence's words that count as the ask's lead.
const LEAD_WORDS: usize = 8;
/// Naive-Bayes smoothing of the per-bucket class ratios that scale each feature in training.
const NB_ALPHA: f32 = 0.5;
/// The file format: a table of weights for these features (version 2 added symbols, shapes
/// and lead words, so a version-1 file would read them wrongly).
const MAGIC: &[u8; 10] = b"HERMESCLS2";

/// One request as the model reads it.
pub struct Input<'a> {
    pub last_user: &'a str,
    /// System prompt and earlier turns, newest first.
    pub context: &'a [&'a str],
    pub code: bool,
    pub fence: bool,
    pub tools: bool,
    pub json_mode: bool,
    pub system: bool,
    pub turns: usize,
    /// The vocabulary's score per job type on the last turn.
    pub vocabulary: [f64; CLASSES],
}

/// A hashed sparse feature vector.
pub type Features = Vec<(u32, f32)>;

/// Distinct seeds keep one kind of feature from colliding with another by construction.
#[derive(Clone, Copy)]
#[repr(u64)]
enum Kind {
    Word = 0x9e37_79b9_7f4a_7c15,
    Bigram = 0xc2b2_ae3d_27d4_eb4f,
    Char = 0x1656_67b1_9e37_79f9,
    Context = 0x27d4_eb2f_1656_67c5,
    Flag = 0x85eb_ca77_c2b2_ae63,
    Material = 0x94d0_49bb_1331_11eb,
    Symbol = 0x2545_f491_4f6c_dd1d,
    Shape = 0x9e6c_63d0_676a_9a99,
    Lead = 0xd6e8_feb8_6659_fd93,
}

/// The ask and the material pasted with it, each as lines of the text.
fn split_material(text: &str) -> (String, String) {
    let (mut ask, mut material) = (String::with_capacity(text.len()), String::new());
    let mut fenced = false;
    for line in text.lines() {
        let t = line.trim();
        let fence = t.starts_with("```");
        if fence {
            fenced = !fenced;
        }
        let indented = line.starts_with("    ") || line.starts_with('\t');
        let out = if fence || fenced || indented || codeish(t) { &mut material } else { &mut ask };
        out.push_str(line);
        out.push('\n');
    }
    if ask.trim().is_empty() {
        // Nothing but material: read it as the ask.
        return (text.to_string(), String::new());
    }
    (ask, material)
}

/// A line that reads like source code, a log or a table row.
fn codeish(t: &str) -> bool {
    t.ends_with(';')
        || t.ends_with('{')
        || t == "}"
        || t.starts_with("def ")
        || t.starts_with("fn ")
        || t.starts_with("import ")
        || t.starts_with("#include")
        || t.starts_with("select ")
        || t.starts_with("return ")
        || t.starts_with('|')
        || t.starts_with("at ")
        || t.starts_with("//")
        || t.starts_with('<')
        || (t.len() > 12 && t.chars().take(4).all(|c| c.is_ascii_digit()))
}

fn hash(kind: Kind, bytes: &[u8]) -> u64 {
    // FNV-1a, seeded per kind, then a final mix: fast on short keys and stable across builds.
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ kind as u64;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 29;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^ (h >> 32)
}

fn bucket(h: u64) -> u32 {
    (h & ((1 << BITS) - 1)) as u32
}

/// The start and end of `text`, cut on character boundaries.
pub fn window(text: &str, head: usize, tail: usize) -> (&str, &str) {
    if text.len() <= head + tail {
        return (text, "");
    }
    let mut h = head;
    while !text.is_char_boundary(h) {
        h -= 1;
    }
    let mut t = text.len() - tail;
    while !text.is_char_boundary(t) {
        t += 1;
    }
    (&text[..h], &text[t..])
}

fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'' && c != '+' && c != '#').filter(|w| !w.is_empty())
}

/// Sentences: cut after `.`, `!` or `?` followed by white space, and at line breaks.
fn sentences(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let bytes = rest.as_bytes();
        let mut end = bytes.len();
        for i in 0..bytes.len() {
            if bytes[i] == b'\n' || (matches!(bytes[i], b'.' | b'!' | b'?') && bytes.get(i + 1).is_some_and(u8::is_ascii_whitespace)) {
                end = i + 1;
                break;
            }
        }
        let (sentence, tail) = rest.split_at(end);
        rest = tail.trim_start();
        Some(sentence)
    })
}

/// A script where words are not separated by spaces (CJK, kana, hangul): single characters carry
/// meaning there.
fn unspaced(c: char) -> bool {
    matches!(c as u32, 0x2E80..=0x9FFF | 0xAC00..=0xD7AF | 0xF900..=0xFAFF)
}

/// The features of one request. `out` is cleared first.
pub fn features(input: &Input<'_>, out: &mut Features) {
    out.clear();
    let full = input.last_user.to_lowercase();
    // Pasted material (fenced blocks, lines that read like code or logs) says what the ask is
    // about, not what it asks: its words count apart, and the ask's words are read alone.
    let (lower, material) = split_material(&full);
    let lower = lower.as_str();
    let start = out.len();
    let (head, _) = window(&material, CONTEXT_CHARS, 0);
    for w in words(head) {
        out.push((bucket(hash(Kind::Material, w.as_bytes())), 1.0));
    }
    normalise(&mut out[start..], 0.5);
    // Words and word pairs of the last turn.
    let (head, tail) = window(lower, WORDS_HEAD, WORDS_TAIL);
    let start = out.len();
    for part in [head, tail] {
        let mut prev: Option<&str> = None;
        for w in words(part) {
            out.push((bucket(hash(Kind::Word, w.as_bytes())), 1.0));
            if let Some(p) = prev {
                let mut h = hash(Kind::Bigram, p.as_bytes());
                h ^= hash(Kind::Bigram, w.as_bytes()).rotate_left(17);
                out.push((bucket(h), 1.0));
            }
            prev = Some(w);
        }
    }
    normalise(&mut out[start..], 1.0);
    let start = out.len();
    // Character 3- and 4-grams (and pairs in unspaced scripts), spaces folded.
    let (head, tail) = window(lower, CHARS_HEAD, CHARS_TAIL);
    let mut ends: Vec<usize> = Vec::with_capacity(head.len() + tail.len() + 2);
    for part in [head, tail] {
        let mut squashed = String::with_capacity(part.len() + 2);
        squashed.push(' ');
        let mut space = true;
        for c in part.chars() {
            let c = if c.is_alphanumeric() { c } else { ' ' };
            if c == ' ' && space {
                continue;
            }
            space = c == ' ';
            squashed.push(c);
        }
        if !space {
            squashed.push(' ');
        }
        ends.clear();
        ends.extend(squashed.char_indices().map(|(i, _)| i));
        ends.push(squashed.len());
        let bytes = squashed.as_bytes();
        for n in [3usize, 4] {
            for i in 0..ends.len().saturating_sub(n) {
                out.push((bucket(hash(Kind::Char, &bytes[ends[i]..ends[i + n]])), 1.0));
            }
        }
        for (i, c) in squashed.char_indices() {
            if unspaced(c) {
                let end = i + c.len_utf8();
                let next = squashed[end..].chars().next().map_or(end, |n| end + n.len_utf8());
                out.push((bucket(hash(Kind::Char, &bytes[i..next])), 1.0));
            }
        }
    }
    normalise(&mut out[start..], 1.0);
    // How the ask is written: its punctuation and symbols (`?`, `%`, `€`, `=`, `？`), and the
    // shapes of tokens that are not plain words (`£45,` → `£0,`, `7-8` → `0-0`).
    let (head, _) = window(input.last_user, SHAPES_HEAD, 0);
    let start = out.len();
    let mut buf = [0u8; 4];
    for c in head.chars().filter(|c| !c.is_alphanumeric() && !c.is_whitespace()) {
        out.push((bucket(hash(Kind::Symbol, c.encode_utf8(&mut buf).as_bytes())), 1.0));
    }
    normalise(&mut out[start..], 1.0);
    let start = out.len();
    let mut shape = String::with_capacity(16);
    for token in head.split_whitespace().filter(|t| t.chars().any(|c| !c.is_alphabetic())) {
        shape.clear();
        let mut last = None;
        for c in token.chars() {
            let class = if c.is_numeric() {
                '0'
            } else if c.is_alphabetic() {
                'a'
            } else {
                c
            };
            if (class == '0' || class == 'a') && last == Some(class) {
                continue;
            }
            last = Some(class);
            shape.push(class);
        }
        let end = shape.char_indices().nth(12).map_or(shape.len(), |(i, _)| i);
        out.push((bucket(hash(Kind::Shape, &shape.as_bytes()[..end])), 1.0));
    }
    normalise(&mut out[start..], 0.5);
    // What the ask opens with: the first sentence's first words, and its first word and pair
    // (an imperative, a question word), each tagged apart from the same word elsewhere.
    let start = out.len();
    let first_sentence = sentences(lower).find(|s| words(s).next().is_some()).unwrap_or("");
    let mut tagged = Vec::with_capacity(32);
    for w in words(first_sentence).take(LEAD_WORDS) {
        tagged.clear();
        tagged.extend_from_slice(b"P1:");
        tagged.extend_from_slice(w.as_bytes());
        out.push((bucket(hash(Kind::Lead, &tagged)), 1.0));
    }
    let mut opening = words(lower);
    if let Some(first) = opening.next() {
        tagged.clear();
        tagged.extend_from_slice(b"L1:");
        tagged.extend_from_slice(first.as_bytes());
        out.push((bucket(hash(Kind::Lead, &tagged)), 1.0));
        if let Some(second) = opening.next() {
            tagged.extend_from_slice(b" ");
            tagged.extend_from_slice(second.as_bytes());
            tagged[1] = b'2';
            out.push((bucket(hash(Kind::Lead, &tagged)), 1.0));
        }
    }
    normalise(&mut out[start..], 0.5);
    // Words of the system prompt and earlier turns, nearest first, worth less.
    let start = out.len();
    let mut budget = CONTEXT_CHARS;
    for text in input.context {
        if budget == 0 {
            break;
        }
        let (part, _) = window(text, budget, 0);
        budget -= part.len();
        for w in words(part) {
            let w = w.to_lowercase();
            out.push((bucket(hash(Kind::Context, w.as_bytes())), 1.0));
        }
    }
    normalise(&mut out[start..], 0.5);
    // Structure.
    let len = input.last_user.chars().count();
    let digits = input.last_user.chars().filter(char::is_ascii_digit).count();
    let flags: [(&[u8], bool); 16] = [
        (b"code", input.code),
        (b"fence", input.fence),
        (b"tools", input.tools),
        (b"json", input.json_mode),
        (b"system", input.system),
        (b"one-turn", input.turns <= 1),
        (b"few-turns", (2..=3).contains(&input.turns)),
        (b"many-turns", input.turns > 3),
        (b"len<40", len < 40),
        (b"len<200", (40..200).contains(&len)),
        (b"len<1000", (200..1000).contains(&len)),
        (b"len>=1000", len >= 1000),
        (b"digits", digits * 20 >= len.max(1)),
        (b"question", input.last_user.trim_end().ends_with('?')),
        (b"lines", input.last_user.lines().count() > 5),
        (b"bias", true),
    ];
    for (name, on) in flags {
        if on {
            out.push((bucket(hash(Kind::Flag, name)), 1.0));
        }
    }
    for (j, score) in input.vocabulary.iter().enumerate() {
        if *score > 0.0 {
            out.push((bucket(hash(Kind::Flag, JobType::ALL[j].as_str().as_bytes())), (score.min(9.0) / 3.0) as f32));
        }
    }
}

/// Scales a group to length `norm`, so a long text does not shout down the structure.
fn normalise(group: &mut [(u32, f32)], norm: f32) {
    if !group.is_empty() {
        let scale = norm / (group.len() as f32).sqrt();
        for f in group {
            f.1 = scale;
        }
    }
}

/// The fitted weights (the default, empty, is only a placeholder while a model is fitted).
/// Kept as half floats: the table is most of the gateway's heap at idle (6 MB as `f32`), and a
/// weight rounded to 11 significant bits moves its term of a logit by at most 1/2048 of it (the
/// held-out accuracy is the same; `tests/classify_accuracy.rs`). `narrow` and `widen` convert.
/// Fitting works in `f32`; the file keeps `f32`, so files of earlier builds still load.
#[derive(Clone, Default)]
pub struct Model {
    weights: Vec<f16>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Model({} buckets)", self.weights.len() / CLASSES)
    }
}

/// One labelled request, as features.
pub struct Example {
    pub features: Features,
    pub label: JobType,
    /// How much this example counts (a user's own examples count more than the shipped corpus).
    pub weight: f32,
}

/// How the fit goes; the defaults were chosen on a fold of the training split only.
#[derive(Debug, Clone, Copy)]
pub struct Fit {
    pub epochs: usize,
    pub learning_rate: f32,
    pub l2: f32,
    pub seed: u64,
}

impl Default for Fit {
    fn default() -> Fit {
        Fit { epochs: 12, learning_rate: 0.4, l2: 1e-6, seed: 7 }
    }
}

impl Model {
    /// Logits per job type.
    pub fn scores(&self, features: &[(u32, f32)]) -> [f32; CLASSES] {
        let mut s = [0f32; CLASSES];
        for &(b, v) in features {
            let row = &self.weights[b as usize * CLASSES..][..CLASSES];
            for c in 0..CLASSES {
                s[c] += widen(row[c]) * v;
            }
        }
        s
    }

    /// How likely each job type is, in `JobType::ALL` order.
    pub fn probabilities(&self, features: &[(u32, f32)]) -> [f64; CLASSES] {
        softmax(self.scores(features)).map(f64::from)
    }

    /// The most likely job type.
    pub fn predict(&self, features: &[(u32, f32)]) -> JobType {
        most_likely(&self.probabilities(features))
    }

    /// Fits by stochastic gradient descent with AdaGrad steps (deterministic for a seed).
    pub fn train(examples: &[Example], fit: Fit) -> Model {
        Model::from_f32(&Model::train_refs(&examples.iter().collect::<Vec<_>>(), fit))
    }

    fn from_f32(weights: &[f32]) -> Model {
        Model { weights: weights.iter().map(|&w| narrow(w)).collect() }
    }

    /// The fitted weights, in `f32`.
    fn train_refs(examples: &[&Example], fit: Fit) -> Vec<f32> {
        let n = 1usize << BITS;
        let mut weights = vec![0f32; n * CLASSES];
        let mut grad_sq = vec![1e-2f32; n * CLASSES];
        let mut order: Vec<usize> = (0..examples.len()).collect();
        let mut rng = SmallRng::seed_from_u64(fit.seed);
        // Each weight is learned in units of how much its bucket tells one class from the rest
        // (naive Bayes log-count ratios, as in NBSVM): rare but telling features move faster.
        let ratio = class_ratios(examples);
        let model_scores = |weights: &[f32], f: &[(u32, f32)]| {
            let mut s = [0f32; CLASSES];
            for &(b, v) in f {
                for (c, x) in s.iter_mut().enumerate() {
                    let k = b as usize * CLASSES + c;
                    *x += weights[k] * ratio[k] * v;
                }
            }
            s
        };
        for _ in 0..fit.epochs {
            order.shuffle(&mut rng);
            for &i in &order {
                let e = examples[i];
                let p = softmax(model_scores(&weights, &e.features));
                let y = e.label.index();
                for &(b, v) in &e.features {
                    for (c, pc) in p.iter().enumerate() {
                        let k = b as usize * CLASSES + c;
                        let target = if c == y { 1.0 } else { 0.0 };
                        let g = e.weight * (pc - target) * v * ratio[k] + fit.l2 * weights[k];
                        grad_sq[k] += g * g;
                        weights[k] -= fit.learning_rate * g / grad_sq[k].sqrt();
                    }
                }
            }
        }
        // What is stored predicts with a plain dot product: the ratios folded in.
        for (w, r) in weights.iter_mut().zip(&ratio) {
            *w *= r;
        }
        weights
    }

    /// `train`, with probabilities that mean what they say: a linear model fitted to near-zero
    /// training loss is over-confident, and routing mixes what it learned per job type by these
    /// probabilities. The temperature is chosen on a fifth of the examples held aside (by
    /// position), minimising log loss; then the model is fitted on all of them and its weights
    /// divided by it.
    pub fn fit(examples: &[Example], fit: Fit) -> Model {
        let (mut aside, mut rest) = (Vec::new(), Vec::new());
        for (i, e) in examples.iter().enumerate() {
            if i % 5 == 0 {
                aside.push(e)
            } else {
                rest.push(e)
            }
        }
        let probe = Model::from_f32(&Model::train_refs(&rest, fit));
        let loss = |t: f32| -> f32 {
            aside
                .iter()
                .map(|e| {
                    let p = softmax(probe.scores(&e.features).map(|s| s / t));
                    -p[e.label.index()].max(1e-6).ln()
                })
                .sum()
        };
        let temperature = [1.0f32, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0].into_iter().fold((1.0, f32::MAX), |best, t| {
            let l = loss(t);
            if l < best.1 {
                (t, l)
            } else {
                best
            }
        });
        let mut weights = Model::train_refs(&examples.iter().collect::<Vec<_>>(), fit);
        for w in &mut weights {
            *w /= temperature.0;
        }
        Model::from_f32(&weights)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAGIC.len() + 2 + self.weights.len() * 4);
        out.extend_from_slice(MAGIC);
        out.push(BITS as u8);
        out.push(CLASSES as u8);
        for w in &self.weights {
            out.extend_from_slice(&widen(*w).to_le_bytes());
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Model, String> {
        let body = bytes.strip_prefix(MAGIC.as_slice()).ok_or("not a Hermes classifier file (written by `hermes classifier train`)")?;
        let [bits, classes, rest @ ..] = body else { return Err("truncated".into()) };
        if u32::from(*bits) != BITS || usize::from(*classes) != CLASSES {
            return Err(format!("written for {bits} bits and {classes} job types; this Hermes reads {BITS} and {CLASSES}"));
        }
        if rest.len() != (1usize << BITS) * CLASSES * 4 {
            return Err(format!("{} bytes of weights, expected {}", rest.len(), (1usize << BITS) * CLASSES * 4));
        }
        let weights = rest.chunks_exact(4).map(|c| narrow(f32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect();
        Ok(Model { weights })
    }
}

/// A weight as stored: the nearest half float, within the finite range, with the values too
/// small for a normal half float (below 6.1e-5, nothing a logit notices) stored as zero, so that
/// `widen` needs no branch and never meets a subnormal.
fn narrow(w: f32) -> f16 {
    let h = f16::from_f32(w.clamp(-65504.0, 65504.0));
    if h.to_bits() & 0x7c00 == 0 {
        f16::ZERO
    } else {
        h
    }
}

/// A stored weight as `f32`, exactly: the half float's bits moved into place and rescaled by
/// the difference of the two exponent biases. The `half` crate's own conversion checks the
/// CPU's half-float instructions on every call, which made a short chat's classification 46%
/// slower (`cargo bench --bench route`).
#[inline]
fn widen(h: f16) -> f32 {
    let bits = u32::from(h.to_bits());
    f32::from_bits(((bits & 0x8000) << 16) | ((bits & 0x7fff) << 13)) * f32::from_bits((127 + 112) << 23)
}

/// Per bucket and class, |ln p − ln q|: p the smoothed share of the class's examples holding the
/// bucket (among all buckets' shares), q the same over the other classes' examples.
fn class_ratios(examples: &[&Example]) -> Vec<f32> {
    let n = 1usize << BITS;
    let mut df = vec![0f32; n * CLASSES];
    let mut seen: Vec<u32> = Vec::with_capacity(512);
    for e in examples {
        seen.clear();
        seen.extend(e.features.iter().map(|f| f.0));
        seen.sort_unstable();
        seen.dedup();
        let c = e.label.index();
        for &b in &seen {
            df[b as usize * CLASSES + c] += e.weight;
        }
    }
    let mut total = vec![0f32; n];
    for (b, t) in total.iter_mut().enumerate() {
        *t = df[b * CLASSES..][..CLASSES].iter().sum();
    }
    let mut class_sum = [0f64; CLASSES];
    for (k, d) in df.iter().enumerate() {
        class_sum[k % CLASSES] += f64::from(*d);
    }
    let all: f64 = class_sum.iter().sum();
    let smooth = f64::from(NB_ALPHA) * n as f64;
    let alpha = f64::from(NB_ALPHA);
    df.chunks_exact(CLASSES)
        .zip(&total)
        .flat_map(|(row, &t)| {
            row.iter().zip(class_sum).map(move |(&d, sum)| {
                let p = (f64::from(d) + alpha) / (sum + smooth);
                let q = (f64::from(t - d) + alpha) / (all - sum + smooth);
                (p.ln() - q.ln()).abs() as f32
            })
        })
        .collect()
}

/// The job type with the highest probability (`general` on a tie).
pub fn most_likely(p: &[f64; CLASSES]) -> JobType {
    JobType::ALL[p.iter().enumerate().fold(CLASSES - 1, |best, (i, v)| if *v > p[best] { i } else { best })]
}

fn softmax(s: [f32; CLASSES]) -> [f32; CLASSES] {
    let max = s.iter().copied().fold(f32::MIN, f32::max);
    let mut e = s.map(|x| (x - max).exp());
    let total: f32 = e.iter().sum();
    for x in &mut e {
        *x /= total;
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(text: &str) -> Input<'_> {
        Input { last_user: text, context: &[], code: false, fence: false, tools: false, json_mode: false, system: false, turns: 1, vocabulary: [0.0; CLASSES] }
    }

    #[test]
    fn a_stored_weight_reads_back_as_the_nearest_half_float() {
        for w in [0.0f32, 1.0, -1.0, 0.333, -2.75e-3, 6.2e-5, 1234.5, -65504.0, 3.0e-1, 7.0] {
            assert_eq!(widen(narrow(w)), f16::from_f32(w).to_f32(), "{w}");
        }
        // Too small for a normal half float: zero; beyond its range: its largest.
        assert_eq!(widen(narrow(1.0e-6)), 0.0);
        assert_eq!(widen(narrow(-3.0e-5)), 0.0);
        assert_eq!(widen(narrow(1.0e9)), 65504.0);
        assert_eq!(widen(narrow(f32::MIN)), -65504.0);
    }

    #[test]
    fn windows_cut_on_char_boundaries() {
        let s = "é".repeat(600);
        let (h, t) = window(&s, 511, 255);
        assert!(h.len() <= 511 && t.len() <= 256 && !t.is_empty());
        let mut f = Vec::new();
        features(&input(&"日本語のテキスト".repeat(300)), &mut f);
        assert!(!f.is_empty());
    }

    #[test]
    fn learns_a_toy_split_and_round_trips() {
        let data = [("write a python function", JobType::CodeGeneration), ("a poem about rain", JobType::ContentCreation), ("hello there", JobType::General)];
        let examples: Vec<Example> = data
            .iter()
            .map(|(t, l)| {
                let mut f = Vec::new();
                features(&input(t), &mut f);
                Example { features: f, label: *l, weight: 1.0 }
            })
            .collect();
        let m = Model::train(&examples, Fit::default());
        for e in &examples {
            assert_eq!(m.predict(&e.features), e.label);
        }
        let back = Model::from_bytes(&m.to_bytes()).unwrap();
        assert_eq!(back.scores(&examples[0].features), m.scores(&examples[0].features));
        assert!(Model::from_bytes(b"nope").is_err());
    }
}
