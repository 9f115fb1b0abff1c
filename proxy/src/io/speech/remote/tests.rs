//! Against a small HTTP/1.1 server on 127.0.0.1 (std sockets in threads): the real client,
//! real connections, canned answers.

// The shell may read the clock (the timeout test measures it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::*;

/// What the server does with the next request.
enum Reply {
    Json(u16, String),
    /// Read the request, then say nothing for this long and close.
    Hang(Duration),
}

/// One multipart part: name, filename, content type, content.
struct Part {
    name: String,
    filename: Option<String>,
    ctype: Option<String>,
    content: Vec<u8>,
}

struct Request {
    head: String,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// (name, filename, content type, content) of each multipart part.
    fn parts(&self) -> Vec<Part> {
        let ct = self.header("content-type").unwrap();
        let boundary = ct.split_once("boundary=").unwrap().1.trim_matches('"');
        let delim = format!("--{boundary}");
        let body = &self.body;
        let mut cuts = Vec::new();
        let d = delim.as_bytes();
        let mut i = 0;
        while i + d.len() <= body.len() {
            if &body[i..i + d.len()] == d {
                cuts.push(i);
                i += d.len();
            } else {
                i += 1;
            }
        }
        assert!(
            body.ends_with(format!("{delim}--\r\n").as_bytes()),
            "closing delimiter"
        );
        let mut parts = Vec::new();
        for w in cuts.windows(2) {
            let part = &body[w[0] + d.len() + 2..w[1] - 2]; // skip "\r\n" after delim, before next
            let split = part.windows(4).position(|x| x == b"\r\n\r\n").unwrap();
            let headers = std::str::from_utf8(&part[..split]).unwrap();
            let content = part[split + 4..].to_vec();
            let mut name = String::new();
            let mut filename = None;
            let mut ctype = None;
            for h in headers.split("\r\n") {
                if let Some(cd) = h.strip_prefix("Content-Disposition: form-data; ") {
                    for kv in cd.split("; ") {
                        let (k, v) = kv.split_once('=').unwrap();
                        let v = v.trim_matches('"').to_owned();
                        match k {
                            "name" => name = v,
                            "filename" => filename = Some(v),
                            _ => {}
                        }
                    }
                } else if let Some(t) = h.strip_prefix("Content-Type: ") {
                    ctype = Some(t.to_owned());
                }
            }
            parts.push(Part {
                name,
                filename,
                ctype,
                content,
            });
        }
        parts
    }

    fn field(&self, name: &str) -> Vec<String> {
        self.parts()
            .into_iter()
            .filter(|p| p.name == name)
            .map(|p| String::from_utf8(p.content).unwrap())
            .collect()
    }
}

struct TestServer {
    addr: SocketAddr,
    requests: mpsc::Receiver<Request>,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    acceptor: Option<thread::JoinHandle<()>>,
}

impl TestServer {
    fn start(replies: Vec<Reply>) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, requests) = mpsc::channel();
        let replies = Arc::new(Mutex::new(VecDeque::from(replies)));
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (conns, stop2) = (connections.clone(), stop.clone());
        let acceptor = thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        conns.fetch_add(1, Ordering::SeqCst);
                        let (tx, replies) = (tx.clone(), replies.clone());
                        thread::spawn(move || serve_connection(stream, &tx, &replies));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        TestServer {
            addr,
            requests,
            connections,
            stop,
            acceptor: Some(acceptor),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn request(&self) -> Request {
        self.requests
            .recv_timeout(Duration::from_secs(5))
            .expect("the server saw a request")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }
}

/// Keep-alive loop: one request after another on the same connection.
fn serve_connection(
    stream: TcpStream,
    tx: &mpsc::Sender<Request>,
    replies: &Mutex<VecDeque<Reply>>,
) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let len = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().unwrap())
            })
            .unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let _ = tx.send(Request { head, body });
        let reply = replies.lock().unwrap().pop_front();
        match reply {
            Some(Reply::Json(status, json)) => {
                let resp = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
                    json.len()
                );
                if out.write_all(resp.as_bytes()).is_err() {
                    return;
                }
            }
            Some(Reply::Hang(d)) => {
                thread::sleep(d);
                return;
            }
            None => return,
        }
    }
}

fn pcm_ramp(n: usize) -> Vec<i16> {
    (0..n).map(|i| ((i * 37) % 2000) as i16 - 1000).collect()
}

