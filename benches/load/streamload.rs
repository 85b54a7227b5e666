//! The load harness's own HTTP/1.1 client and slow SSE upstream (`benches/load/run.sh` drives it):
//!
//!   streamload upstream PORT GAP_MS EVENTS        an OpenAI SSE server: EVENTS chunks, GAP_MS apart
//!   streamload ttft HOST:PORT N                   N streamed requests one after another: time to
//!                                                 first token, gaps between chunks, whole stream
//!   streamload rate HOST:PORT RPS SECONDS CONNS   open loop at a constant rate (wrk2-style: a
//!                                                 request held back by a slow one counts from when
//!                                                 it was due, so a stall is not hidden)
//!   streamload hold HOST:PORT STREAMS SECONDS     STREAMS streams open at once for SECONDS
//!
//! Results are one line of `key=value` pairs on stdout, in microseconds. LOADGEN_DOOR=responses
//! or messages makes `ttft` stream through Hermes's Responses or Messages door instead of chat.
//! The peers measured beside Hermes want their own request: LOADGEN_PATH is where chat lives
//! (TensorZero: /openai/v1/chat/completions), LOADGEN_MODEL what the model is called there, and
//! LOADGEN_HEADERS extra header lines separated by `|` (LiteLLM's key, Portkey's provider).

// A measuring tool: a failed write or bind ends the run with its reason.
#![allow(clippy::expect_used)]

use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BODY: &str = r#"{"model":"bench-model","messages":[{"role":"user","content":"Say hello in one word."}]}"#;
const STREAM_BODY: &str = r#"{"model":"bench-model","stream":true,"messages":[{"role":"user","content":"Say hello in one word."}]}"#;

fn request(host: &str, body: &str) -> Vec<u8> {
    let path = std::env::var("LOADGEN_PATH").unwrap_or_else(|_| "/v1/chat/completions".into());
    request_to(host, &path, body)
}

fn request_to(host: &str, path: &str, body: &str) -> Vec<u8> {
    let body = match std::env::var("LOADGEN_MODEL") {
        Ok(model) => body.replacen(r#""model":"bench-model""#, &format!(r#""model":"{model}""#), 1),
        Err(_) => body.to_owned(),
    };
    let extra: String = std::env::var("LOADGEN_HEADERS")
        .unwrap_or_default()
        .split('|')
        .filter(|line| !line.trim().is_empty())
        .map(|line| format!("{}\r\n", line.trim()))
        .collect();
    format!("POST {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

/// The streamed request of the door LOADGEN_DOOR names, asking the same of the model.
fn stream_request(host: &str) -> Vec<u8> {
    match std::env::var("LOADGEN_DOOR").as_deref() {
        Ok("responses") => request_to(host, "/v1/responses", r#"{"model":"bench-model","stream":true,"input":"Say hello in one word."}"#),
        Ok("messages") => request_to(
            host,
            "/v1/messages",
            r#"{"model":"bench-model","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"Say hello in one word."}]}"#,
        ),
        _ => request(host, STREAM_BODY),
    }
}

/// One response read off a keep-alive connection: status, and when each body piece arrived.
struct Response {
    status: u16,
    arrivals: Vec<Instant>,
}

/// Reads one response (content-length or chunked), keeping any bytes past it in `buf`.
async fn read_response(conn: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Response> {
    let (head, length) = read_head(conn, buf).await?;
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut arrivals = Vec::new();
    if !buf.is_empty() {
        arrivals.push(Instant::now());
    }
    match length {
        Some(n) => {
            while buf.len() < n {
                fill(conn, buf).await?;
                arrivals.push(Instant::now());
            }
            buf.drain(..n);
        }
        None => {
            // Chunked: each chunk is `size\r\n data \r\n`, the last one `0\r\n\r\n`.
            loop {
                let Some(line) = find(buf, b"\r\n") else {
                    fill(conn, buf).await?;
                    arrivals.push(Instant::now());
                    continue;
                };
                let size = usize::from_str_radix(std::str::from_utf8(&buf[..line]).unwrap_or("0").trim(), 16).unwrap_or(0);
                let need = line + 2 + size + 2;
                while buf.len() < need {
                    fill(conn, buf).await?;
                    arrivals.push(Instant::now());
                }
                buf.drain(..need);
                if size == 0 {
                    break;
                }
            }
        }
    }
    Ok(Response { status, arrivals })
}

/// A request's or response's head, lowercased, with its Content-Length; the bytes after the head
/// stay in `buf`.
async fn read_head(conn: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<(String, Option<usize>)> {
    let end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        fill(conn, buf).await?;
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    buf.drain(..end);
    let length = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok());
    Ok((head, length))
}

async fn fill(conn: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut chunk = [0u8; 16384];
    let n = conn.read(&mut chunk).await?;
    if n == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn connect(addr: &str) -> TcpStream {
    let conn = TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    conn.set_nodelay(true).ok();
    conn
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn us(d: Duration) -> u64 {
    d.as_micros() as u64
}

/// Time to first token and chunk gaps over `n` streams on one connection.
async fn ttft(addr: &str, n: usize) {
    let mut conn = connect(addr).await;
    let req = stream_request(addr);
    let (mut firsts, mut totals, mut gaps, mut failed) = (Vec::new(), Vec::new(), Vec::new(), 0);
    let mut buf = Vec::new();
    for _ in 0..n {
        let sent = Instant::now();
        conn.write_all(&req).await.expect("write");
        match read_response(&mut conn, &mut buf).await {
            Ok(r) if r.status == 200 && !r.arrivals.is_empty() => {
                firsts.push(us(r.arrivals[0] - sent));
                totals.push(us(sent.elapsed()));
                gaps.extend(r.arrivals.windows(2).map(|w| us(w[1] - w[0])));
            }
            _ => {
                failed += 1;
                conn = connect(addr).await;
                buf.clear();
            }
        }
    }
    for v in [&mut firsts, &mut totals, &mut gaps] {
        v.sort_unstable();
    }
    println!(
        "streams={} failed={failed} ttft_p50={} ttft_p99={} total_p50={} gap_max={} reads_per_stream={:.1}",
        firsts.len(),
        percentile(&firsts, 0.5),
        percentile(&firsts, 0.99),
        percentile(&totals, 0.5),
        gaps.last().copied().unwrap_or(0),
        (gaps.len() + firsts.len()) as f64 / firsts.len().max(1) as f64,
    );
}

/// Requests due every 1/rps seconds, spread over `conns` connections; a request held back by a
/// slow one counts from when it was due, any other from when it was sent.
async fn rate(addr: &str, rps: f64, seconds: f64, conns: usize) {
    let start = Instant::now() + Duration::from_millis(50);
    let per_conn = Duration::from_secs_f64(conns as f64 / rps);
    let count = (rps * seconds / conns as f64) as u32;
    let tasks: Vec<_> = (0..conns)
        .map(|c| {
            let addr = addr.to_string();
            tokio::spawn(async move {
                let mut conn = connect(&addr).await;
                let req = request(&addr, BODY);
                let (mut lat, mut bad) = (Vec::with_capacity(count as usize), 0u64);
                let mut buf = Vec::new();
                let offset = per_conn.mul_f64(c as f64 / conns as f64);
                let mut previous_done = start;
                for i in 0..count {
                    let due = start + offset + per_conn * i;
                    tokio::time::sleep_until(due.into()).await;
                    // Behind schedule (the last answer came after this one was due): count from
                    // when it was due, so a stall is charged to every request it held back.
                    // On schedule: from when it was sent, so the timer's millisecond grain is not.
                    let since = if previous_done > due { due } else { Instant::now() };
                    conn.write_all(&req).await.expect("write");
                    let answer = read_response(&mut conn, &mut buf).await;
                    previous_done = Instant::now();
                    match answer {
                        Ok(r) if r.status == 200 => lat.push(us(since.elapsed())),
                        _ => {
                            bad += 1;
                            conn = connect(&addr).await;
                            buf.clear();
                        }
                    }
                }
                (lat, bad)
            })
        })
        .collect();
    let (mut lat, mut bad) = (Vec::new(), 0);
    for t in tasks {
        let (l, b) = t.await.expect("task");
        lat.extend(l);
        bad += b;
    }
    let achieved = lat.len() as f64 / (start.elapsed().as_secs_f64());
    lat.sort_unstable();
    println!(
        "requests={} failed={bad} achieved_rps={achieved:.0} p50={} p99={} p999={} max={}",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        percentile(&lat, 0.999),
        lat.last().copied().unwrap_or(0)
    );
}

/// `streams` streams opened together and held for `seconds`; reports how many got a first token.
async fn hold(addr: &str, streams: usize, seconds: u64) {
    let tasks: Vec<_> = (0..streams)
        .map(|_| {
            let addr = addr.to_string();
            tokio::spawn(async move {
                let Ok(mut conn) = TcpStream::connect(&addr).await else { return (false, false) };
                if conn.write_all(&request(&addr, STREAM_BODY)).await.is_err() {
                    return (false, false);
                }
                let mut buf = Vec::new();
                let first = tokio::time::timeout(Duration::from_secs(30), fill(&mut conn, &mut buf)).await.is_ok_and(|r| r.is_ok());
                let held = first
                    && tokio::time::timeout(Duration::from_secs(seconds), async {
                        loop {
                            if fill(&mut conn, &mut buf).await.is_err() {
                                return;
                            }
                            buf.clear();
                        }
                    })
                    .await
                    .is_err();
                (first, held)
            })
        })
        .collect();
    // The harness reads the gateway's RSS while the streams are held.
    println!("opening={streams}");
    let (mut first, mut held) = (0, 0);
    for t in tasks {
        let (f, h) = t.await.unwrap_or((false, false));
        first += usize::from(f);
        held += usize::from(h);
    }
    println!("streams={streams} first_token={first} held_open={held}");
}

/// A slow OpenAI-compatible streaming server: `events` content chunks `gap` apart, then usage
/// and [DONE], as chunked SSE; non-streamed requests get the whole answer at once.
async fn upstream(port: u16, gap: Duration, events: usize) {
    let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
    loop {
        let Ok((mut conn, _)) = listener.accept().await else { continue };
        conn.set_nodelay(true).ok();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            loop {
                let Ok((head, length)) = read_head(&mut conn, &mut buf).await else { return };
                let length = length.unwrap_or(0);
                while buf.len() < length {
                    if fill(&mut conn, &mut buf).await.is_err() {
                        return;
                    }
                }
                let body: Vec<u8> = buf.drain(..length).collect();
                let ok = if head.starts_with("get /v1/models") {
                    whole(&mut conn, r#"{"object":"list","data":[{"id":"bench-model","object":"model"}]}"#).await
                } else if find(&body, b"\"stream\":true").is_some() {
                    stream(&mut conn, gap, events).await
                } else {
                    whole(&mut conn, ANSWER).await
                };
                if ok.is_err() {
                    return;
                }
            }
        });
    }
}

const ANSWER: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1732000000,"model":"bench-model","choices":[{"index":0,"message":{"role":"assistant","content":"Hello"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":1,"total_tokens":13}}"#;

async fn whole(conn: &mut TcpStream, body: &str) -> std::io::Result<()> {
    let head = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len());
    conn.write_all(format!("{head}{body}").as_bytes()).await
}

async fn stream(conn: &mut TcpStream, gap: Duration, events: usize) -> std::io::Result<()> {
    conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n").await?;
    let chunk = |data: &str| {
        let event = format!("data: {data}\n\n");
        format!("{:x}\r\n{event}\r\n", event.len()).into_bytes()
    };
    for i in 0..events {
        if i > 0 && !gap.is_zero() {
            tokio::time::sleep(gap).await;
        }
        let delta = if i == 0 { r#"{"role":"assistant","content":"Hel"}"# } else { r#"{"content":"lo"}"# };
        let data = format!(
            r#"{{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1732000000,"model":"bench-model","choices":[{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":null}}]}}"#
        );
        conn.write_all(&chunk(&data)).await?;
    }
    let usage = r#"{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1732000000,"model":"bench-model","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":2,"total_tokens":14}}"#;
    conn.write_all(&[chunk(usage), chunk("[DONE]"), b"0\r\n\r\n".to_vec()].concat()).await
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_else(|| panic!("missing argument {i}: see the top of benches/load/streamload.rs"));
    let num = |i: usize| arg(i).parse::<f64>().unwrap_or_else(|_| panic!("argument {i} is not a number"));
    match args.first().map(String::as_str) {
        Some("upstream") => upstream(num(1) as u16, Duration::from_millis(num(2) as u64), num(3) as usize).await,
        Some("ttft") => ttft(&arg(1), num(2) as usize).await,
        Some("rate") => rate(&arg(1), num(2), num(3), num(4) as usize).await,
        Some("hold") => hold(&arg(1), num(2) as usize, num(3) as u64).await,
        // `cargo bench` runs every bench with no arguments: nothing to do without the harness.
        _ => eprintln!("streamload: run by benches/load/run.sh"),
    }
}