const WORDS: &str = r#"{"task":"transcribe","language":"english","duration":1.0,"text":"card two nine",
  "words":[{"word":" card","start":0.0,"end":0.2,"probability":0.9},
           {"word":" two","start":0.25,"end":0.5},
           {"word":" nine.","start":0.5,"end":0.75}],
  "segments":[{"id":0,"start":0.0,"end":1.0,"text":" card two nine."}]}"#;

fn texts(words: &[Word]) -> Vec<&str> {
    words.iter().map(|w| w.text.as_str()).collect()
}

fn times(words: &[Word]) -> Vec<(u64, u64)> {
    words.iter().map(|w| (w.start.0, w.end.0)).collect()
}

#[test]
fn request_is_a_multipart_form_with_a_wav_file_and_the_openai_fields() {
    let srv = TestServer::start(vec![Reply::Json(200, WORDS.into())]);
    let mut rec = RemoteRecognizer::new(&srv.url(), Duration::from_secs(5)).unwrap();
    let pcm = pcm_ramp(8000);
    rec.transcribe(&pcm, SampleRate::NARROWBAND).unwrap();

    let req = srv.request();
    assert!(
        req.head
            .starts_with("POST /v1/audio/transcriptions HTTP/1.1\r\n"),
        "{}",
        req.head
    );
    assert!(req
        .header("content-type")
        .unwrap()
        .starts_with("multipart/form-data; boundary="));
    assert!(req.header("authorization").is_none());
    assert_eq!(req.field("model"), ["whisper-1"]);
    assert_eq!(req.field("response_format"), ["verbose_json"]);
    assert_eq!(req.field("timestamp_granularities[]"), ["word", "segment"]);
    assert_eq!(req.field("language"), ["en"]);

    let parts = req.parts();
    let file = parts.iter().find(|p| p.name == "file").unwrap();
    assert_eq!(file.filename.as_deref(), Some("segment.wav"));
    assert_eq!(file.ctype.as_deref(), Some("audio/wav"));
    let wav = &file.content;
    assert_eq!(wav.len(), 44 + 2 * pcm.len());
    assert_eq!(&wav[0..4], b"RIFF");
    assert_eq!(
        u32::from_le_bytes(wav[4..8].try_into().unwrap()) as usize,
        wav.len() - 8
    );
    assert_eq!(&wav[8..16], b"WAVEfmt ");
    assert_eq!(u32::from_le_bytes(wav[16..20].try_into().unwrap()), 16);
    assert_eq!(
        u16::from_le_bytes(wav[20..22].try_into().unwrap()),
        1,
        "PCM"
    );
    assert_eq!(
        u16::from_le_bytes(wav[22..24].try_into().unwrap()),
        1,
        "mono"
    );
    assert_eq!(u32::from_le_bytes(wav[24..28].try_into().unwrap()), 8000);
    assert_eq!(u32::from_le_bytes(wav[28..32].try_into().unwrap()), 16000);
    assert_eq!(u16::from_le_bytes(wav[32..34].try_into().unwrap()), 2);
    assert_eq!(u16::from_le_bytes(wav[34..36].try_into().unwrap()), 16);
    assert_eq!(&wav[36..40], b"data");
    assert_eq!(
        u32::from_le_bytes(wav[40..44].try_into().unwrap()) as usize,
        2 * pcm.len()
    );
    let samples: Vec<i16> = wav[44..]
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect();
    assert_eq!(samples, pcm);
}

#[test]
fn wideband_segments_go_as_16_khz_and_times_come_back_in_8_khz_samples() {
    let srv = TestServer::start(vec![Reply::Json(200, WORDS.into())]);
    let mut rec = RemoteRecognizer::new(&srv.url(), Duration::from_secs(5)).unwrap();
    let words = rec
        .transcribe(&pcm_ramp(16000), SampleRate::WIDEBAND)
        .unwrap();
    let wav = srv
        .request()
        .parts()
        .into_iter()
        .find(|p| p.name == "file")
        .unwrap()
        .content;
    assert_eq!(u32::from_le_bytes(wav[24..28].try_into().unwrap()), 16000);
    assert_eq!(u32::from_le_bytes(wav[28..32].try_into().unwrap()), 32000);
    assert_eq!(texts(&words), ["card", "two", "nine."]);
    assert_eq!(times(&words), [(0, 1600), (2000, 4000), (4000, 6000)]);
    assert_eq!(words[0].confidence, Some(0.9));
    assert_eq!(words[1].confidence, None);
}

#[test]
fn model_and_api_key_are_sent_and_the_key_never_printed() {
    let srv = TestServer::start(vec![Reply::Json(200, WORDS.into())]);
    let mut rec = RemoteRecognizer::new(&format!("{}/v1/", srv.url()), Duration::from_secs(5))
        .unwrap()
        .with_model("Systran/faster-whisper-tiny.en")
        .unwrap()
        .with_api_key("sk-secret-123\n")
        .unwrap();
    assert!(!format!("{rec:?}").contains("sk-secret"));
    rec.transcribe(&pcm_ramp(800), SampleRate::NARROWBAND)
        .unwrap();
    let req = srv.request();
    assert!(req.head.starts_with("POST /v1/audio/transcriptions "));
    assert_eq!(req.header("authorization"), Some("Bearer sk-secret-123"));
    assert_eq!(req.field("model"), ["Systran/faster-whisper-tiny.en"]);
}

#[test]
fn one_connection_serves_consecutive_segments() {
    let srv = TestServer::start(vec![
        Reply::Json(200, WORDS.into()),
        Reply::Json(200, WORDS.into()),
        Reply::Json(200, WORDS.into()),
    ]);
    let mut rec = RemoteRecognizer::new(&srv.url(), Duration::from_secs(5)).unwrap();
    for _ in 0..3 {
        rec.transcribe(&pcm_ramp(8000), SampleRate::NARROWBAND)
            .unwrap();
    }
    assert_eq!(srv.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn word_times_are_clamped_to_the_segment_and_ordered() {
    let json = r#"{"words":[{"word":"4532","start":-0.5,"end":0.1},
        {"word":"oh","start":0.3,"end":0.2},
        {"word":"seven","start":0.9,"end":3.0},
        {"word":"  ","start":0.1,"end":0.2}]}"#;
    let words = parse_response(json.as_bytes(), 8000).unwrap();
    assert_eq!(texts(&words), ["4532", "oh", "seven"]);
    assert_eq!(times(&words), [(0, 800), (1600, 2400), (7200, 8000)]);
}

#[test]
fn segments_without_words_spread_their_tokens_over_the_segment() {
    for json in [
        r#"{"text":"x","segments":[{"start":0.0,"end":0.4,"text":" my card"},
            {"start":0.5,"end":1.1,"text":" is 4532 1234 oh"}]}"#,
        r#"{"text":"x","words":[],"segments":[{"start":0.0,"end":0.4,"text":" my card"},
            {"start":0.5,"end":1.1,"text":" is 4532 1234 oh"}]}"#,
    ] {
        let words = parse_response(json.as_bytes(), 16000).unwrap();
        assert_eq!(texts(&words), ["my", "card", "is", "4532", "1234", "oh"]);
        assert_eq!(
            times(&words),
            [
                (0, 1600),
                (1600, 3200),
                (4000, 5200),
                (5200, 6400),
                (6400, 7600),
                (7600, 8800)
            ]
        );
    }
}

#[test]
fn text_only_answers_cover_the_whole_segment() {
    let words = parse_response(br#"{"text":" two nine three"}"#, 6000).unwrap();
    assert_eq!(texts(&words), ["two", "nine", "three"]);
    assert_eq!(times(&words), [(0, 2000), (2000, 4000), (4000, 6000)]);
    assert!(parse_response(br#"{"text":""}"#, 6000).unwrap().is_empty());
    assert!(parse_response(br#"{"text":"","segments":[]}"#, 6000)
        .unwrap()
        .is_empty());
}

#[test]
fn garbage_is_an_engine_error_that_quotes_nothing() {
    for body in [
        &b"<html>card 4532</html>"[..],
        b"",
        b"[1,2]",
        br#"{"words":[{"word":"4532"}]}"#,
        br#"{"words":"4532"}"#,
        b"\xff\xfe",
    ] {
        let e = parse_response(body, 8000).unwrap_err();
        assert!(matches!(e, RecognizerError::Engine(_)), "{e:?}");
        assert!(!e.to_string().contains("4532"));
    }
}

#[test]
fn error_statuses_map_to_recognizer_errors_without_the_body() {
    let body = r#"{"error":{"message":"audio said 4532 1234"}}"#.to_owned();
    let srv = TestServer::start(vec![
        Reply::Json(500, body.clone()),
        Reply::Json(429, body.clone()),
        Reply::Json(401, body.clone()),
        Reply::Json(400, body.clone()),
        Reply::Json(302, body),
    ]);
    let mut rec = RemoteRecognizer::new(&srv.url(), Duration::from_secs(5)).unwrap();
    let mut got = Vec::new();
    for _ in 0..5 {
        let e = rec
            .transcribe(&pcm_ramp(800), SampleRate::NARROWBAND)
            .unwrap_err();
        assert!(!e.to_string().contains("4532"), "{e}");
        assert!(!format!("{e:?}").contains("4532"), "{e:?}");
        got.push(e);
    }
    assert_eq!(
        got,
        [
            RecognizerError::Engine("remote server failed"),
            RecognizerError::Overloaded,
            RecognizerError::Engine("remote server refused the credentials"),
            RecognizerError::Engine("remote server rejected the request"),
            RecognizerError::Engine("remote server redirected the request"),
        ]
    );
}

#[test]
fn a_silent_server_is_a_timeout_within_the_limit() {
    let srv = TestServer::start(vec![Reply::Hang(Duration::from_secs(3))]);
    let mut rec = RemoteRecognizer::new(&srv.url(), Duration::from_millis(300)).unwrap();
    let t0 = Instant::now();
    let e = rec
        .transcribe(&pcm_ramp(8000), SampleRate::NARROWBAND)
        .unwrap_err();
    let took = t0.elapsed();
    assert_eq!(e, RecognizerError::Timeout);
    assert!(took >= Duration::from_millis(250), "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[test]
fn a_closed_port_is_unreachable() {
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut rec = RemoteRecognizer::new(&format!("http://{addr}"), Duration::from_secs(2)).unwrap();
    let e = rec
        .transcribe(&pcm_ramp(800), SampleRate::NARROWBAND)
        .unwrap_err();
    assert_eq!(e, RecognizerError::Engine("remote server unreachable"));
}

#[test]
fn an_empty_segment_needs_no_request() {
    let mut rec = RemoteRecognizer::new("http://127.0.0.1:9", Duration::from_secs(1)).unwrap();
    assert_eq!(rec.transcribe(&[], SampleRate::NARROWBAND), Ok(vec![]));
}

#[test]
fn base_urls_become_the_transcriptions_endpoint() {
    let ep =
        |u: &str| RemoteRecognizer::new(u, Duration::from_secs(1)).map(|r| r.endpoint().to_owned());
    assert_eq!(
        ep("http://127.0.0.1:8000").unwrap(),
        "http://127.0.0.1:8000/v1/audio/transcriptions"
    );
    assert_eq!(
        ep("https://asr.example.invalid/").unwrap(),
        "https://asr.example.invalid/v1/audio/transcriptions"
    );
    assert_eq!(
        ep("https://asr.example.invalid/openai/v1").unwrap(),
        "https://asr.example.invalid/openai/v1/audio/transcriptions"
    );
    for bad in [
        "",
        "127.0.0.1:8000",
        "ftp://h/",
        "http://",
        "http://h/?q=1",
        "http://a b",
    ] {
        assert_eq!(ep(bad), Err(RemoteError::BadUrl(bad.to_owned())), "{bad}");
    }
    assert_eq!(
        RemoteRecognizer::new("http://h", Duration::ZERO).unwrap_err(),
        RemoteError::ZeroTimeout
    );
}

#[test]
fn bad_models_and_keys_are_refused() {
    let r = || RemoteRecognizer::new("http://h", Duration::from_secs(1)).unwrap();
    assert_eq!(r().with_model("").unwrap_err(), RemoteError::BadModel);
    assert_eq!(r().with_model("a\"b").unwrap_err(), RemoteError::BadModel);
    assert_eq!(r().with_model("a\r\nb").unwrap_err(), RemoteError::BadModel);
    assert_eq!(r().with_api_key(" \n").unwrap_err(), RemoteError::BadApiKey);
    assert_eq!(r().with_api_key("a b").unwrap_err(), RemoteError::BadApiKey);
    let e = r().with_api_key("sk-é").unwrap_err();
    assert!(!e.to_string().contains("sk-"));
}

#[test]
fn the_recognizer_can_move_to_a_worker_thread() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<RemoteRecognizer>();
}

#[test]
fn the_boundary_never_occurs_in_the_audio() {
    let wav = wav_bytes(&pcm_ramp(4000), SampleRate::NARROWBAND).unwrap();
    let form = Multipart::new(&wav);
    let body = form.body(&wav, DEFAULT_MODEL);
    let b = format!("--{}", form.boundary);
    let n = body.windows(b.len()).filter(|w| *w == b.as_bytes()).count();
    assert_eq!(n, 8, "one delimiter per field plus the closing one");
}

fn speech_config(url: Option<&str>, key_file: Option<&std::path::Path>) -> config::SpeechConfig {
    config::SpeechConfig {
        engine: config::types::SpeechEngine::Remote,
        remote_url: url.map(|u| config::types::HttpUrl::try_from(u).unwrap()),
        remote_model: config::types::RemoteModel::try_from("tiny.en").unwrap(),
        remote_api_key_file: key_file.map(std::path::Path::to_path_buf),
        ..config::SpeechConfig::default()
    }
}

#[test]
fn from_config_reads_the_key_file_and_model() {
    let dir = std::env::temp_dir().join(format!(
        "callmask-remote-key-{}-{:x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("key");
    std::fs::write(&key, "sk-from-file\n").unwrap();

    let srv = TestServer::start(vec![Reply::Json(200, WORDS.into())]);
    let cfg = speech_config(Some(&srv.url()), Some(&key));
    let mut rec = RemoteRecognizer::from_config(&cfg, Duration::from_secs(5)).unwrap();
    rec.transcribe(&pcm_ramp(800), SampleRate::NARROWBAND)
        .unwrap();
    let req = srv.request();
    assert_eq!(req.header("authorization"), Some("Bearer sk-from-file"));
    assert_eq!(req.field("model"), ["tiny.en"]);

    let missing = dir.join("nope");
    let e = RemoteRecognizer::from_config(
        &speech_config(Some("http://127.0.0.1:9"), Some(&missing)),
        Duration::from_secs(1),
    )
    .unwrap_err();
    assert_eq!(
        e,
        RemoteError::ApiKeyFile {
            path: missing.display().to_string(),
            kind: std::io::ErrorKind::NotFound
        }
    );
    assert!(e
        .to_string()
        .starts_with("speech.remote_api_key_file: cannot read "));
    std::fs::write(&key, "not a key\n").unwrap();
    let e = RemoteRecognizer::from_config(
        &speech_config(Some("http://127.0.0.1:9"), Some(&key)),
        Duration::from_secs(1),
    )
    .unwrap_err();
    assert_eq!(e, RemoteError::BadApiKey);
    assert!(!e.to_string().contains("not a key"));
    assert_eq!(
        RemoteRecognizer::from_config(&speech_config(None, None), Duration::from_secs(1))
            .unwrap_err(),
        RemoteError::NoUrl
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn clones_share_the_connection_pool() {
    let srv = TestServer::start(vec![
        Reply::Json(200, WORDS.into()),
        Reply::Json(200, WORDS.into()),
    ]);
    let mut a = RemoteRecognizer::new(&srv.url(), Duration::from_secs(5)).unwrap();
    a.transcribe(&pcm_ramp(800), SampleRate::NARROWBAND)
        .unwrap();
    let mut b = a.clone();
    thread::spawn(move || b.transcribe(&pcm_ramp(800), SampleRate::NARROWBAND))
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(srv.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn segments_the_server_left_without_words_are_spread() {
    let json = r#"{"text":"x","words":[{"word":"hello","start":0.1,"end":0.3}],
        "segments":[{"start":0.0,"end":0.4,"text":" hello"},
                    {"start":0.5,"end":0.9,"text":" 4532 oh"}]}"#;
    let words = parse_response(json.as_bytes(), 8000).unwrap();
    assert_eq!(texts(&words), ["hello", "4532", "oh"]);
    assert_eq!(times(&words), [(800, 2400), (4000, 5600), (5600, 7200)]);
}

#[test]
fn an_answer_without_any_transcript_field_is_an_error() {
    for body in [&br#"{"error":{"message":"4532"}}"#[..], b"{}"] {
        assert_eq!(
            parse_response(body, 8000),
            Err(RecognizerError::Engine("remote server sent no transcript"))
        );
    }
}
